"""``python -m examples.cluster [N]`` (``nox -s cluster``): N backends behind haproxy, on one
Redis, until Ctrl-C.  Prints the URLs; logs and the generated haproxy.cfg stay in a temporary
directory that is removed on exit."""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
from pathlib import Path

from .launch import running_cluster


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    stop = threading.Event()
    # SIGTERM (nox passes it on) stops as cleanly as Ctrl-C.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with (
        tempfile.TemporaryDirectory(prefix="sockjs-cluster-") as workdir,
        running_cluster(Path(workdir), size) as cluster,
    ):
        print(f"haproxy:   {cluster.url}/echo and {cluster.url}/broadcast (SockJS services)")
        for backend in cluster.backends:
            print(f"backend {backend.name}: http://127.0.0.1:{backend.port}/health")
        print(f"Redis:     {cluster.redis.url}")
        print(f"config and logs in {workdir}; Ctrl-C stops everything")
        sys.stdout.flush()
        stop.wait()
        print("stopping: backends (sessions get a close frame), haproxy, Redis")
    print("stopped")


if __name__ == "__main__":
    main()

"""The scale run (``nox -s scale``, not in CI): many idle websocket sessions on one process.

One uvicorn process (uvloop, httptools, websockets; pinned to one core) serves the broadcast
service; Node.js client processes (pinned to the other core) open ``--sessions`` idle websocket
sessions, each process from its own loopback source address (127.0.0.2, 127.0.0.3, ...) so that
no address runs out of ephemeral ports.  Then one client sends ``--rounds`` messages, one at a
time, and each is broadcast to every session.  Reported, for sockjs-asgi and for the bare ASGI
reference in the same run: the server's resident memory per session (growth from the empty
server to all sessions open, divided by their number) and the time until every session had each
message (from the send to the last receipt), its median and maximum.

Every socket costs a file descriptor in the server, so the server needs an open-file limit above
``--sessions``: the soft limit is raised to the hard one, and when the hard limit is too low the
run is made with as many sessions as it allows and says so (raising the hard limit needs root
outside a container, e.g. ``ulimit -Hn 120000`` or ``LimitNOFILE=`` in a systemd unit).

    python -m benchmarks.scale [--sessions 50000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .harness import Cores, node_env, snapshot, start_server, stop
from .servers import ROOT, install_npm_packages, uvicorn

#: Connections per client process (and so per source address).
PER_CLIENT = 10_000
#: Descriptors the server needs besides its sockets.
SPARE_FILES = 200

APPS = {
    "sockjs-asgi": ("benchmarks.apps.sockjs_asgi_app:app", "sockjs"),
    "bare ASGI": ("benchmarks.apps.bare:app", "bare"),
}


@dataclass
class Result:
    name: str
    sessions: int
    rss_per_session_kib: float
    time_to_all_ms: list[float]

    def line(self) -> str:
        times = self.time_to_all_ms
        return (
            f"{self.name:<12} {self.sessions:>8,} sessions  {self.rss_per_session_kib:6.1f} KiB/session  "
            f"time to all: median {statistics.median(times):7.1f} ms, max {max(times):7.1f} ms"
        )


def raise_file_limit(wanted: int) -> int:
    """Raise the soft open-file limit as far as the hard one allows; returns the sessions it allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard == resource.RLIM_INFINITY else max(soft, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    allowed = (wanted + SPARE_FILES) if target == resource.RLIM_INFINITY else target - SPARE_FILES
    return min(wanted, allowed)


def read_json(stream: IO[str], what: str) -> dict[str, Any]:
    line = stream.readline()
    if not line:
        raise RuntimeError(f"a client process ended while waiting for {what}")
    value: dict[str, Any] = json.loads(line)
    return value


def run(name: str, sessions: int, rounds: int, cores: Cores, log: IO[bytes]) -> Result:
    app, kind = APPS[name]
    port, server = start_server(
        lambda port: cores.pin(cores.server, uvicorn(app)(port)), cwd=ROOT, stdout=log, stderr=log
    )
    clients: list[subprocess.Popen[str]] = []
    try:
        time.sleep(0.5)
        empty = snapshot(server.pid).rss_kib
        for number, first in enumerate(range(0, sessions, PER_CLIENT)):
            config = {
                "port": port,
                "kind": kind,
                "count": min(PER_CLIENT, sessions - first),
                "first": first,
                "address": f"127.0.0.{2 + number}",
            }
            command = cores.pin(
                cores.loadgen, ["node", str(ROOT / "benchmarks" / "scale_clients.js"), json.dumps(config)]
            )
            clients.append(
                subprocess.Popen(
                    command, cwd=ROOT, env=node_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
                )
            )
        opened = sum(read_json(client.stdout, "the sessions to open")["ready"] for client in clients if client.stdout)
        assert opened == sessions, (opened, sessions)
        time.sleep(2)  # let the server settle after the connection storm
        full = snapshot(server.pid).rss_kib
        times = []
        for round_ in range(rounds):
            sender = clients[0]
            assert sender.stdin is not None and sender.stdout is not None
            sender.stdin.write(f"send {round_}\n")
            sender.stdin.flush()
            sent = read_json(sender.stdout, "the send")["at"]
            last = max(read_json(client.stdout, "the broadcast")["last"] for client in clients if client.stdout)
            times.append(last - sent)
        return Result(name, sessions, (full - empty) / sessions, times)
    finally:
        for client in clients:
            if client.poll() is None and client.stdin is not None:
                client.stdin.write("quit\n")
                client.stdin.flush()
        for client in clients:
            try:
                client.wait(timeout=30)
            except subprocess.TimeoutExpired:
                client.kill()
        stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=sorted(APPS), help="run one server only")
    options = parser.parse_args()
    sessions = raise_file_limit(options.sessions)
    if sessions < options.sessions:
        print(
            f"NOTE: the open-file hard limit ({resource.getrlimit(resource.RLIMIT_NOFILE)[1]}) allows "
            f"{sessions:,} sessions on one process, not {options.sessions:,}; running with {sessions:,}.",
            flush=True,
        )
    install_npm_packages()
    cores = Cores.pick()
    results = []
    with tempfile.TemporaryDirectory() as folder, (Path(folder) / "servers.log").open("wb") as log:
        for name in [options.only] if options.only else list(APPS):
            results.append(run(name, sessions, options.rounds, cores, log))
            print(results[-1].line(), flush=True)
    if len(results) == 2:
        ours, bare = results
        extra = ours.rss_per_session_kib - bare.rss_per_session_kib
        ratio = statistics.median(ours.time_to_all_ms) / statistics.median(bare.time_to_all_ms)
        print(f"sockjs-asgi over bare ASGI: {extra:+.1f} KiB/session, time to all (median) x{ratio:.2f}")


if __name__ == "__main__":
    main()

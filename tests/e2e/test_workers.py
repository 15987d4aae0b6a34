"""Every sockjs-client transport, in headless Chromium, against ``uvicorn --workers 3`` with a
Redis broker on each service: one shared socket, no balancer, so the browser's connections (and
so a session's requests) reach any of the three processes.  The page comes from the same
server (iframe transports included).  Runs once per transport, cheaply: a round trip of the
varied messages and a burst that must keep its order.

The server-side checks of test_transports.py (close codes seen by the handler) need the
handler in this process, so they stay there; here the handlers run in the workers.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from examples.cluster.launch import ROOT, Redis, _die_with_parent, listening_socket, start_on_a_free_port

from . import checks
from .conftest import HarnessFactory, unavailable
from .harness import Harness

pytestmark = pytest.mark.e2e

WORKERS = 3


@pytest.fixture(scope="module")
def workers(sockjs_client_js: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``(the site's URL, the Redis URL)``."""
    if shutil.which("redis-server") is None:
        unavailable("needs Debian's redis-server (.ci/run installs it)")
    workdir = tmp_path_factory.mktemp("workers")
    redis = Redis("redis", 0, workdir / "redis.log")
    start_on_a_free_port(redis, redis.start)
    listener = listening_socket()  # bound here: no other program can take its port while uvicorn starts
    port = listener.getsockname()[1]
    log = workdir / "uvicorn.log"
    env = {
        **os.environ,
        "REDIS_URL": redis.url,
        "E2E_CLIENT_JS": str(sockjs_client_js),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "uvicorn", "tests.e2e.workers_app:app", "--workers", str(WORKERS)]
    command += ["--fd", str(listener.fileno()), "--log-level", "warning"]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=(listener.fileno(),),
            preexec_fn=_die_with_parent,
        )
    listener.close()  # uvicorn has its own
    url = f"http://127.0.0.1:{port}"
    try:
        # Every worker up: each answers on its own (a new connection each time: any may take it).
        deadline = time.monotonic() + 30
        answered: set[str] = set()
        while len(answered) < WORKERS:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn --workers {WORKERS} did not start:\n{log.read_text(errors='replace')}")
            try:
                response = httpx.get(url + "/echo/info", timeout=2, headers={"connection": "close"})
                answered.add(str(response.json()["entropy"]))  # any answer; count a few
            except (httpx.HTTPError, OSError, ValueError):
                time.sleep(0.05)  # another process: nothing to wait on but its port
        time.sleep(1.0)  # the workers that did not answer yet finish their lifespan
        yield url, redis.url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        redis.stop()


@pytest.fixture
def harness(open_page: HarnessFactory, workers: tuple[str, str]) -> Harness:
    return open_page(workers[0], workers[0])


@pytest.mark.parametrize("transport", checks.TRANSPORTS)
def test_messages_and_a_burst_through_three_workers(harness: Harness, transport: str) -> None:
    checks.check_messages(harness, transport)
    checks.check_burst(harness, transport)


def test_the_browser_was_served_through_other_workers_than_its_sessions(workers: tuple[str, str]) -> None:
    """After the tests above: requests did cross processes (each relayed one is a PUBLISH on the
    owner's topic; the echo service never broadcasts)."""
    import redis

    client = redis.Redis.from_url(workers[1])
    try:
        publishes = client.info("commandstats").get("cmdstat_publish", {}).get("calls", 0)
    finally:
        client.close()
    assert publishes > 0
    print(f"\n{publishes} publications: requests relayed between the {WORKERS} workers")

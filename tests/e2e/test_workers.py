"""Every sockjs-client transport, in headless Chromium, against ``uvicorn --workers 3`` with a
Redis broker on each service: one shared socket, no balancer, so the browser's connections (and
so a session's requests) reach any of the three processes.  The page comes from the same
server (iframe transports included).  Runs once per transport, cheaply: a round trip of the
varied messages and a burst that must keep its order.

The server-side checks of test_transports.py (close codes seen by the handler) need the
handler in this process, so they stay there; here the handlers run in the workers.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from examples.cluster.launch import Redis, UvicornWorkers, start_on_a_free_port, wait_ready

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
    env = {"REDIS_URL": redis.url, "E2E_CLIENT_JS": str(sockjs_client_js)}
    server = UvicornWorkers(
        "uvicorn", 0, workdir / "uvicorn.log", app="tests.e2e.workers_app:app", workers=WORKERS, env=env
    )
    try:
        server.start()
        url = f"http://127.0.0.1:{server.port}"
        answered: set[str] = set()

        def a_few_answered() -> bool:
            # Each worker answers on its own (a new connection each time: any may take it).
            try:
                response = httpx.get(url + "/echo/info", timeout=2, headers={"connection": "close"})
                answered.add(str(response.json()["entropy"]))  # any answer; count a few
            except (httpx.HTTPError, OSError, ValueError):
                pass
            return len(answered) >= WORKERS

        wait_ready(f"uvicorn --workers {WORKERS}", a_few_answered, server)
        time.sleep(1.0)  # the workers that did not answer yet finish their lifespan
        yield url, redis.url
    finally:
        server.stop(timeout=15)
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

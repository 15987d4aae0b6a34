"""Sessions served by whichever instance gets the request, over a real redis-server: the
scenarios of ``tests/asgi/cluster_scenarios.py``, each app with a RedisBroker of its own on one
channel, as the processes of one service would be.

redis-py's asyncio client runs on asyncio only, so these run on asyncio (the same scenarios run
on trio over a MemoryBroker in ``tests/asgi/test_cluster.py``).  Here rather than in
tests/integration, which runs after the browser tests (see test_redis_broker.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from examples.cluster.launch import Redis, start_on_a_free_port

from sockjs_asgi import Broker, RedisBroker
from sockjs_asgi.protocol.http import NOT_FOUND
from tests.asgi import cluster_scenarios
from tests.asgi.cluster_scenarios import SCENARIOS

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        shutil.which("redis-server") is None and os.environ.get("CI") != "true",
        reason="needs Debian's redis-server (.ci/run installs it)",
    ),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # see the module docstring


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = Redis("redis", 0, tmp_path_factory.mktemp("redis") / "redis.log")
    start_on_a_free_port(server, server.start)
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[scenario.__name__ for scenario in SCENARIOS])
async def test_scenario(
    redis_url: str, scenario: Callable[[cluster_scenarios.MakeBroker], Awaitable[None]], request: pytest.FixtureRequest
) -> None:
    channel = request.node.name  # a service of its own for each test

    def make_broker() -> Broker:
        return RedisBroker(redis_url, channel=channel, reconnect_delay=0.05, max_reconnect_delay=0.2)

    await scenario(make_broker)


async def test_without_redis_each_process_serves_its_own_sessions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = Redis("redis", 0, tmp_path / "redis.log")
    start_on_a_free_port(server, server.start)
    url = f"redis://127.0.0.1:{server.port}/0"
    try:

        def make_broker() -> Broker:
            return RedisBroker(url, channel="outage", reconnect_delay=0.05, max_reconnect_delay=0.2, connect_timeout=2)

        async with cluster_scenarios.service(make_broker, count=2) as svc:
            assert await svc.post(0, "/000/o1/xhr") == (200, "o\n")
            assert (await svc.post(1, "/000/o1/xhr_send", b'["relayed"]'))[0] == 204
            server.stop()
            # The owner still serves its session; the other process cannot find it: a clean 404,
            # and a receiver there opens a session of its own, as without a broker.
            assert (await svc.post(0, "/000/o1/xhr_send", b'["local"]'))[0] == 204
            assert await svc.post(0, "/000/o1/xhr") == (200, 'a["relayed","local"]\n')
            assert await svc.post(1, "/000/o1/xhr_send", b'["x"]') == (404, NOT_FOUND)
            assert await svc.post(1, "/000/o2/xhr") == (200, "o\n")
            assert await svc.post(1, "/000/o2/xhr_send", b'["y"]') == (204, "")
        outage = [r for r in caplog.records if "served on their own process only" in r.getMessage()]
        assert len(outage) <= 2  # once per process per outage, not once per request
    finally:
        server.stop()

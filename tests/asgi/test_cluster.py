"""Sessions served by whichever instance gets the request, over one MemoryBroker shared by
several apps (as if each were a process): see ``cluster_scenarios``.  The same scenarios run
over a real redis-server in ``tests/integration/test_redis_relay.py``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from sockjs_asgi import Broker, MemoryBroker

from . import cluster_scenarios
from .cluster_scenarios import SCENARIOS

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[scenario.__name__ for scenario in SCENARIOS])
async def test_scenario(scenario: Callable[[cluster_scenarios.MakeBroker], Awaitable[None]]) -> None:
    shared = MemoryBroker()

    def make_broker() -> Broker:
        return shared

    await scenario(make_broker)

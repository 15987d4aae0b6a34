from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on asyncio and on trio (hypercorn serves trio)."""
    return str(request.param)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests run last, whatever the order of the paths given.

    Their session-wide Playwright driver keeps an asyncio event loop running in the main thread
    until the session ends, and every asyncio test after the first browser test would fail with
    "Cannot run the event loop while another loop is running".  The sort is stable: everything
    else keeps its order.
    """
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)

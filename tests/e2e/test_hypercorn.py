"""A smaller run under hypercorn, which serves on trio: the same checks, same-origin, over the
transports that exercise each kind of response (websocket, streaming, polling)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from . import checks
from .conftest import HarnessFactory, Site
from .harness import Harness
from .servers import HypercornThread
from .services import build_app

pytestmark = pytest.mark.e2e

TRANSPORTS = ["websocket", "xhr-streaming", "xhr-polling", "eventsource"]


@pytest.fixture(scope="module")
def hypercorn_site(sockjs_client_js: Path) -> Iterator[Site]:
    app, services = build_app(sockjs_client_js)
    with HypercornThread(app) as server:
        yield Site(server.url, services)


@pytest.fixture
def harness(open_page: HarnessFactory, hypercorn_site: Site) -> Harness:
    return open_page(hypercorn_site.url, hypercorn_site.url)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_messages_round_trip(harness: Harness, transport: str) -> None:
    checks.check_messages(harness, transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_large_message(harness: Harness, transport: str) -> None:
    checks.check_large_message(harness, transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_burst_keeps_order(harness: Harness, transport: str) -> None:
    checks.check_burst(harness, transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_server_close(harness: Harness, hypercorn_site: Site, transport: str) -> None:
    checks.check_server_close(harness, hypercorn_site.services, transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_client_close(harness: Harness, hypercorn_site: Site, transport: str) -> None:
    checks.check_client_close(harness, hypercorn_site.services, transport)

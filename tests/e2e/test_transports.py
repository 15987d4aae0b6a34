"""Every sockjs-client transport, in headless Chromium, against uvicorn: cross-origin (the page
on one port, the services on another) and same-origin (both from one server)."""

from __future__ import annotations

import pytest

from . import checks
from .conftest import HarnessFactory, Site
from .harness import ClientRefused, Harness

pytestmark = pytest.mark.e2e

ORIGINS = ["cross-origin", "same-origin"]

#: Combinations sockjs-client itself refuses: it closes with 2000 "All transports failed"
#: without a request, which the harness raises as ClientRefused.  Strict, so that a client
#: that starts offering them makes these tests fail until they are moved to the real matrix.
REFUSED_BY_CLIENT = {
    ("htmlfile", "cross-origin"): "sockjs-client offers htmlfile only same-origin (HtmlFileTransport.enabled)",
}


def _cells() -> list[object]:
    cells: list[object] = []
    for transport in checks.TRANSPORTS:
        for origin in ORIGINS:
            refused = REFUSED_BY_CLIENT.get((transport, origin))
            marks = [pytest.mark.xfail(raises=ClientRefused, strict=True, reason=refused)] if refused else []
            cells.append(pytest.param(transport, origin, id=f"{transport}-{origin}", marks=marks))
    return cells


CELLS = _cells()


@pytest.fixture
def harness(open_page: HarnessFactory, sockjs_site: Site, page_site: Site, origin: str) -> Harness:
    page_url = page_site.url if origin == "cross-origin" else sockjs_site.url
    return open_page(page_url, sockjs_site.url)


@pytest.mark.parametrize(("transport", "origin"), CELLS)
def test_messages_round_trip(harness: Harness, transport: str) -> None:
    checks.check_messages(harness, transport)


@pytest.mark.parametrize(("transport", "origin"), CELLS)
def test_large_message(harness: Harness, transport: str) -> None:
    checks.check_large_message(harness, transport)


@pytest.mark.parametrize(("transport", "origin"), CELLS)
def test_burst_keeps_order(harness: Harness, transport: str) -> None:
    checks.check_burst(harness, transport)


@pytest.mark.parametrize(("transport", "origin"), CELLS)
def test_heartbeat(harness: Harness, transport: str) -> None:
    checks.check_heartbeat(harness, transport)


@pytest.mark.parametrize(("transport", "origin"), CELLS)
def test_server_close(harness: Harness, sockjs_site: Site, transport: str) -> None:
    checks.check_server_close(harness, sockjs_site.services, transport)


@pytest.mark.parametrize(("transport", "origin"), CELLS)
def test_client_close(harness: Harness, sockjs_site: Site, transport: str) -> None:
    checks.check_client_close(harness, sockjs_site.services, transport)

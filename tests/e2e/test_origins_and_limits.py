"""allowed_origins and max_sessions in headless Chromium with the real sockjs-client: the page
on one origin, the services on another.

What a browser sends is what these options rely on: Origin on CORS requests and websockets,
only a Referer on the jsonp <script> include, the service's own origin from the iframe page,
and sockjs-client turning a close frame received before the session opened into onclose.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from . import checks
from .conftest import HarnessFactory, Site
from .servers import UvicornThread
from .services import build_app

pytestmark = pytest.mark.e2e

#: sockjs-client offers htmlfile only to a page of the service's own origin.
CROSS_ORIGIN_TRANSPORTS = [name for name in checks.TRANSPORTS if name != "htmlfile"]


@pytest.fixture(scope="module")
def listed_site(sockjs_client_js: Path, page_site: Site) -> Iterator[Site]:
    """Services that let in the page's origin only."""
    app, services = build_app(sockjs_client_js, allowed_origins=[page_site.url])
    with UvicornThread(app) as server:
        yield Site(server.url, services)


@pytest.fixture(scope="module")
def unlisted_site(sockjs_client_js: Path) -> Iterator[Site]:
    """Services that let in another origin than the page's."""
    app, services = build_app(sockjs_client_js, allowed_origins=["https://elsewhere.example"])
    with UvicornThread(app) as server:
        yield Site(server.url, services)


@pytest.fixture(scope="module")
def one_session_site(sockjs_client_js: Path) -> Iterator[Site]:
    app, services = build_app(sockjs_client_js, max_sessions=1)
    with UvicornThread(app) as server:
        yield Site(server.url, services)


@pytest.mark.parametrize("transport", CROSS_ORIGIN_TRANSPORTS)
def test_a_listed_origin_uses_every_transport(
    open_page: HarnessFactory, page_site: Site, listed_site: Site, transport: str
) -> None:
    checks.check_messages(open_page(page_site.url, listed_site.url), transport)


@pytest.mark.parametrize("transport", ["websocket", "xhr-streaming", "iframe-eventsource", "jsonp-polling"])
def test_an_unlisted_origin_opens_no_session(
    open_page: HarnessFactory, page_site: Site, unlisted_site: Site, transport: str
) -> None:
    harness = open_page(page_site.url, unlisted_site.url)
    result, token = harness.try_open("/echo", transport)
    assert not result["opened"], result
    assert result["closed"] is not None, f"{transport}: the client neither opened nor closed\n{harness.describe()}"
    with pytest.raises(AssertionError, match="never opened"):
        unlisted_site.services.recorder.wait(token, 0.5)


def test_past_max_sessions_the_client_sees_the_close_code(
    open_page: HarnessFactory, page_site: Site, one_session_site: Site
) -> None:
    harness = open_page(page_site.url, one_session_site.url)
    first = harness.open("/echo", "websocket")
    for transport in ("websocket", "xhr-streaming", "xhr-polling"):
        result, _ = harness.try_open("/echo", transport)
        assert not result["opened"], result
        assert result["closed"] == {"code": 1013, "reason": "Too many sessions", "wasClean": True}, (
            f"{transport}: {result}\n{harness.describe()}"
        )
    harness.close(first)
    checks.wait_until(lambda: not one_session_site.services.echo.is_full, 10.0, "the closed websocket still counts")
    harness.close(harness.open("/echo", "websocket"))

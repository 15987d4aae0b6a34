"""allowed_origins: refused origins get 403 on /info and on every HTTP transport (no CORS
headers), and websocket denial; allowed ones work as before (PROTOCOL.md 2, 3, 5, 6)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from sockjs_asgi.testing import Response, TestClient, WebSocketDenied

from .support import PLAIN, Recorder, echo, header, serving, session_url

pytestmark = pytest.mark.anyio

APP = "https://app.example"
EVIL = "https://evil.example"
ONLY_APP: dict[str, Any] = {"allowed_origins": [APP]}
RECEIVERS = ["xhr", "xhr_streaming", "eventsource", "htmlfile", "jsonp"]
SENDERS = ["xhr_send", "jsonp_send"]


async def receive_on(client: TestClient, url: str, transport: str, headers: Mapping[str, str]) -> Response:
    """One receiving request; a streaming one is read up to its first frame."""
    method = "POST" if transport.startswith("xhr") else "GET"
    path = url + "/" + transport + ("?c=cb" if transport in ("htmlfile", "jsonp") else "")
    async with client.stream(method, path, headers=headers) as response:
        if response.status == 200 and transport not in ("xhr", "jsonp"):
            await response.read()  # the prelude: attached
        else:
            while await response.read() is not None:
                pass
    return response


def assert_refused(response: Response) -> None:
    assert (response.status, response.body) == (403, b"Origin not allowed")
    assert header(response, "content-type") == PLAIN
    assert header(response, "access-control-allow-origin") is None
    assert header(response, "set-cookie") is None


@pytest.mark.parametrize("transport", RECEIVERS)
async def test_receivers_refuse_other_origins_and_serve_listed_ones(transport: str) -> None:
    recorder = Recorder()
    async with serving(recorder, cookie_needed=True, **ONLY_APP) as client:
        assert_refused(await receive_on(client, session_url(), transport, {"Origin": EVIL}))
        assert recorder.connections == []  # no session was opened
        allowed = await receive_on(client, session_url(), transport, {"Origin": APP})
        assert allowed.status == 200
        if transport in ("xhr", "xhr_streaming", "eventsource"):  # the CORS transports
            assert header(allowed, "access-control-allow-origin") == APP
            assert header(allowed, "access-control-allow-credentials") == "true"


@pytest.mark.parametrize("transport", SENDERS)
async def test_senders_refuse_other_origins(transport: str) -> None:
    recorder = Recorder()
    async with serving(recorder, **ONLY_APP) as client:
        url = session_url()
        assert (await client.request("POST", url + "/xhr", headers={"Origin": APP})).body == b"o\n"
        refused = await client.request("POST", url + "/" + transport, body=b'["evil"]', headers={"Origin": EVIL})
        assert_refused(refused)
        sent = await client.request("POST", url + "/" + transport, body=b'["good"]', headers={"Origin": APP})
        assert sent.status in (200, 204)
        assert await recorder.wait_for(1) == ["good"]


@pytest.mark.parametrize("path", ["/info", "/000/abc/xhr", "/000/abc/xhr_streaming", "/000/abc/xhr_send"])
async def test_preflights_and_info_refuse_other_origins(path: str) -> None:
    async with serving(echo, **ONLY_APP) as client:
        assert_refused(await client.request("OPTIONS", path, headers={"Origin": EVIL}))
        allowed = await client.request("OPTIONS", path, headers={"Origin": APP})
        assert allowed.status == 204
        assert header(allowed, "access-control-allow-origin") == APP
    async with serving(echo, **ONLY_APP) as client:
        assert_refused(await client.request("GET", "/info", headers={"Origin": EVIL}))


@pytest.mark.parametrize("path", ["/000/abc/websocket", "/websocket"])
async def test_websockets_refuse_other_origins(path: str) -> None:
    recorder = Recorder()
    async with serving(recorder, **ONLY_APP) as client:
        with pytest.raises(WebSocketDenied) as denied:
            async with client.websocket(path, headers={"Origin": EVIL}):
                pass
        assert denied.value.status == 403
        assert recorder.connections == []
        async with client.websocket(path, headers={"Origin": APP}) as socket:
            if path != "/websocket":
                assert await socket.receive_text() == "o"
            await recorder.opened.wait()


async def test_the_services_own_pages_are_always_allowed() -> None:
    """The iframe transports post from the iframe page, on the service's own origin."""
    async with serving(echo, **ONLY_APP) as client:
        own = {"Origin": "http://sockjs.example:8000", "Host": "sockjs.example:8000"}
        assert (await receive_on(client, session_url(), "xhr", own)).status == 200
        async with client.websocket("/websocket", headers=own):
            pass


async def test_requests_without_an_origin() -> None:
    """No Origin: a non-browser client, or a same-origin GET, is let in; a browser that says
    another site sent the request is not, unless its Referer names a listed origin."""
    async with serving(echo, **ONLY_APP) as client:
        assert (await receive_on(client, session_url(), "jsonp", {})).status == 200
        assert (await receive_on(client, session_url(), "jsonp", {"Sec-Fetch-Site": "same-origin"})).status == 200
        assert_refused(await receive_on(client, session_url(), "jsonp", {"Sec-Fetch-Site": "cross-site"}))
        evil = {"Sec-Fetch-Site": "cross-site", "Referer": EVIL + "/page"}
        assert_refused(await receive_on(client, session_url(), "htmlfile", evil))
        listed = {"Sec-Fetch-Site": "cross-site", "Referer": APP + "/chat?room=1"}
        assert (await receive_on(client, session_url(), "jsonp", listed)).status == 200


async def test_info_lists_the_origins_and_the_iframe_page_may_be_framed_by_them_only() -> None:
    async with serving(echo, allowed_origins=[APP, "http://localhost:3000"]) as client:
        info = await client.request("GET", "/info", headers={"Origin": APP})
        assert json.loads(info.body)["origins"] == ["localhost:3000", "app.example:443"]
        iframe = await client.request("GET", "/iframe.html", headers={"Origin": EVIL})
        assert iframe.status == 200
        policy = "frame-ancestors 'self' http://localhost:3000 https://app.example"
        assert header(iframe, "content-security-policy") == policy
        assert (await client.request("GET", "/", headers={"Origin": EVIL})).status == 200  # the greeting is public


async def test_any_origin_by_default() -> None:
    async with serving(echo) as client:
        info = await client.request("GET", "/info", headers={"Origin": EVIL})
        assert json.loads(info.body)["origins"] == ["*:*"]
        assert header(await client.request("GET", "/iframe.html"), "content-security-policy") is None
        for transport in RECEIVERS:
            assert (await receive_on(client, session_url(), transport, {"Origin": EVIL})).status == 200
        async with client.websocket("/websocket", headers={"Origin": EVIL}):
            pass

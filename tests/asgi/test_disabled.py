"""disabled_transports (PROTOCOL.md 1: a disabled transport's routes do not exist)."""

from __future__ import annotations

import json

import pytest

from sockjs_asgi.testing import TestClient, WebSocketDenied

from .support import FORM, echo, serving, session_url

pytestmark = pytest.mark.anyio

RECEIVERS = ["websocket", "xhr", "xhr_streaming", "eventsource", "htmlfile", "jsonp"]
REQUESTS = {
    "xhr": [("POST", "/xhr"), ("OPTIONS", "/xhr")],
    "xhr_streaming": [("POST", "/xhr_streaming"), ("OPTIONS", "/xhr_streaming")],
    "eventsource": [("GET", "/eventsource")],
    "htmlfile": [("GET", "/htmlfile?c=cb")],
    "jsonp": [("GET", "/jsonp?c=cb"), ("POST", "/jsonp_send")],
    "websocket": [("GET", "/websocket"), ("POST", "/websocket")],
}


async def info(client: TestClient) -> dict[str, object]:
    data = json.loads((await client.request("GET", "/info")).body)
    assert isinstance(data, dict)
    return data


async def test_disabled_websocket() -> None:
    """The suite's /disabled_websocket_echo service."""
    async with serving(echo, disabled_transports=["websocket"]) as client:
        assert (await info(client))["websocket"] is False
        for path in (session_url() + "/websocket", "/websocket"):
            with pytest.raises(WebSocketDenied) as denied:
                async with client.websocket(path):
                    pass
            assert denied.value.status == 404
            # Over plain HTTP the routes are gone too: 404, not 400 or 405.
            assert (await client.request("GET", path)).status == 404
            assert (await client.request("POST", path)).status == 404
        # Everything else still works.
        url = session_url()
        assert (await client.request("POST", url + "/xhr")).body == b"o\n"
        assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 204
        assert (await client.request("POST", url + "/xhr")).body == b'a["x"]\n'


@pytest.mark.parametrize("disabled", RECEIVERS)
async def test_each_disabled_receiver_is_404(disabled: str) -> None:
    async with serving(echo, disabled_transports=[disabled]) as client:
        data = await info(client)
        transports = data["transports"]
        assert isinstance(transports, list)
        assert disabled not in transports
        assert set(transports) == set(RECEIVERS) - {disabled}
        assert data["websocket"] is (disabled != "websocket")
        for method, suffix in REQUESTS[disabled]:
            path = suffix if suffix == "/websocket" else session_url() + suffix
            assert (await client.request(method, path)).status == 404, (method, path)
        # The other receivers still answer.
        for other in RECEIVERS:
            if other in (disabled, "websocket"):
                continue
            method, suffix = REQUESTS[other][0]
            if other in ("xhr", "jsonp"):
                response = await client.request(method, session_url() + suffix)
                assert response.status == 200
            else:
                async with client.stream(method, session_url() + suffix) as response:
                    assert response.status == 200


async def test_disabled_jsonp_removes_jsonp_send() -> None:
    async with serving(echo, disabled_transports=["jsonp"]) as client:
        url = session_url()
        assert (await client.request("POST", url + "/xhr")).body == b"o\n"
        assert (await client.request("POST", url + "/jsonp_send", body=b"d=%5B%22x%22%5D", headers=FORM)).status == 404
        assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 204


async def test_xhr_send_stays_while_an_http_receiver_uses_it() -> None:
    async with serving(echo, disabled_transports=["xhr", "xhr_streaming", "htmlfile"]) as client:
        url = session_url()
        async with client.stream("GET", url + "/eventsource") as response:
            assert await response.read() == b"\r\n"
            assert await response.read() == b"data: o\r\n\r\n"
            assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 204
            assert await response.read() == b'data: a["x"]\r\n\r\n'


async def test_xhr_send_gone_with_every_receiver_that_uses_it() -> None:
    async with serving(echo, disabled_transports=["xhr", "xhr_streaming", "eventsource", "htmlfile"]) as client:
        url = session_url()
        assert (await client.request("GET", url + "/jsonp?c=cb")).status == 200
        assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 404
        assert (await client.request("OPTIONS", url + "/xhr_send")).status == 404
        assert (await client.request("POST", url + "/jsonp_send", body=b'["x"]')).body == b"ok"


async def test_websocket_still_works_when_http_transports_are_disabled() -> None:
    disabled = ["xhr", "xhr_streaming", "eventsource", "htmlfile", "jsonp"]
    async with serving(echo, disabled_transports=disabled) as client:
        assert (await info(client))["transports"] == ["websocket"]
        async with client.websocket(session_url() + "/websocket") as socket:
            assert await socket.receive_text() == "o"
            await socket.send_text('["x"]')
            assert await socket.receive_text() == 'a["x"]'

"""xhr_send (PROTOCOL.md 5.7, 8): status codes, bodies, content types, limits."""

from __future__ import annotations

import pytest

from sockjs_asgi.testing import TestClient

from .support import NO_CACHE, PLAIN, Recorder, echo, go_away, header, serving, session_url

pytestmark = pytest.mark.anyio


async def open_session(client: TestClient) -> str:
    url = session_url()
    response = await client.request("POST", url + "/xhr")
    assert response.body == b"o\n"
    return url


async def test_xhr_send_success() -> None:
    async with serving(echo) as client:
        url = await open_session(client)
        response = await client.request("POST", url + "/xhr_send", body=b'["x"]', headers={"Origin": "test"})
        assert response.status == 204
        assert response.body == b""
        assert header(response, "content-type") == PLAIN
        assert header(response, "cache-control") == NO_CACHE
        assert header(response, "access-control-allow-origin") == "test"
        assert header(response, "access-control-allow-credentials") == "true"
        assert (await client.request("POST", url + "/xhr")).body == b'a["x"]\n'


CONTENT_TYPES = [
    "text/plain",
    "T",
    "application/json",
    "application/xml",
    "",
    "application/json; charset=utf-8",
    "text/xml; charset=utf-8",
    "text/xml",
]


async def test_xhr_send_content_types() -> None:
    """sockjs-protocol XhrPolling.test_content_types: all eight sends, then one poll with all."""
    recorder = Recorder(echo=True)
    async with serving(recorder) as client:
        url = await open_session(client)
        for content_type in CONTENT_TYPES:
            response = await client.request(
                "POST", url + "/xhr_send", body=b'["a"]', headers={"Content-Type": content_type}
            )
            assert (response.status, response.body) == (204, b""), content_type
        assert await recorder.wait_for(len(CONTENT_TYPES)) == ["a"] * len(CONTENT_TYPES)
        response = await client.request("POST", url + "/xhr")
        assert response.body == b"a[" + b",".join([b'"a"'] * len(CONTENT_TYPES)) + b"]\n"


async def test_xhr_send_without_content_type() -> None:
    recorder = Recorder()
    async with serving(recorder) as client:
        url = await open_session(client)
        assert (await client.request("POST", url + "/xhr_send", body=b'["a"]')).status == 204
        assert await recorder.wait_for(1) == ["a"]


async def test_xhr_send_messages_in_array_order() -> None:
    recorder = Recorder()
    async with serving(recorder) as client:
        url = await open_session(client)
        assert (await client.request("POST", url + "/xhr_send", body=b'["1","2","3"]')).status == 204
        assert (await client.request("POST", url + "/xhr_send", body=b'["4"]')).status == 204
        assert await recorder.wait_for(4) == ["1", "2", "3", "4"]


async def test_xhr_send_empty_array_is_valid_and_delivers_nothing() -> None:
    """sockjs-protocol XhrPolling.test_sending_empty_frame."""
    recorder = Recorder(echo=True)
    async with serving(recorder) as client:
        url = await open_session(client)
        assert (await client.request("POST", url + "/xhr_send", body=b"[]")).status == 204
        assert (await client.request("POST", url + "/xhr_send", body=b'["a"]')).status == 204
        assert await recorder.wait_for(1) == ["a"]
        assert (await client.request("POST", url + "/xhr")).body == b'a["a"]\n'


async def test_xhr_send_empty_body() -> None:
    async with serving(echo) as client:
        url = await open_session(client)
        response = await client.request("POST", url + "/xhr_send", body=b"")
        assert response.status == 500
        assert "Payload expected." in response.text
        assert header(response, "content-type") == PLAIN


@pytest.mark.parametrize("body", [b'{"a": 1}', b'"x"', b"1", b"null", b"true", b'{"0": "x"}'])
async def test_xhr_send_json_that_is_not_an_array(body: bytes) -> None:
    async with serving(echo) as client:
        url = await open_session(client)
        response = await client.request("POST", url + "/xhr_send", body=body)
        assert response.status == 500
        assert "Payload expected." in response.text


@pytest.mark.parametrize("body", [b'["x', b"[", b"x", b'["a",]', b'["a"]]', b"\xef\xbb\xbf[]x"])
async def test_xhr_send_broken_json(body: bytes) -> None:
    """sockjs-protocol XhrPolling.test_invalid_json, and the session survives it."""
    recorder = Recorder(echo=True)
    async with serving(recorder) as client:
        url = await open_session(client)
        response = await client.request("POST", url + "/xhr_send", body=body)
        assert response.status == 500
        assert "Broken JSON encoding." in response.text
        assert header(response, "content-type") == PLAIN
        assert (await client.request("POST", url + "/xhr_send", body=b'["a"]')).status == 204
        assert await recorder.wait_for(1) == ["a"]
        assert (await client.request("POST", url + "/xhr")).body == b'a["a"]\n'


@pytest.mark.parametrize("body", [b'["\xff"]', b'["\xc3"]', b'["\xed\xa0\x80"]'])
async def test_xhr_send_invalid_utf8(body: bytes) -> None:
    """A body that is not UTF-8 is not JSON: refused, with no harm to the session."""
    recorder = Recorder(echo=True)
    async with serving(recorder) as client:
        url = await open_session(client)
        response = await client.request("POST", url + "/xhr_send", body=body)
        assert response.status == 500
        assert "Broken JSON encoding." in response.text
        assert (await client.request("POST", url + "/xhr_send", body=b'["ok"]')).status == 204
        assert await recorder.wait_for(1) == ["ok"]
        assert (await client.request("POST", url + "/xhr")).body == b'a["ok"]\n'


async def test_xhr_send_unknown_session() -> None:
    """sockjs-protocol XhrPolling.test_invalid_session."""
    async with serving(echo) as client:
        response = await client.request("POST", session_url() + "/xhr_send", body=b'["x"]')
        assert response.status == 404


async def test_xhr_send_checks_the_body_before_the_session() -> None:
    """PROTOCOL.md 12: body first, then session (as node)."""
    async with serving(echo) as client:
        response = await client.request("POST", session_url() + "/xhr_send", body=b'["x')
        assert response.status == 500
        assert "Broken JSON encoding." in response.text


async def test_xhr_send_never_creates_a_session() -> None:
    async with serving(echo) as client:
        url = session_url()
        assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 404
        assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 404
        assert (await client.request("POST", url + "/xhr")).body == b"o\n"


async def test_xhr_send_body_larger_than_max_request_size() -> None:
    recorder = Recorder(echo=True)
    async with serving(recorder, max_request_size=64) as client:
        url = await open_session(client)
        too_big = b'["' + b"x" * 63 + b'"]'  # 67 bytes
        response = await client.request("POST", url + "/xhr_send", body=too_big)
        assert response.status == 413
        # At the limit exactly is accepted.
        exact = b'["' + b"y" * 60 + b'"]'
        assert len(exact) == 64
        assert (await client.request("POST", url + "/xhr_send", body=exact)).status == 204
        assert await recorder.wait_for(1) == ["y" * 60]
        # The refused body reached nobody and the session is open.
        assert (await client.request("POST", url + "/xhr")).body == b'a["' + b"y" * 60 + b'"]\n'
        assert (await client.request("POST", url + "/xhr_send", body=b'["z"]')).status == 204
        assert (await client.request("POST", url + "/xhr")).body == b'a["z"]\n'
        assert recorder.messages == ["y" * 60, "z"]


async def test_jsonp_send_body_larger_than_max_request_size() -> None:
    recorder = Recorder()
    async with serving(recorder, max_request_size=16) as client:
        url = session_url()
        await client.request("GET", url + "/jsonp?c=x")
        body = b"d=%5B%22" + b"x" * 20 + b"%22%5D"
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        assert (await client.request("POST", url + "/jsonp_send", body=body, headers=form)).status == 413
        assert (await client.request("POST", url + "/jsonp_send", body=b'["a"]')).body == b"ok"
        assert await recorder.wait_for(1) == ["a"]


async def test_xhr_send_to_a_closed_session_is_accepted_and_dropped() -> None:
    """PROTOCOL.md 5.7: messages to a closing session are dropped; node answers 204 until
    the session is forgotten."""
    async with serving(go_away) as client:
        url = await open_session(client)
        assert (await client.request("POST", url + "/xhr")).body == b'c[3000,"Go away!"]\n'
        assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 204
        assert (await client.request("POST", url + "/xhr")).body == b'c[3000,"Go away!"]\n'


async def test_xhr_send_options() -> None:
    async with serving(echo) as client:
        url = session_url()
        response = await client.request(
            "OPTIONS", url + "/xhr_send", headers={"Origin": "test", "Access-Control-Request-Method": "POST"}
        )
        assert response.status in (200, 204)
        assert response.body == b""
        methods = header(response, "access-control-allow-methods")
        assert methods is not None and {"OPTIONS", "POST"} <= {m.strip() for m in methods.split(",")}
        # A preflight opens no session.
        assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 404

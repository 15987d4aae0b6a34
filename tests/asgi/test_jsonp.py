"""jsonp polling and jsonp_send (PROTOCOL.md 5.6, 5.7)."""

from __future__ import annotations

import pytest

from .support import FORM, JAVASCRIPT, NO_CACHE, PLAIN, Recorder, echo, go_away, header, serving, session_url

pytestmark = pytest.mark.anyio


async def test_jsonp_transport() -> None:
    """sockjs-protocol JsonPolling.test_transport."""
    async with serving(echo) as client:
        url = session_url()
        response = await client.request("GET", url + "/jsonp?c=%63allback")
        assert response.status == 200
        assert header(response, "content-type") == JAVASCRIPT
        assert header(response, "cache-control") == NO_CACHE
        assert header(response, "expires") is None
        assert header(response, "x-content-type-options") == "nosniff"
        assert response.body == b'/**/callback("o");\r\n'

        sent = await client.request("POST", url + "/jsonp_send", body=b"d=%5B%22x%22%5D", headers=FORM)
        assert sent.status == 200
        assert sent.body == b"ok"
        assert header(sent, "content-type") == PLAIN
        assert header(sent, "cache-control") == NO_CACHE

        response = await client.request("GET", url + "/jsonp?c=%63allback")
        assert response.status == 200
        assert response.body == b'/**/callback("a[\\"x\\"]");\r\n'


async def test_jsonp_callback_parameter_named_callback() -> None:
    """node also takes the callback from ``callback=`` (PROTOCOL.md 5.5)."""
    async with serving(echo) as client:
        response = await client.request("GET", session_url() + "/jsonp?callback=cb")
        assert response.body == b'/**/cb("o");\r\n'


async def test_jsonp_callback_longer_than_32_characters_is_refused() -> None:
    async with serving(echo) as client:
        assert (await client.request("GET", session_url() + "/jsonp?c=" + "a" * 32)).status == 200
        response = await client.request("GET", session_url() + "/jsonp?c=" + "a" * 33)
        assert response.status == 500
        assert 'invalid "callback" parameter' in response.text


async def test_jsonp_send_invalid_payloads() -> None:
    """sockjs-protocol JsonPolling.test_invalid_json."""
    async with serving(echo) as client:
        url = session_url()
        assert (await client.request("GET", url + "/jsonp?c=x")).body == b'/**/x("o");\r\n'
        response = await client.request("POST", url + "/jsonp_send", body=b"d=%5B%22x", headers=FORM)
        assert response.status == 500
        assert "Broken JSON encoding." in response.text
        for data in [b"", b"d=", b"p=p"]:
            response = await client.request("POST", url + "/jsonp_send", body=data, headers=FORM)
            assert response.status == 500, data
            assert "Payload expected." in response.text
            assert header(response, "content-type") == PLAIN
        response = await client.request("POST", url + "/jsonp_send", body=b"d=%5B%22b%22%5D", headers=FORM)
        assert response.body == b"ok"
        response = await client.request("GET", url + "/jsonp?c=x")
        assert response.status == 200
        assert response.body == b'/**/x("a[\\"b\\"]");\r\n'


@pytest.mark.parametrize("body", [b"", b"{}", b'"x"', b"null"])
async def test_jsonp_send_raw_body_without_array_is_payload_expected(body: bytes) -> None:
    async with serving(echo) as client:
        url = session_url()
        await client.request("GET", url + "/jsonp?c=x")
        response = await client.request("POST", url + "/jsonp_send", body=body, headers={"Content-Type": "text/plain"})
        assert response.status == 500
        assert "Payload expected." in response.text


async def test_jsonp_send_content_types() -> None:
    """sockjs-protocol JsonPolling.test_content_types: a raw body is not percent-decoded."""
    recorder = Recorder(echo=True)
    async with serving(recorder) as client:
        url = session_url()
        assert (await client.request("GET", url + "/jsonp?c=x")).body == b'/**/x("o");\r\n'
        response = await client.request("POST", url + "/jsonp_send", body=b"d=%5B%22abc%22%5D", headers=FORM)
        assert response.body == b"ok"
        response = await client.request(
            "POST", url + "/jsonp_send", body=b'["%61bc"]', headers={"Content-Type": "text/plain"}
        )
        assert response.body == b"ok"
        assert await recorder.wait_for(2) == ["abc", "%61bc"]
        response = await client.request("GET", url + "/jsonp?c=x")
        assert response.status == 200
        assert response.body == b'/**/x("a[\\"abc\\",\\"%61bc\\"]");\r\n'


async def test_jsonp_send_form_decoding() -> None:
    """The form field is decoded with + as space and %xx escapes; other fields are ignored."""
    recorder = Recorder()
    async with serving(recorder) as client:
        url = session_url()
        await client.request("GET", url + "/jsonp?c=x")
        body = b"i=1&d=%5B%22a+b%22%2C%22100%25%22%2C%22%C3%A9%22%2C%22%2B%22%5D&p=p"
        form = {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}
        assert (await client.request("POST", url + "/jsonp_send", body=body, headers=form)).body == b"ok"
        assert await recorder.wait_for(4) == ["a b", "100%", "\u00e9", "+"]


@pytest.mark.parametrize(
    "content_type",
    [
        "Application/X-WWW-Form-Urlencoded",
        "APPLICATION/X-WWW-FORM-URLENCODED; charset=UTF-8",
        " application/x-www-form-urlencoded ;charset=utf-8",
    ],
)
async def test_jsonp_send_form_content_type_is_case_insensitive(content_type: str) -> None:
    """RFC 9110 8.3.1: media types are case-insensitive."""
    recorder = Recorder()
    async with serving(recorder) as client:
        url = session_url()
        await client.request("GET", url + "/jsonp?c=x")
        headers = {"Content-Type": content_type}
        assert (
            await client.request("POST", url + "/jsonp_send", body=b"d=%5B%22a%22%5D", headers=headers)
        ).body == b"ok"
        assert await recorder.wait_for(1) == ["a"]


async def test_jsonp_send_raw_body_without_content_type() -> None:
    recorder = Recorder()
    async with serving(recorder) as client:
        url = session_url()
        await client.request("GET", url + "/jsonp?c=x")
        assert (await client.request("POST", url + "/jsonp_send?i=abc", body=b'["a+b%20"]')).body == b"ok"
        assert await recorder.wait_for(1) == ["a+b%20"]


async def test_jsonp_send_empty_frame() -> None:
    """sockjs-protocol JsonPolling.test_sending_empty_frame."""
    recorder = Recorder(echo=True)
    async with serving(recorder) as client:
        url = session_url()
        assert (await client.request("GET", url + "/jsonp?c=x")).body == b'/**/x("o");\r\n'
        assert (await client.request("POST", url + "/jsonp_send", body=b"d=%5B%5D", headers=FORM)).body == b"ok"
        assert (await client.request("POST", url + "/jsonp_send", body=b"d=%5B%22x%22%5D", headers=FORM)).body == b"ok"
        assert await recorder.wait_for(1) == ["x"]
        response = await client.request("GET", url + "/jsonp?c=x")
        assert response.body == b'/**/x("a[\\"x\\"]");\r\n'


async def test_jsonp_send_unknown_session_is_404() -> None:
    async with serving(echo) as client:
        response = await client.request("POST", session_url() + "/jsonp_send", body=b"d=%5B%22x%22%5D", headers=FORM)
        assert response.status == 404


async def test_jsonp_close() -> None:
    """sockjs-protocol JsonPolling.test_close."""
    async with serving(go_away) as client:
        url = session_url()
        assert (await client.request("GET", url + "/jsonp?c=x")).body == b'/**/x("o");\r\n'
        for _ in range(2):
            assert (await client.request("GET", url + "/jsonp?c=x")).body == b'/**/x("c[3000,\\"Go away!\\"]");\r\n'


async def test_jsonp_heartbeat() -> None:
    async with serving(echo, heartbeat_delay=0.05) as client:
        url = session_url()
        assert (await client.request("GET", url + "/jsonp?c=x")).body == b'/**/x("o");\r\n'
        assert (await client.request("GET", url + "/jsonp?c=x")).body == b'/**/x("h");\r\n'


async def test_jsonp_message_cannot_close_a_script_element() -> None:
    async with serving(echo) as client:
        url = session_url()
        await client.request("GET", url + "/jsonp?c=x")
        body = b"d=%5B%22%3C%2Fscript%3E%22%5D"
        assert (await client.request("POST", url + "/jsonp_send", body=body, headers=FORM)).body == b"ok"
        response = await client.request("GET", url + "/jsonp?c=x")
        assert response.text.startswith('/**/x("a[')
        assert "</script>" not in response.text

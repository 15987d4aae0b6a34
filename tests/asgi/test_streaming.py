"""The streaming transports: xhr_streaming, eventsource, htmlfile (PROTOCOL.md 5.3-5.5, 7.5, 9)."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from sockjs_asgi import Connection

from .support import (
    ANOTHER_CONNECTION,
    GO_AWAY,
    HTML,
    JAVASCRIPT,
    NO_CACHE,
    XHR_STREAMING_PRELUDE,
    Recorder,
    echo,
    go_away,
    header,
    read_all,
    serving,
    session_url,
)

pytestmark = pytest.mark.anyio

# sockjs-protocol HtmlFile.head
HTMLFILE_HEAD = """<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.%s;
    c.start();
    function p(d) {c.message(d);};
    window.onload = function() {c.stop();};
  </script>"""


def script_frame(frame: str) -> bytes:
    """An htmlfile chunk as the suite writes it."""
    return b"<script>\np(" + json.dumps(frame).encode() + b");\n</script>\r\n"


# -- xhr_streaming -----------------------------------------------------------------------


async def test_xhr_streaming_transport() -> None:
    """sockjs-protocol XhrStreaming.test_transport: prelude, then one chunk per frame."""
    async with serving(echo) as client:
        url = session_url()
        async with client.stream("POST", url + "/xhr_streaming", headers={"Origin": "test"}) as response:
            assert response.status == 200
            assert header(response, "content-type") == JAVASCRIPT
            assert header(response, "cache-control") == NO_CACHE
            assert header(response, "access-control-allow-origin") == "test"
            assert header(response, "access-control-allow-credentials") == "true"
            assert header(response, "content-length") is None
            assert await response.read() == XHR_STREAMING_PRELUDE
            assert await response.read() == b"o\n"
            sent = await client.request("POST", url + "/xhr_send", body=b'["x"]')
            assert (sent.status, sent.body) == (204, b"")
            assert await response.read() == b'a["x"]\n'
            assert (await client.request("POST", url + "/xhr_send", body=b'["y","z"]')).status == 204
            frames = b""
            while frames.count(b"\n") < 1 or b'"z"' not in frames:
                chunk = await response.read()
                assert chunk is not None and chunk.endswith(b"\n") and chunk.count(b"\n") == 1
                frames += chunk
            assert frames in (b'a["y","z"]\n', b'a["y"]\na["z"]\n')


async def test_xhr_streaming_response_limit() -> None:
    """PROTOCOL.md 7.5: with 4096 the response ends after the 31st 134-byte frame (prelude
    not counted; counting it would end the response much earlier)."""
    async with serving(echo, response_limit=4096) as client:
        url = session_url()
        message = "x" * 128
        frame = ('a["' + message + '"]\n').encode()
        assert len(frame) == 134
        async with client.stream("POST", url + "/xhr_streaming") as response:
            assert await response.read() == XHR_STREAMING_PRELUDE
            assert await response.read() == b"o\n"
            for _ in range(31):
                body = ('["' + message + '"]').encode()
                assert (await client.request("POST", url + "/xhr_send", body=body)).status == 204
                assert await response.read() == frame
            assert await response.read() is None


async def test_xhr_streaming_session_survives_the_response_limit() -> None:
    async with serving(echo, response_limit=4) as client:
        url = session_url()
        async with client.stream("POST", url + "/xhr_streaming") as response:
            assert await response.read() == XHR_STREAMING_PRELUDE
            assert await response.read() == b"o\n"  # 2 bytes: under the limit, the response goes on
            assert (await client.request("POST", url + "/xhr_send", body=b'["a"]')).status == 204
            assert await read_all(response) == [b'a["a"]\n']  # 9 bytes: the response ends
        # Ending at the limit is no abort: the session lives on, without a second open frame.
        assert (await client.request("POST", url + "/xhr_send", body=b'["after"]')).status == 204
        async with client.stream("POST", url + "/xhr_streaming") as response:
            assert await read_all(response) == [XHR_STREAMING_PRELUDE, b'a["after"]\n']


async def test_xhr_streaming_heartbeat() -> None:
    async with (
        serving(echo, heartbeat_delay=0.05) as client,
        client.stream("POST", session_url() + "/xhr_streaming") as response,
    ):
        assert await response.read() == XHR_STREAMING_PRELUDE
        assert await response.read() == b"o\n"
        assert await response.read() == b"h\n"
        assert await response.read() == b"h\n"


async def test_xhr_streaming_close_frame() -> None:
    """sockjs-protocol HandlingClose.test_close_frame."""
    async with serving(go_away) as client:
        url = session_url()
        async with client.stream("POST", url + "/xhr_streaming") as first:
            assert await read_all(first) == [XHR_STREAMING_PRELUDE, b"o\n", GO_AWAY.encode() + b"\n"]
        async with client.stream("POST", url + "/xhr_streaming") as second:
            assert await read_all(second) == [XHR_STREAMING_PRELUDE, GO_AWAY.encode() + b"\n"]


async def test_xhr_streaming_second_receiver() -> None:
    """sockjs-protocol HandlingClose.test_close_request."""
    async with serving(echo) as client:
        url = session_url()
        async with client.stream("POST", url + "/xhr_streaming") as first:
            assert await first.read() == XHR_STREAMING_PRELUDE
            assert await first.read() == b"o\n"
            async with client.stream("POST", url + "/xhr_streaming") as second:
                assert second.status == 200
                assert await read_all(second) == [XHR_STREAMING_PRELUDE, ANOTHER_CONNECTION.encode() + b"\n"]
            # The first receiver is undisturbed.
            assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 204
            assert await first.read() == b'a["x"]\n'


async def test_xhr_streaming_new_receiver_after_close_gets_close_frame_not_2010() -> None:
    async def close_on_message(conn: Connection) -> None:
        async for _ in conn:
            await conn.close(3001, "closing")

    async with serving(close_on_message) as client:
        url = session_url()
        async with client.stream("POST", url + "/xhr_streaming") as first:
            assert await first.read() == XHR_STREAMING_PRELUDE
            assert await first.read() == b"o\n"
            assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 204
            assert await read_all(first) == [b'c[3001,"closing"]\n']
        for _ in range(2):
            async with client.stream("POST", url + "/xhr_streaming") as again:
                assert await read_all(again) == [XHR_STREAMING_PRELUDE, b'c[3001,"closing"]\n']


# -- eventsource -------------------------------------------------------------------------


async def test_eventsource_transport() -> None:
    """sockjs-protocol EventSource.test_transport."""
    async with serving(echo) as client:
        url = session_url()
        async with client.stream("GET", url + "/eventsource") as response:
            assert response.status == 200
            assert header(response, "content-type") == "text/event-stream"
            assert header(response, "cache-control") == NO_CACHE
            assert header(response, "expires") is None
            assert header(response, "last-modified") is None
            assert await response.read() == b"\r\n"
            assert await response.read() == b"data: o\r\n\r\n"
            sent = await client.request("POST", url + "/xhr_send", body=b'["x"]')
            assert (sent.status, sent.body) == (204, b"")
            assert await response.read() == b'data: a["x"]\r\n\r\n'
            sent = await client.request("POST", url + "/xhr_send", body=rb'["  \u0000\n\r "]')
            assert sent.status == 204
            assert await response.read() == b'data: a["  \\u0000\\n\\r "]\r\n\r\n'


async def test_eventsource_percent_is_escaped() -> None:
    """The client runs decodeURI on every payload (PROTOCOL.md 5.4)."""
    async with serving(echo) as client:
        url = session_url()
        async with client.stream("GET", url + "/eventsource") as response:
            assert await response.read() == b"\r\n"
            assert await response.read() == b"data: o\r\n\r\n"
            assert (await client.request("POST", url + "/xhr_send", body=b'["%22 100% %E0%A4%A"]')).status == 204
            chunk = await response.read()
            assert chunk == b'data: a["%2522 100%25 %25E0%25A4%25A"]\r\n\r\n'
            payload = chunk.decode()[len("data: ") : -len("\r\n\r\n")]
            # What the browser hands to the client after decodeURI is the frame itself.
            assert urllib.parse.unquote(payload) == 'a["%22 100% %E0%A4%A"]'


async def test_eventsource_response_limit() -> None:
    """sockjs-protocol EventSource.test_response_limit: one 4 KiB message ends the response."""
    async with serving(echo, response_limit=4096) as client:
        url = session_url()
        message = '"' + "x" * 4096 + '"'
        async with client.stream("GET", url + "/eventsource") as response:
            assert await response.read() == b"\r\n"
            assert await response.read() == b"data: o\r\n\r\n"
            assert (await client.request("POST", url + "/xhr_send", body=f"[{message}]".encode())).status == 204
            assert await response.read() == f"data: a[{message}]\r\n\r\n".encode()
            assert await response.read() is None


# -- htmlfile ----------------------------------------------------------------------------


async def test_htmlfile_transport() -> None:
    """sockjs-protocol HtmlFile.test_transport (the callback arrives percent-encoded)."""
    async with serving(echo) as client:
        url = session_url()
        async with client.stream("GET", url + "/htmlfile?c=%63allback") as response:
            assert response.status == 200
            assert header(response, "content-type") == HTML
            assert header(response, "cache-control") == NO_CACHE
            assert header(response, "expires") is None
            prelude = await response.read()
            assert prelude is not None
            assert prelude.decode().strip() == HTMLFILE_HEAD % "callback"
            assert len(prelude) > 1024
            assert await response.read() == b'<script>\np("o");\n</script>\r\n'
            sent = await client.request("POST", url + "/xhr_send", body=b'["x"]')
            assert (sent.status, sent.body) == (204, b"")
            assert await response.read() == b'<script>\np("a[\\"x\\"]");\n</script>\r\n'


async def test_htmlfile_real_client_callback() -> None:
    """sockjs-client sends c=_jp.a + 6 characters; "_" and "." must pass untouched."""
    async with (
        serving(echo) as client,
        client.stream("GET", session_url() + "/htmlfile?c=_jp.a1b2c3&t=99") as response,
    ):
        prelude = await response.read()
        assert prelude is not None
        assert prelude.decode().strip() == HTMLFILE_HEAD % "_jp.a1b2c3"


@pytest.mark.parametrize("transport", ["htmlfile", "jsonp"])
@pytest.mark.parametrize("query", ["", "?c=", "?t=1"])
async def test_callback_required(transport: str, query: str) -> None:
    async with serving(echo) as client:
        url = session_url()
        response = await client.request("GET", url + "/" + transport + query)
        assert response.status == 500
        assert '"callback" parameter required' in response.text
        # Validation comes before any session is touched.
        assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 404


@pytest.mark.parametrize("transport", ["htmlfile", "jsonp"])
@pytest.mark.parametrize("callback", ["%20", "*", "abc(", "abc%28", "a%3Cb", "x;alert(1)//", "%E2%80%A8"])
async def test_callback_invalid(transport: str, callback: str) -> None:
    async with serving(echo) as client:
        url = session_url()
        response = await client.request("GET", url + "/" + transport + "?c=" + callback)
        assert response.status == 500
        assert 'invalid "callback" parameter' in response.text
        assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 404


async def test_htmlfile_message_cannot_close_the_script_element() -> None:
    """PROTOCOL.md 5.5 recommendation: a message containing </script> must not appear raw."""
    hostile = "</script><script>alert(1)</script><!--"
    recorder = Recorder(echo=True)
    async with serving(recorder) as client:
        url = session_url()
        async with client.stream("GET", url + "/htmlfile?c=cb") as response:
            await response.read()  # prelude
            assert await response.read() == script_frame("o")
            body = json.dumps([hostile]).encode()
            assert (await client.request("POST", url + "/xhr_send", body=body)).status == 204
            chunk = await response.read()
            assert chunk is not None
            text = chunk.decode()
            assert text.startswith("<script>\np(") and text.endswith(");\n</script>\r\n")
            literal = text[len("<script>\np(") : -len(");\n</script>\r\n")]
            assert "<" not in literal and ">" not in literal
            # The literal is still the frame, for the browser's JavaScript parser.
            frame = json.loads(literal)
            assert json.loads(frame[1:]) == [hostile]


async def test_htmlfile_line_separators_cannot_end_the_literal() -> None:
    async with serving(echo) as client:
        url = session_url()
        async with client.stream("GET", url + "/htmlfile?c=cb") as response:
            await response.read()
            await response.read()
            body = '["a\u2028b\u2029c"]'.encode()
            assert (await client.request("POST", url + "/xhr_send", body=body)).status == 204
            chunk = await response.read()
            assert chunk is not None
            assert "\u2028" not in chunk.decode() and "\u2029" not in chunk.decode()


async def test_htmlfile_response_limit() -> None:
    """sockjs-protocol HtmlFile.test_response_limit."""
    async with serving(echo, response_limit=4096) as client:
        url = session_url()
        message = "x" * 4096
        async with client.stream("GET", url + "/htmlfile?c=callback") as response:
            assert await response.read()  # prelude
            assert await response.read() == b'<script>\np("o");\n</script>\r\n'
            assert (await client.request("POST", url + "/xhr_send", body=f'["{message}"]'.encode())).status == 204
            assert await response.read() == f'<script>\np("a[\\"{message}\\"]");\n</script>\r\n'.encode()
            assert await response.read() is None


async def test_htmlfile_close_frame_and_second_receiver() -> None:
    async with serving(go_away) as client:
        url = session_url()
        async with client.stream("GET", url + "/htmlfile?c=cb") as response:
            chunks = await read_all(response)
            assert chunks[1:] == [script_frame("o"), script_frame(GO_AWAY)]
        async with client.stream("GET", url + "/htmlfile?c=cb") as response:
            chunks = await read_all(response)
            assert len(chunks[0]) > 1024
            assert chunks[1:] == [script_frame(GO_AWAY)]


async def test_eventsource_second_receiver() -> None:
    async with serving(echo) as client:
        url = session_url()
        async with client.stream("GET", url + "/eventsource") as first:
            assert await first.read() == b"\r\n"
            assert await first.read() == b"data: o\r\n\r\n"
            async with client.stream("GET", url + "/eventsource") as second:
                assert await read_all(second) == [b"\r\n", b"data: " + ANOTHER_CONNECTION.encode() + b"\r\n\r\n"]
            # A receiver of another transport is refused the same way.
            async with client.stream("POST", url + "/xhr_streaming") as third:
                assert await read_all(third) == [XHR_STREAMING_PRELUDE, ANOTHER_CONNECTION.encode() + b"\n"]


async def test_eventsource_and_htmlfile_heartbeats() -> None:
    async with serving(echo, heartbeat_delay=0.05) as client:
        async with client.stream("GET", session_url() + "/eventsource") as response:
            assert await response.read() == b"\r\n"
            assert await response.read() == b"data: o\r\n\r\n"
            assert await response.read() == b"data: h\r\n\r\n"
        async with client.stream("GET", session_url() + "/htmlfile?c=cb") as response:
            await response.read()
            assert await response.read() == script_frame("o")
            assert await response.read() == script_frame("h")


@pytest.mark.parametrize(("limit", "ends_after_open"), [(11, True), (12, False)])
async def test_response_limit_counts_wrapped_frames_and_ends_at_the_limit(limit: int, ends_after_open: bool) -> None:
    """PROTOCOL.md 7.5: the wrapped frame counts ("data: o\\r\\n\\r\\n" is 11 bytes), the prelude
    does not, and the response ends once the total reaches the limit."""
    async with serving(echo, response_limit=limit) as client:
        url = session_url()
        async with client.stream("GET", url + "/eventsource") as response:
            assert await response.read() == b"\r\n"
            assert await response.read() == b"data: o\r\n\r\n"
            if ends_after_open:
                assert await response.read() is None
                return
            assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 204
            assert await response.read() == b'data: a["x"]\r\n\r\n'
            assert await response.read() is None

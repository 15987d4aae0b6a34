"""The SockJS services behind real servers: uvicorn (each http and websocket implementation)
and hypercorn (asyncio and trio workers), driven by real clients over 127.0.0.1.

The services are the sockjs-protocol test services (PROTOCOL.md 10): /echo with a 4096-byte
response limit, /close, /cookie_needed_echo and /disabled_websocket_echo.
"""

from __future__ import annotations

import json
import logging
import socket
import uuid
from collections.abc import Iterator

import httpx
import pytest
import websockets.exceptions
from websockets.sync.client import connect

from sockjs_asgi import Connection, SockJSApp, SockJSRouter

from ._threaded_servers import Running, run_hypercorn, run_uvicorn

TIMEOUT = 10.0

# uvicorn's `websockets` implementation is built on websockets.legacy, which warns at run time
# (in the server thread, where the suite's filterwarnings=error would turn the warning into a
# failed handshake).  Not our code: these warnings alone are ignored for that implementation.
LEGACY_WEBSOCKETS = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning:websockets.legacy",
)

SERVERS = [
    pytest.param(("uvicorn", "h11", "websockets"), id="uvicorn-h11-websockets", marks=LEGACY_WEBSOCKETS),
    pytest.param(("uvicorn", "h11", "wsproto"), id="uvicorn-h11-wsproto"),
    pytest.param(("uvicorn", "httptools", "websockets"), id="uvicorn-httptools-websockets", marks=LEGACY_WEBSOCKETS),
    pytest.param(("uvicorn", "httptools", "wsproto"), id="uvicorn-httptools-wsproto"),
    pytest.param(("uvicorn", "h11", "websockets-sansio"), id="uvicorn-h11-websockets-sansio"),
    pytest.param(("hypercorn", "asyncio"), id="hypercorn-asyncio"),
    pytest.param(("hypercorn", "trio"), id="hypercorn-trio"),
]


async def echo(conn: Connection) -> None:
    async for message in conn:
        await conn.send(message)


async def go_away(conn: Connection) -> None:
    """Returning closes the session with 3000 "Go away!"."""


def services() -> SockJSRouter:
    return SockJSRouter(
        {
            "/echo": SockJSApp(echo, response_limit=4096),
            "/close": SockJSApp(go_away),
            "/cookie_needed_echo": SockJSApp(echo, cookie_needed=True),
            "/disabled_websocket_echo": SockJSApp(echo, disabled_transports=["websocket"]),
        }
    )


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[Running]:
    spec: tuple[str, ...] = request.param
    if spec[0] == "uvicorn":
        with run_uvicorn(services(), http=spec[1], ws=spec[2]) as running:
            yield running
    else:
        with run_hypercorn(services(), worker=spec[1]) as running:
            yield running


@pytest.fixture(autouse=True)
def _no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Nothing the servers or the library log at WARNING or above: an exception in the
    application would be logged by the server, not raised in the test."""
    caplog.set_level(logging.INFO)
    yield
    loud = [
        f"{record.name}: {record.getMessage()}"
        for record in caplog.records
        if record.levelno >= logging.WARNING and record.name.startswith(("uvicorn", "hypercorn", "sockjs_asgi"))
    ]
    assert loud == []


@pytest.fixture
def http(server: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http, timeout=TIMEOUT) as client:
        yield client


@pytest.fixture
def receiver(server: Running) -> Iterator[httpx.Client]:
    """A second client for the streaming receivers, so that sends never queue behind them."""
    with httpx.Client(base_url=server.http, timeout=TIMEOUT) as client:
        yield client


def session_url(service: str = "/echo") -> str:
    return f"{service}/000/{uuid.uuid4().hex[:12]}"


def lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Split a streamed body into lines (newline kept), whatever the TCP segmentation."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while b"\n" in buffer:
            line, _, buffer = buffer.partition(b"\n")
            yield line + b"\n"
    if buffer:
        yield buffer


# -- HTTP --------------------------------------------------------------------------------


def test_greeting(http: httpx.Client) -> None:
    for path in ("/echo", "/echo/"):
        response = http.get(path)
        assert response.status_code == 200
        assert response.content == b"Welcome to SockJS!\n"
        assert response.headers["content-type"] == "text/plain; charset=UTF-8"
        assert response.headers["content-length"] == "19"


def test_info(http: httpx.Client) -> None:
    response = http.get("/echo/info", headers={"Origin": "http://page.example"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    assert response.headers["access-control-allow-origin"] == "http://page.example"
    assert response.headers["access-control-allow-credentials"] == "true"
    data = response.json()
    assert data["websocket"] is True and data["cookie_needed"] is False and data["origins"] == ["*:*"]
    assert http.get("/disabled_websocket_echo/info").json()["websocket"] is False
    assert http.get("/cookie_needed_echo/info").json()["cookie_needed"] is True
    preflight = http.options("/echo/info", headers={"Origin": "null", "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "null"


def test_xhr_polling_echo(http: httpx.Client) -> None:
    url = session_url()
    assert http.post(url + "/xhr").content == b"o\n"
    sent = http.post(url + "/xhr_send", content=b'["hello", "\\u2028 w\\u00f6rld"]')
    assert (sent.status_code, sent.content) == (204, b"")
    received: list[str] = []
    while len(received) < 2:
        response = http.post(url + "/xhr")
        assert response.status_code == 200
        assert response.content.startswith(b"a[") and response.content.endswith(b"]\n")
        received += json.loads(response.content[1:])
    assert received == ["hello", "\u2028 w\u00f6rld"]


def test_percent_encoded_session_path(http: httpx.Client) -> None:
    """sockjs-protocol SessionURLs.test_anyValue with "%20" in both segments."""
    suffix = uuid.uuid4().hex[:6]
    response = http.post(f"/echo/abcdefgh_i-j%20/abcdefg_i-j%20{suffix}/xhr")
    assert (response.status_code, response.content) == (200, b"o\n")


def test_xhr_streaming_is_incremental(http: httpx.Client, receiver: httpx.Client) -> None:
    url = session_url()
    with receiver.stream("POST", url + "/xhr_streaming", headers={"Origin": "test"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/javascript; charset=UTF-8"
        assert response.headers["access-control-allow-origin"] == "test"
        assert "content-length" not in response.headers
        assert response.headers["transfer-encoding"] == "chunked"
        frames = lines(response.iter_raw())
        assert next(frames) == b"h" * 2048 + b"\n"
        assert next(frames) == b"o\n"
        # Each message arrives while the response is still open.
        for number in range(3):
            assert http.post(url + "/xhr_send", content=f'["m{number}"]'.encode()).status_code == 204
            assert next(frames) == f'a["m{number}"]\n'.encode()


def test_xhr_streaming_response_limit(http: httpx.Client, receiver: httpx.Client) -> None:
    """PROTOCOL.md 7.5: with 4096 bytes the response ends after the 31st 134-byte frame."""
    url = session_url()
    message = "x" * 128
    with receiver.stream("POST", url + "/xhr_streaming") as response:
        frames = lines(response.iter_raw())
        assert next(frames).startswith(b"hhhh")
        assert next(frames) == b"o\n"
        for _ in range(31):
            assert http.post(url + "/xhr_send", content=f'["{message}"]'.encode()).status_code == 204
            assert next(frames) == f'a["{message}"]\n'.encode()
        assert list(frames) == []  # the response ended


def test_eventsource(http: httpx.Client, receiver: httpx.Client) -> None:
    url = session_url()
    with receiver.stream("GET", url + "/eventsource") as response:
        assert response.headers["content-type"] == "text/event-stream"
        frames = lines(response.iter_raw())
        assert next(frames) == b"\r\n"
        assert next(frames) == b"data: o\r\n"
        assert next(frames) == b"\r\n"
        assert http.post(url + "/xhr_send", content=b'["100%"]').status_code == 204
        assert next(frames) == b'data: a["100%25"]\r\n'


def test_cookie_needed(http: httpx.Client) -> None:
    url = session_url("/cookie_needed_echo")
    response = http.post(url + "/xhr", headers={"Cookie": "JSESSIONID=abcdef"})
    assert response.content == b"o\n"
    assert response.headers["set-cookie"].split(";")[0] == "JSESSIONID=abcdef"


def test_keep_alive_polling_loop(server: Running) -> None:
    """Polls and sends over one HTTP/1.1 connection, as a browser's keep-alive would."""
    url = session_url()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    addresses = set()
    with httpx.Client(base_url=server.http, timeout=TIMEOUT, limits=limits) as client:
        response = client.post(url + "/xhr")
        assert response.content == b"o\n"
        for number in range(10):
            sent = client.post(url + "/xhr_send", content=f'["{number}"]'.encode())
            assert sent.status_code == 204
            polled = client.post(url + "/xhr")
            assert polled.content == f'a["{number}"]\n'.encode()
            for each in (sent, polled):
                assert each.http_version == "HTTP/1.1"
                addresses.add(each.extensions["network_stream"].get_extra_info("client_addr"))
    assert len(addresses) == 1


# -- the bytes on the wire -----------------------------------------------------------------


def raw_exchange(server: Running, request: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    sock.sendall(request)
    return sock


def read_head(sock: socket.socket) -> tuple[str, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed in the head: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status_line, headers, rest


def read_to_close(sock: socket.socket, data: bytes) -> bytes:
    while chunk := sock.recv(65536):
        data += chunk
    return data


def parse_chunks(data: bytes) -> list[bytes]:
    """The chunks of a complete chunked body; raises if ``data`` is not complete yet."""
    chunks = []
    while True:
        size_line, found, data = data.partition(b"\r\n")
        if not found:
            raise ValueError("incomplete")
        size = int(size_line.split(b";")[0], 16)
        if len(data) < size + 2:
            raise ValueError("incomplete")
        chunk, data = data[:size], data[size:]
        assert data.startswith(b"\r\n")
        data = data[2:]
        chunks.append(chunk)
        if size == 0:
            return chunks


def read_chunked(sock: socket.socket, data: bytes) -> list[bytes]:
    """Read a chunked body up to its terminating chunk: the chunks as they were framed."""
    while True:
        try:
            return parse_chunks(data)
        except ValueError:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed inside the chunked body: {data[-80:]!r}"
            data += chunk


def test_http11_streaming_frames_are_chunks(server: Running) -> None:
    """sockjs-protocol Http11.test_streaming: chunked, no Content-Length, one chunk per frame
    (PROTOCOL.md 9), then the terminating chunk."""
    url = session_url("/close")
    request = f"POST {url}/xhr_streaming HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    with raw_exchange(server, request.encode()) as sock:
        status, headers, rest = read_head(sock)
        assert status.startswith("HTTP/1.1 200")
        assert headers["transfer-encoding"].lower() == "chunked"
        assert "content-length" not in headers
        chunks = read_chunked(sock, rest)
    assert chunks == [b"h" * 2048 + b"\n", b"o\n", b'c[3000,"Go away!"]\n', b""]


def test_http10_greeting(server: Running) -> None:
    """sockjs-protocol Http10.test_synchronous."""
    request = b"GET /echo HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    with raw_exchange(server, request) as sock:
        status, headers, rest = read_head(sock)
        assert status.split()[1] == "200"
        assert "transfer-encoding" not in headers
        assert headers["content-length"] == "19"
        body = rest
        while len(body) < 19:
            chunk = sock.recv(65536)
            assert chunk
            body += chunk
    assert body == b"Welcome to SockJS!\n"


def test_http10_streaming(server: Running) -> None:
    """sockjs-protocol Http10.test_streaming: neither Transfer-Encoding nor Content-Length; the
    server ends the response by closing the connection."""
    url = session_url("/close")
    request = f"POST {url}/xhr_streaming HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    expected = b"h" * 2048 + b"\n" + b"o\n" + b'c[3000,"Go away!"]\n'
    with raw_exchange(server, request.encode()) as sock:
        status, headers, rest = read_head(sock)
        assert status.split()[1] == "200"
        assert "content-length" not in headers
        if server.name.startswith("uvicorn-httptools"):
            # uvicorn's httptools implementation frames every response without Content-Length
            # as chunked, whatever the request's HTTP version (httptools_impl.py, "chunked_encoding");
            # the frames are still one chunk each.
            assert headers["transfer-encoding"] == "chunked"
            assert b"".join(read_chunked(sock, rest)) == expected
            return
        assert "transfer-encoding" not in headers
        if server.name == "hypercorn-trio":
            # Hypercorn's trio worker leaves this connection open after the application returned:
            # it happens whenever the application's watcher task took the http.disconnect that
            # hypercorn sends once the response is complete and then cancelled its task group (the
            # pattern Starlette's StreamingResponse uses too; a bare ASGI app doing the same hangs
            # the same way), so an HTTP/1.0 client would not see the end of the response.
            # The bytes are right; read exactly them.
            body = rest
            while len(body) < len(expected):
                chunk = sock.recv(65536)
                assert chunk
                body += chunk
            assert body == expected
            return
        body = read_to_close(sock, rest)
    assert body == expected


# -- websockets ----------------------------------------------------------------------------


def test_websocket_echo(server: Running) -> None:
    with connect(server.ws + session_url() + "/websocket", open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
        assert ws.recv(timeout=TIMEOUT) == "o"
        ws.send('["hello"]')
        assert ws.recv(timeout=TIMEOUT) == 'a["hello"]'
        ws.send('["a", "\\ud83d\\ude00"]')
        received: list[str] = []
        while len(received) < 2:
            frame = ws.recv(timeout=TIMEOUT)
            assert isinstance(frame, str) and frame.startswith("a[")
            received += json.loads(frame[1:])
        assert received == ["a", "\U0001f600"]


def test_websocket_close_frame_then_close(server: Running) -> None:
    with connect(server.ws + session_url("/close") + "/websocket", open_timeout=TIMEOUT) as ws:
        assert ws.recv(timeout=TIMEOUT) == "o"
        assert ws.recv(timeout=TIMEOUT) == 'c[3000,"Go away!"]'
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            ws.recv(timeout=TIMEOUT)


def test_websocket_broken_json_closes(server: Running) -> None:
    with connect(server.ws + session_url() + "/websocket", open_timeout=TIMEOUT) as ws:
        assert ws.recv(timeout=TIMEOUT) == "o"
        ws.send('["x')
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (3000, "Broken framing.")


def test_raw_websocket_echo(server: Running) -> None:
    """sockjs-protocol RawWebsocket.test_transport."""
    with connect(server.ws + "/echo/websocket", open_timeout=TIMEOUT) as ws:
        ws.send("Hello world!\uffff")
        assert ws.recv(timeout=TIMEOUT) == "Hello world!\uffff"
        ws.send('["not framed"]')
        assert ws.recv(timeout=TIMEOUT) == '["not framed"]'


def test_raw_websocket_close_reason(server: Running) -> None:
    """sockjs-protocol RawWebsocket.test_close."""
    with connect(server.ws + "/close/websocket", open_timeout=TIMEOUT) as ws:
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (3000, "Go away!")


def test_disabled_websocket_is_refused(server: Running) -> None:
    for path in ("/disabled_websocket_echo/websocket", session_url("/disabled_websocket_echo") + "/websocket"):
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            connect(server.ws + path, open_timeout=TIMEOUT)
        # Every server here implements the ASGI websocket denial response, so the 404 goes through.
        assert refused.value.response.status_code == 404


def test_websocket_url_over_plain_http_is_400(http: httpx.Client) -> None:
    response = http.get(session_url() + "/websocket")
    assert response.status_code == 400
    assert response.content == b"Not a valid websocket request"

"""Edges that only real servers show, driven over raw sockets on 127.0.0.1 (issue #7):
a poll right after an aborted receiver, HTTP/1.0 streaming, and oversized send bodies."""

from __future__ import annotations

import http.client
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from sockjs_asgi import Connection, SockJSApp, SockJSRouter

from ._threaded_servers import Running, run_hypercorn, run_uvicorn
from .rawhttp import TIMEOUT, RawConnection, exchange

ANOTHER_CONNECTION = b'c[2010,"Another connection still open"]\n'
INTERRUPTED = b'c[1002,"Connection interrupted"]\n'
XHR_STREAMING_PRELUDE = b"h" * 2048 + b"\n"

SERVERS = [
    pytest.param(("uvicorn", "httptools"), id="uvicorn-httptools"),
    pytest.param(("uvicorn", "h11"), id="uvicorn-h11"),
    pytest.param(("hypercorn", "asyncio"), id="hypercorn-asyncio"),
    pytest.param(("hypercorn", "trio"), id="hypercorn-trio"),
]


async def echo(conn: Connection) -> None:
    async for message in conn:
        await conn.send(message)


async def go_away(conn: Connection) -> None:
    """Returning closes the session with 3000 "Go away!"."""


class LoopHolder:
    """``/hold`` stops the server's event loop until the test releases it, as a busy server
    would: whatever clients do meanwhile (a close, a new request) is then seen in one go."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.holding = threading.Event()
        self.release = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/hold":
            self.holding.set()
            self.release.wait(TIMEOUT)  # blocks the loop on purpose
            self.release.clear()
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await self.app(scope, receive, send)

    def hold(self, port: int) -> RawConnection:
        """Hold the loop; returns the connection of the /hold request (read it after release)."""
        self.holding.clear()
        conn = RawConnection(port)
        conn.request("GET", "/hold")
        assert self.holding.wait(TIMEOUT)
        return conn


@dataclass
class Server:
    running: Running
    holder: LoopHolder

    @property
    def port(self) -> int:
        return self.running.port


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    holder = LoopHolder(SockJSRouter({"/echo": SockJSApp(echo, response_limit=4096), "/close": SockJSApp(go_away)}))
    kind, flavour = request.param
    if kind == "uvicorn":
        with run_uvicorn(holder, http=flavour, ws="wsproto") as running:
            yield Server(running, holder)
    else:
        with run_hypercorn(holder, worker=flavour) as running:
            yield Server(running, holder)


def session_url(service: str = "/echo") -> str:
    return f"{service}/000/{uuid.uuid4().hex[:12]}"


# -- a poll right after an aborted receiver (item 1) ---------------------------------------

ABORT_ROUNDS = 30


@pytest.mark.parametrize("waiting_transport", ["xhr", "xhr_streaming"])
@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
def test_poll_right_after_an_abort_is_not_refused(
    server: Server, waiting_transport: str, reset: bool, busy: bool
) -> None:
    """sockjs-protocol HandlingClose.test_abort_xhr_polling / _streaming, repeated back to back
    without the suite's sleeps: the poll that follows the abort gets the 1002 close frame (or a
    new session), never 2010.  ``busy``: the server sees the abort and the new poll in the same
    turn of its event loop, as a loaded server does."""
    answers: list[bytes] = []
    for _ in range(ABORT_ROUNDS):
        url = session_url()
        assert exchange(server.port, "POST", url + "/xhr")[1] == b"o\n"
        waiting = RawConnection(server.port)
        try:
            waiting.request("POST", f"{url}/{waiting_transport}")
            if waiting_transport == "xhr_streaming":
                assert waiting.read_head().status == 200
                assert waiting.read_chunk() == XHR_STREAMING_PRELUDE
            else:
                # The suite's proof that the poll is attached: a second one is refused.
                assert exchange(server.port, "POST", url + "/xhr")[1] == ANOTHER_CONNECTION
            hold = server.holder.hold(server.port) if busy else None
        finally:
            waiting.abort() if reset else waiting.close()
        with RawConnection(server.port) as poll:
            poll.request("POST", url + "/xhr")
            if hold is not None:
                server.holder.release.set()
                assert hold.read_head().status == 204
                hold.close()
            answers.append(poll.read_body(poll.read_head()))
    assert ANOTHER_CONNECTION not in answers
    assert set(answers) <= {INTERRUPTED, b"o\n"}


# -- HTTP/1.0 streaming (item 2) ------------------------------------------------------------

GO_AWAY = b'c[3000,"Go away!"]'
STREAMING_BODIES = {
    "xhr_streaming": (XHR_STREAMING_PRELUDE, b"o\n" + GO_AWAY + b"\n"),
    "eventsource": (b"\r\n", b"data: o\r\n\r\ndata: " + GO_AWAY + b"\r\n\r\n"),
    "htmlfile?c=cb": (
        b"<!doctype html>",
        b'<script>\np("o");\n</script>\r\n<script>\np("c[3000,\\"Go away!\\"]");\n</script>\r\n',
    ),
}


def chunks_http10(server: Server) -> bool:
    """uvicorn's httptools protocol frames every response without Content-Length as chunked,
    HTTP/1.0 request or not (docs/conformance.md has the reproduction for upstream)."""
    return server.running.name.startswith("uvicorn-httptools")


@pytest.mark.parametrize("transport", list(STREAMING_BODIES))
def test_http10_streaming(server: Server, transport: str) -> None:
    """sockjs-protocol Http10.test_streaming, for each streaming transport: no Content-Length
    (it is not known), the frames as they come, and the end of the response is the end of
    the connection.  Where the server chunks anyway, the response says HTTP/1.1 and a client
    that follows the response's own framing (RFC 9112 6.3) still reads every frame."""
    method = "POST" if transport.startswith("xhr") else "GET"
    with RawConnection(server.port) as conn:
        headers = {"Connection": "Keep-Alive"} | ({"Content-Length": "0"} if method == "POST" else {})
        conn.send_head(method, f"{session_url('/close')}/{transport}", version="1.0", headers=headers)
        head = conn.read_head()
        assert head.status == 200
        assert "content-length" not in head.headers
        if chunks_http10(server):
            assert (head.version, head.headers["transfer-encoding"]) == ("HTTP/1.1", "chunked")
        else:
            assert "transfer-encoding" not in head.headers
            assert head.headers["connection"].lower() == "close"
        body = conn.read_body(head)
        assert conn.read_until_close() == b""  # HTTP/1.0: the connection ends with the response
    start, end = STREAMING_BODIES[transport]
    assert body.startswith(start) and body.endswith(end)


def test_http10_client_reads_a_stream(server: Server) -> None:
    """The standard library's client, speaking HTTP/1.0, reads the whole stream on every
    server (it follows the response's version, so uvicorn's chunking is decoded)."""

    class Http10Connection(http.client.HTTPConnection):
        _http_vsn = 10
        _http_vsn_str = "HTTP/1.0"

    conn = Http10Connection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.request("POST", f"{session_url('/close')}/xhr_streaming", body=b"")
        response = conn.getresponse()
        assert response.status == 200
        assert response.read() == XHR_STREAMING_PRELUDE + b"o\n" + GO_AWAY + b"\n"
    finally:
        conn.close()


# -- oversized send bodies (item 3) ---------------------------------------------------------

MiB = 1024 * 1024
BLOCK = b"x" * 65536


def upload(conn: RawConnection, path: str, size: int, *, bytes_per_second: float | None = None) -> None:
    """Send a POST with a ``size``-byte body, all of it before reading anything, as most
    clients do; ``bytes_per_second`` paces it (a slow client)."""
    conn.send_head("POST", path, headers={"Content-Length": str(size)})
    started = time.monotonic()
    sent = 0
    while sent < size:
        block = BLOCK[: size - sent]
        conn.sock.sendall(block)
        sent += len(block)
        if bytes_per_second is not None:
            # Pacing the client, not waiting for the server: nothing to synchronise with.
            time.sleep(max(0.0, sent / bytes_per_second - (time.monotonic() - started)))


@pytest.mark.parametrize(
    ("transport", "size", "rate"),
    [
        ("xhr_send", 10 * MiB, None),
        ("xhr_send", 10 * MiB, 40 * MiB),
        ("jsonp_send", 10 * MiB, None),
        ("xhr_send", 100 * MiB, None),
    ],
    ids=["xhr_send-10MiB-fast", "xhr_send-10MiB-slow", "jsonp_send-10MiB-fast", "xhr_send-100MiB-fast"],
)
def test_oversized_body_gets_a_readable_413(server: Server, transport: str, size: int, rate: float | None) -> None:
    """The client writes the whole body without being cut off, then reads 413, and the
    connection is still usable (the body was drained, not left unread)."""
    url = session_url()
    assert exchange(server.port, "POST", url + "/xhr")[1] == b"o\n"
    with RawConnection(server.port, timeout=30) as conn:
        upload(conn, f"{url}/{transport}", size, bytes_per_second=rate)
        head = conn.read_head()
        assert (head.status, conn.read_body(head)) == (413, b"Payload too large.")
        assert "close" not in head.headers.get("connection", "").lower()
        conn.request("POST", f"{url}/xhr_send", b'["after"]')
        assert conn.read_head().status == 204
    assert exchange(server.port, "POST", url + "/xhr")[1] == b'a["after"]\n'


def test_body_declared_past_the_drain_limit_is_refused_at_once(server: Server) -> None:
    """A Content-Length past the drain limit is answered before any of the body is sent."""
    url = session_url()
    assert exchange(server.port, "POST", url + "/xhr")[1] == b"o\n"
    with RawConnection(server.port) as conn:
        conn.send_head("POST", f"{url}/xhr_send", headers={"Content-Length": str(10 * 1024 * MiB)})
        head = conn.read_head()
        assert (head.status, conn.read_body(head)) == (413, b"Payload too large.")
        assert head.headers["connection"].lower() == "close"

"""Test a SockJS application in-process: no server, no network, on asyncio or trio.

::

    from sockjs_asgi.testing import TestClient

    async def test_echo() -> None:
        async with TestClient(app) as client, client.connect("/echo") as conn:
            await conn.send("hello")
            assert await conn.receive() == "hello"

:meth:`TestClient.connect` speaks SockJS over a transport of your choice (``websocket``,
``xhr``, ``xhr_streaming``), like sockjs-client would.  :meth:`TestClient.request`,
:meth:`TestClient.stream` and :meth:`TestClient.websocket` give the raw HTTP and websocket
exchanges for tests of the protocol itself.

Unlike a client that waits for the ASGI application to return, this one treats a response as
complete when its last body message arrives: a SockJS application may go on running a session
after the response (see :class:`~sockjs_asgi.SockJSApp`).
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._types import ASGIApp, Message, Scope
from .protocol.errors import SockJSError

__all__ = ["ClientSession", "Response", "StreamingResponse", "TestClient", "WebSocket", "WebSocketDenied"]

HeadersLike = Mapping[str, str] | None


class WebSocketDenied(SockJSError):
    """The application refused a websocket before accepting it."""

    def __init__(self, status: int, body: bytes = b"") -> None:
        super().__init__(f"websocket refused with status {status}")
        self.status = status
        self.body = body


@dataclass
class Response:
    """A complete HTTP response."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), or ``None``."""
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)

    @property
    def text(self) -> str:
        return self.body.decode()


class StreamingResponse(Response):
    """A response whose body is read chunk by chunk with :meth:`read`."""

    def __init__(self, status: int, headers: list[tuple[str, str]], chunks: MemoryObjectReceiveStream[bytes]):
        super().__init__(status, headers)
        self._chunks = chunks

    async def read(self) -> bytes | None:
        """The next body chunk, exactly as the application sent it; ``None`` at the end."""
        try:
            chunk = await self._chunks.receive()
        except anyio.EndOfStream:
            return None
        self.body += chunk
        return chunk


class TestClient:
    """Drive an ASGI application in-process.

    ``lifespan``: run the application's lifespan around the block (as uvicorn would).
    """

    __test__ = False  # not a pytest class

    def __init__(self, app: ASGIApp, *, lifespan: bool = True, client: tuple[str, int] = ("127.0.0.1", 50000)):
        self.app = app
        self.lifespan = lifespan
        self.client = client
        self._task_group: TaskGroup | None = None
        self._lifespan_send: MemoryObjectSendStream[Message] | None = None
        self._lifespan_receive: MemoryObjectReceiveStream[Message] | None = None

    async def __aenter__(self) -> TestClient:
        self._task_group = await anyio.create_task_group().__aenter__()
        if self.lifespan:
            await self._start_lifespan()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._task_group is not None
        try:
            if self.lifespan and exc_type is None:
                await self._stop_lifespan()
        finally:
            self._task_group.cancel_scope.cancel()
            await self._task_group.__aexit__(exc_type, exc, tb)
        return None

    @property
    def task_group(self) -> TaskGroup:
        if self._task_group is None:
            raise RuntimeError("use the TestClient in an 'async with' block")
        return self._task_group

    # -- lifespan ------------------------------------------------------------------------

    async def _start_lifespan(self) -> None:
        to_app, app_receive = anyio.create_memory_object_stream[Message](math.inf)
        app_send, from_app = anyio.create_memory_object_stream[Message](math.inf)
        self._lifespan_send, self._lifespan_receive = to_app, from_app

        async def run() -> None:
            scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
            with app_receive, app_send:
                await self.app(scope, app_receive.receive, app_send.send)

        self.task_group.start_soon(run)
        await to_app.send({"type": "lifespan.startup"})
        message = await from_app.receive()
        if message["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"lifespan startup failed: {message}")

    async def _stop_lifespan(self) -> None:
        assert self._lifespan_send is not None and self._lifespan_receive is not None
        with self._lifespan_send, self._lifespan_receive:
            await self._lifespan_send.send({"type": "lifespan.shutdown"})
            message = await self._lifespan_receive.receive()
        if message["type"] != "lifespan.shutdown.complete":
            raise RuntimeError(f"lifespan shutdown failed: {message}")

    # -- HTTP ----------------------------------------------------------------------------

    def _scope(self, kind: str, method: str, path: str, headers: HeadersLike, http_version: str) -> Scope:
        path, _, query = path.partition("?")
        raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
        scope: Scope = {
            "type": kind,
            "asgi": {"version": "3.0"},
            "http_version": http_version,
            "scheme": "http" if kind == "http" else "ws",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query.encode(),
            "headers": raw_headers,
            "client": self.client,
            "server": ("testserver", 80),
            "extensions": {"websocket.http.response": {}} if kind == "websocket" else {},
        }
        if kind == "http":
            scope["method"] = method
        return scope

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: HeadersLike = None,
        http_version: str = "1.1",
    ) -> AsyncIterator[StreamingResponse]:
        """Send a request and read its response as it streams; leaving the block disconnects."""
        scope = self._scope("http", method, path, headers, http_version)
        disconnect = anyio.Event()
        complete = anyio.Event()
        request_sent = False
        chunks_in, chunks_out = anyio.create_memory_object_stream[bytes](math.inf)
        start: list[Message] = []
        started = anyio.Event()

        async def receive() -> Message:
            nonlocal request_sent
            if not request_sent:
                request_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            if not complete.is_set():
                await disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.append(message)
                started.set()
            elif message["type"] == "http.response.body":
                if disconnect.is_set() or complete.is_set():
                    return
                if message.get("body"):
                    chunks_in.send_nowait(message["body"])
                if not message.get("more_body", False):
                    complete.set()
                    chunks_in.close()

        async def call() -> None:
            try:
                await self.app(scope, receive, send)
            finally:
                started.set()
                chunks_in.close()

        self.task_group.start_soon(call)
        try:
            await started.wait()
            if not start:
                raise RuntimeError("the application returned without a response")
            headers_out = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start[0].get("headers", [])]
            yield StreamingResponse(start[0]["status"], headers_out, chunks_out)
        finally:
            # Leaving early, or being cancelled while the application has not answered yet,
            # is a client going away.
            disconnect.set()
            chunks_out.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: HeadersLike = None,
        http_version: str = "1.1",
    ) -> Response:
        """Send a request and return the complete response."""
        async with self.stream(method, path, body=body, headers=headers, http_version=http_version) as response:
            while await response.read() is not None:
                pass
        return Response(response.status, response.headers, response.body)

    @asynccontextmanager
    async def connect(
        self, path: str = "", *, transport: str = "websocket", headers: HeadersLike = None
    ) -> AsyncIterator[ClientSession]:
        """Open a SockJS session with the service at ``path`` over ``transport``.

        A query string in ``path`` (``"/chat?token=x"``) is repeated on every request of the
        session, after the transport's path, as sockjs-client does.  Raises ``AssertionError``
        if the session does not open (say, ``authorize`` refused it).  Leaving the block
        closes the session from the client's side.
        """
        if transport not in ("websocket", "xhr", "xhr_streaming"):
            raise ValueError(f"connect() speaks websocket, xhr and xhr_streaming, not {transport!r}")
        path, mark, query = path.partition("?")
        base = f"{path.rstrip('/')}/{secrets.randbelow(1000):03d}/{secrets.token_hex(4)}"
        session = ClientSession(self, base, mark + query, transport, headers)
        async with anyio.create_task_group() as task_group:
            failure = await session._open(task_group)
            if failure is None:
                try:
                    yield session
                finally:
                    await session.close()
            else:
                session._scope.cancel()
        if failure is not None:  # raised here, not from inside the task group, to come out alone
            raise AssertionError(failure)

    # -- websocket -----------------------------------------------------------------------

    @asynccontextmanager
    async def websocket(self, path: str, *, headers: HeadersLike = None) -> AsyncIterator[WebSocket]:
        """Open a websocket; raises :class:`WebSocketDenied` if the application refuses it."""
        scope = self._scope("websocket", "GET", path, headers, "1.1")
        to_app, app_receive = anyio.create_memory_object_stream[Message](math.inf)
        app_send, from_app = anyio.create_memory_object_stream[Message](math.inf)

        async def send(message: Message) -> None:
            try:
                await app_send.send(message)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                # The client is gone: closing is moot, sending fails as on a real server
                # (uvicorn raises its ClientDisconnected, an OSError).
                if message["type"] != "websocket.close":
                    raise OSError("the websocket client is gone") from None

        async def call() -> None:
            with app_receive, app_send:
                await self.app(scope, app_receive.receive, send)

        to_app.send_nowait({"type": "websocket.connect"})
        self.task_group.start_soon(call)
        try:
            message = await from_app.receive()
            if message["type"] == "websocket.http.response.start":
                body = b""
                while True:
                    part = await from_app.receive()
                    body += part.get("body", b"")
                    if not part.get("more_body", False):
                        break
                raise WebSocketDenied(message["status"], body)
            if message["type"] == "websocket.close":
                raise WebSocketDenied(403)
            assert message["type"] == "websocket.accept", message
        except BaseException:
            to_app.close()
            from_app.close()
            raise
        socket = WebSocket(to_app, from_app)
        try:
            yield socket
        finally:
            if socket.close_code is None:
                with contextlib.suppress(anyio.BrokenResourceError):
                    to_app.send_nowait({"type": "websocket.disconnect", "code": 1000})
            to_app.close()
            from_app.close()


class WebSocket:
    """The client end of an in-process websocket."""

    def __init__(self, to_app: MemoryObjectSendStream[Message], from_app: MemoryObjectReceiveStream[Message]):
        self._to_app = to_app
        self._from_app = from_app
        self.close_code: int | None = None
        self.close_reason: str | None = None

    async def send_text(self, text: str) -> None:
        await self._to_app.send({"type": "websocket.receive", "text": text})

    async def receive_text(self) -> str | None:
        """The next text message, or ``None`` once the application closed the socket."""
        if self.close_code is not None:
            return None
        try:
            message = await self._from_app.receive()
        except anyio.EndOfStream:
            self.close_code = 1006
            return None
        if message["type"] == "websocket.close":
            self.close_code = message.get("code", 1000)
            self.close_reason = message.get("reason") or ""
            self._tell_app({"type": "websocket.disconnect", "code": self.close_code})
            return None
        return str(message["text"])

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close from the client's side."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self._tell_app({"type": "websocket.disconnect", "code": code, "reason": reason})

    def _tell_app(self, message: Message) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):  # it returned already
            self._to_app.send_nowait(message)


# -- SockJS sessions --------------------------------------------------------------------------


class ClientSession:
    """A SockJS session seen from the client: messages in, messages out, close code and reason."""

    def __init__(self, client: TestClient, base: str, query: str, transport: str, headers: HeadersLike) -> None:
        self._client = client
        self._base = base
        self._query = query  # "" or "?..."
        self._refused: str | None = None  # why the first request was refused, if it was
        self.transport = transport
        self._headers = dict(headers or {})
        self._messages: deque[str] = deque()
        self._arrived = anyio.Event()
        self._socket: WebSocket | None = None
        self._scope = anyio.CancelScope()
        self._opened = False
        #: The close frame's code and reason, once one arrived.
        self.close_code: int | None = None
        self.close_reason: str | None = None

    def _url(self, suffix: str) -> str:
        return f"{self._base}/{suffix}{self._query}"

    def _frame(self, frame: str) -> None:
        if frame.startswith("a"):
            self._messages.extend(json.loads(frame[1:]))
        elif frame.startswith("c"):
            self.close_code, self.close_reason = json.loads(frame[1:])
        elif frame not in ("o", "h"):
            raise AssertionError(f"not a SockJS frame: {frame!r}")
        self._arrived.set()
        self._arrived = anyio.Event()

    async def receive(self) -> str | None:
        """The next message from the server; ``None`` once the session is closed."""
        while not self._messages:
            if self.close_code is not None:
                return None
            await self._arrived.wait()
        return self._messages.popleft()

    async def send(self, *messages: str) -> None:
        """Send messages to the server (all in one request over HTTP, like sockjs-client)."""
        payload = json.dumps(list(messages))
        if self._socket is not None:
            await self._socket.send_text(payload)
            return
        response = await self._client.request(
            "POST", self._url("xhr_send"), body=payload.encode(), headers=self._headers
        )
        if response.status != 204:
            raise AssertionError(f"xhr_send answered {response.status}: {response.text}")

    async def _open(self, task_group: TaskGroup) -> str | None:
        """Start the session's transport; returns why it did not open, if it did not."""
        if self.transport == "websocket":
            opened = anyio.Event()
            task_group.start_soon(self._run_websocket, opened)
            await opened.wait()
        else:
            opened = anyio.Event()
            task_group.start_soon(self._run_http, opened)
            await opened.wait()
        if self._refused is not None:
            return f"the session did not open: {self._refused}"
        if not self._opened:
            return f"the session did not open (close frame: {self.close_code}, {self.close_reason!r})"
        return None

    async def _run_websocket(self, opened: anyio.Event) -> None:
        with self._scope:
            try:
                async with self._client.websocket(self._url("websocket"), headers=self._headers) as socket:
                    self._socket = socket
                    while (frame := await socket.receive_text()) is not None:
                        self._opened = self._opened or frame == "o"
                        self._frame(frame)
                        opened.set()
            except WebSocketDenied as denied:
                self._refused = f"websocket refused with {denied.status} {denied.body!r}"
            finally:
                opened.set()
                if self.close_code is None:
                    self.close_code = 1006
                    self._frame("h")

    async def _run_http(self, opened: anyio.Event) -> None:
        with self._scope:
            try:
                url = self._url(self.transport)
                while self.close_code is None:
                    async with self._client.stream("POST", url, headers=self._headers) as response:
                        if response.status != 200 and not self._opened:
                            while await response.read() is not None:
                                pass
                            self._refused = f"{self.transport} answered {response.status} {response.body!r}"
                            return
                        if response.status != 200:
                            raise AssertionError(f"{self.transport} answered {response.status}")
                        buffer = ""
                        while (chunk := await response.read()) is not None:
                            buffer += chunk.decode()
                            *lines, buffer = buffer.split("\n")
                            for line in lines:
                                if line and not line.startswith("hhhh"):
                                    self._opened = self._opened or line == "o"
                                    self._frame(line)
                                    opened.set()
            finally:
                opened.set()

    async def close(self) -> None:
        """Close from the client's side, as sockjs-client does: by dropping the transport."""
        if self._socket is not None:
            await self._socket.close(1000, "Normal closure")
        self._scope.cancel()

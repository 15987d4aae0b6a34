"""Helpers shared by the in-process ASGI tests: handlers, constants and small utilities.

Every wait in these tests is bounded: :func:`serving` puts the whole exchange under
``anyio.fail_after(TIMEOUT)``, on top of pytest-timeout.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from sockjs_asgi import Connection, Handler, SockJSApp
from sockjs_asgi.testing import Response, StreamingResponse, TestClient

# ASGI types, as in the specification.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Upper bound for any single exchange in these tests (they normally take milliseconds).
TIMEOUT = 10.0

NO_CACHE = "no-store, no-cache, no-transform, must-revalidate, max-age=0"
JAVASCRIPT = "application/javascript; charset=UTF-8"
PLAIN = "text/plain; charset=UTF-8"
HTML = "text/html; charset=UTF-8"
JSON = "application/json; charset=UTF-8"
XHR_STREAMING_PRELUDE = b"h" * 2048 + b"\n"
GO_AWAY = 'c[3000,"Go away!"]'
ANOTHER_CONNECTION = 'c[2010,"Another connection still open"]'
INTERRUPTED = 'c[1002,"Connection interrupted"]'
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
#: The warning anyio gives for each memory object stream the TestClient leaves open (conftest.py).
LEAKED_STREAM = r"Unclosed <MemoryObject(Send|Receive)Stream"


def session_url(prefix: str = "") -> str:
    """A fresh ``/<server_id>/<session_id>`` part, as sockjs-client builds it."""
    return f"{prefix}/000/{uuid.uuid4().hex[:12]}"


def values(response: Response, name: str) -> list[str]:
    """Every value of header ``name`` (case-insensitive)."""
    name = name.lower()
    return [value for key, value in response.headers if key.lower() == name]


def header(response: Response, name: str) -> str | None:
    """The only value of header ``name``; fails if the header is repeated."""
    found = values(response, name)
    assert len(found) <= 1, f"header {name} repeated: {found}"
    return found[0] if found else None


def messages_of(frame: str) -> list[str]:
    """The messages of an ``a[...]`` frame (with or without its trailing newline)."""
    frame = frame.rstrip("\n")
    assert frame.startswith("a["), frame
    decoded = json.loads(frame[1:])
    assert isinstance(decoded, list)
    return [str(item) for item in decoded]


async def echo(conn: Connection) -> None:
    """The suite's ``/echo`` service."""
    async for message in conn:
        await conn.send(message)


def closed_by_another_task(close_now: anyio.Event, received: list[str], ended: anyio.Event) -> Handler:
    """A handler that puts what it receives in ``received`` while another of its tasks closes
    the connection (4000, "bye") once ``close_now`` is set; ``ended`` is set when its loop ends."""

    async def handler(conn: Connection) -> None:
        async def closer() -> None:
            await close_now.wait()
            await conn.close(4000, "bye")

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(closer)
            async for message in conn:
                received.append(message)
        ended.set()

    return handler


async def go_away(conn: Connection) -> None:
    """The suite's ``/close`` service: returning closes the session with 3000 "Go away!"."""


class Recorder:
    """A handler that records what reaches the application and signals progress.

    With ``echo`` it also sends every message back; the echo is queued before the message is
    recorded, so a test that waited for a message may poll for its echo at once.
    """

    def __init__(self, *, echo: bool = False) -> None:
        self.echo = echo
        self.connections: list[Connection] = []
        self.messages: list[str] = []
        #: How many handler calls were cancelled rather than returning.
        self.cancelled = 0
        self.opened = anyio.Event()
        self.finished = anyio.Event()
        self._changed = anyio.Event()

    async def __call__(self, conn: Connection) -> None:
        self.connections.append(conn)
        self.opened.set()
        try:
            async for message in conn:
                if self.echo:
                    await conn.send(message)
                self.messages.append(message)
                self._changed.set()
                self._changed = anyio.Event()
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        finally:
            self.finished.set()

    async def wait_for(self, count: int) -> list[str]:
        """Wait until ``count`` messages arrived; returns all of them."""
        with anyio.fail_after(TIMEOUT):
            while len(self.messages) < count:
                await self._changed.wait()
        return list(self.messages)


@asynccontextmanager
async def serving(handler: Handler, *, lifespan: bool = True, **options: Any) -> AsyncIterator[TestClient]:
    """A :class:`TestClient` for ``SockJSApp(handler, **options)``, under a time limit."""
    app = SockJSApp(handler, **options)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(app, lifespan=lifespan) as client:
            yield client


async def read_all(response: StreamingResponse) -> list[bytes]:
    """The remaining chunks of a streaming response, until it ends."""
    chunks = []
    while (chunk := await response.read()) is not None:
        chunks.append(chunk)
    return chunks


class Lifespan:
    """Drives an application's ASGI lifespan by hand, so a test can shut it down mid-test."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app
        to_app: MemoryObjectSendStream[Message]
        app_receive: MemoryObjectReceiveStream[Message]
        to_app, app_receive = anyio.create_memory_object_stream[Message](math.inf)
        app_send, from_app = anyio.create_memory_object_stream[Message](math.inf)
        self._to_app, self._app_receive = to_app, app_receive
        self._app_send, self._from_app = app_send, from_app
        self.done = anyio.Event()

    async def run(self) -> None:
        """Run the lifespan (start it in a task group)."""
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        try:
            await self.app(scope, self._app_receive.receive, self._app_send.send)
        finally:
            self._app_receive.close()
            self._app_send.close()  # what the app sent can still be received
            self.done.set()

    async def startup(self) -> None:
        await self._to_app.send({"type": "lifespan.startup"})
        message = await self._from_app.receive()
        assert message["type"] == "lifespan.startup.complete", message

    async def shutdown(self) -> None:
        await self._to_app.send({"type": "lifespan.shutdown"})
        message = await self._from_app.receive()
        self._to_app.close()
        self._from_app.close()
        assert message["type"] == "lifespan.shutdown.complete", message


def http_scope(
    method: str,
    path: str,
    *,
    query: str = "",
    headers: list[tuple[bytes, bytes]] | None = None,
    client: tuple[str, int] = ("127.0.0.1", 50001),
    server: tuple[str, int] = ("testserver", 80),
) -> Scope:
    """The scope of an HTTP/1.1 request as a server builds it, for requests driven by hand."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [] if headers is None else headers,
        "client": client,
        "server": server,
    }


class ManualRequest:
    """One HTTP request driven by hand, for what the TestClient cannot do: the test decides
    when the client disconnects, even before the response has started."""

    def __init__(self, app: SockJSApp, method: str, path: str, *, body: bytes = b"") -> None:
        self.app = app
        path, _, query = path.partition("?")
        self.scope = http_scope(method, path, query=query)
        self.body = body
        self.sent: list[Message] = []
        self.client_gone = anyio.Event()
        self.returned = anyio.Event()
        self._request_sent = False

    async def receive(self) -> Message:
        if not self._request_sent:
            self._request_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.client_gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    async def run(self) -> None:
        """Run the application for this request (start it in a task group)."""
        try:
            await self.app(self.scope, self.receive, self.send)
        finally:
            self.returned.set()

    def abort(self) -> None:
        """The client goes away."""
        self.client_gone.set()

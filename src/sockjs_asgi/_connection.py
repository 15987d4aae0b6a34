"""The object a handler gets: one SockJS connection, whatever the transport."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any, Protocol

from starlette.requests import HTTPConnection

from ._metrics import utf8_length
from .protocol.errors import ConnectionClosed
from .protocol.session import CloseReason

if TYPE_CHECKING:
    from ._app import SockJSApp

__all__ = ["Connection"]

_ids = itertools.count(1)


class _Link(Protocol):
    """What a connection needs from the session or socket under it."""

    @property
    def is_closed(self) -> bool: ...

    async def send(self, message: str) -> None: ...

    @property
    def close_code(self) -> int | None: ...

    @property
    def close_reason(self) -> str | None: ...

    async def receive(self) -> str | None: ...

    @property
    def pending_size(self) -> int: ...

    @property
    def max_pending_size(self) -> int: ...

    def push(self, message: str, encoded: str) -> None: ...

    def offer(self, message: str, encoded: str, frame: str, now: float) -> Awaitable[None] | None: ...

    def close_now(self, code: int, reason: str) -> None: ...


class Connection:
    """One client connection, as the application's handler sees it.

    Iterate over it to receive messages; the loop ends when the connection closes::

        async def handler(conn: Connection) -> None:
            async for message in conn:
                await conn.send(message)
    """

    def __init__(self, link: _Link, request: HTTPConnection, transport: str, app: SockJSApp) -> None:
        self._link = link
        #: The service this connection belongs to: broadcast to the others with
        #: ``await conn.app.broadcast(...)``, no global needed.
        self.app = app
        self._hub = app.hub
        self._metrics = app.metrics
        #: An opaque identifier, unique in this process.  It is not the SockJS session id,
        #: which is a secret between the client and the server.
        self.id = f"c{next(_ids)}"
        #: The request that opened the connection: headers, cookies, query, client address.
        self.request = request
        #: The transport that opened the connection: a URL suffix such as ``"xhr_streaming"``,
        #: or ``"raw_websocket"`` for the raw ``/websocket`` endpoint.
        self.transport = transport
        #: The application's own data about this connection.
        self.state: dict[str, Any] = {}

    def __repr__(self) -> str:
        status = "closed" if self.is_closed else "open"
        return f"<Connection {self.id} {self.transport} {status}>"

    @property
    def is_closed(self) -> bool:
        """Whether the connection is closed (or closing): nothing more can be sent."""
        return self._link.is_closed

    @property
    def close_code(self) -> int | None:
        """Why the connection closed: the close code, or ``None`` while it is open."""
        return self._link.close_code

    @property
    def close_reason(self) -> str | None:
        """Why the connection closed: the close reason, or ``None`` while it is open."""
        return self._link.close_reason

    async def send(self, message: str) -> None:
        """Send one text message.

        Waits while too much is queued for a client that is not reading.  Raises
        :class:`ConnectionClosed` if the connection is closed.
        """
        if not isinstance(message, str):
            raise TypeError(f"messages are str, got {type(message).__name__}")
        if self._link.is_closed:
            raise ConnectionClosed("the connection is closed")
        await self._link.send(message)
        self._count_out(message)

    def _count_out(self, message: str) -> None:
        self._metrics.messages_out += 1
        self._metrics.bytes_out += utf8_length(message)

    def _count_in(self, message: str) -> str:
        self._metrics.messages_in += 1
        self._metrics.bytes_in += utf8_length(message)
        return message

    async def close(self, code: int = CloseReason.GO_AWAY[0], reason: str = CloseReason.GO_AWAY[1]) -> None:
        """Close the connection; the client gets ``code`` and ``reason``.

        Closing a closed connection does nothing.  Codes 3000-4999 are the application's.
        """
        if isinstance(code, bool) or not isinstance(code, int) or not isinstance(reason, str):
            raise TypeError("close() takes an int code and a str reason")
        self._link.close_now(code, reason)

    async def receive(self) -> str:
        """The next message.  Raises :class:`ConnectionClosed` once the connection is closed."""
        message = await self._link.receive()
        if message is None:
            raise ConnectionClosed("the connection is closed")
        return self._count_in(message)

    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        message = await self._link.receive()
        if message is None:
            raise StopAsyncIteration
        return self._count_in(message)

    # -- rooms ---------------------------------------------------------------------------

    def join(self, room: str) -> None:
        """Join ``room``; see :meth:`SockJSApp.broadcast`.  A closed connection leaves them all."""
        self._hub.join(self, room)

    def leave(self, room: str) -> None:
        """Leave ``room`` (nothing happens if the connection is not in it)."""
        self._hub.leave(self, room)

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms this connection is in."""
        return self._hub.rooms_of(self)

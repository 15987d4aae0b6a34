"""The object a handler gets: one SockJS connection, whatever the transport."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any, Protocol

from starlette.requests import HTTPConnection

from ._types import Scope, Send
from .protocol.errors import ConnectionClosed
from .protocol.session import CloseReason

if TYPE_CHECKING:
    from ._app import SockJSApp
    from ._metrics import Metrics

__all__ = ["Connection"]

_ids = itertools.count(1)


class _Link(Protocol):
    """What a connection needs from the session or socket under it.  It counts the messages
    the handler sends and receives in the service's metrics."""

    @property
    def is_closed(self) -> bool: ...

    async def send(self, message: str) -> None: ...

    @property
    def close_code(self) -> int | None: ...

    @property
    def close_reason(self) -> str | None: ...

    async def receive(self, end: type[Exception] = ...) -> str:
        """The next message; ``end`` (``StopAsyncIteration`` by default) raised once closed."""

    def __aiter__(self) -> AsyncIterator[str]: ...

    def __anext__(self) -> Awaitable[str]:
        """:meth:`receive`, the same function: the link iterates over its messages itself."""

    @property
    def pending_size(self) -> int: ...

    @property
    def max_pending_size(self) -> int: ...

    def push(self, message: str, encoded: str) -> None: ...

    @property
    def framed(self) -> bool: ...

    is_writing: bool
    is_parked: bool
    #: The service's counters, which broadcasts add their deliveries to.
    metrics: Metrics | None

    def claim(self, now: float) -> Send | None: ...

    def release(self, *, waited: bool) -> None: ...

    def _socket_lost(self) -> None: ...

    def close_now(self, code: int, reason: str) -> None: ...


async def _raise(exc: Exception) -> None:
    """An error raised where it would be if the method raising it were a coroutine: when it is
    awaited, not when it is called."""
    raise exc


class Connection:
    """One client connection, as the application's handler sees it.

    Iterate over it to receive messages; the loop ends when the connection closes::

        async def handler(conn: Connection) -> None:
            async for message in conn:
                await conn.send(message)
    """

    def __init__(self, link: _Link, request: HTTPConnection | Scope, transport: str, app: SockJSApp) -> None:
        self._link = link
        #: The service this connection belongs to: broadcast to the others with
        #: ``await conn.app.broadcast(...)``, no global needed.
        self.app = app
        self._hub = app.hub
        self._number = next(_ids)
        # The request that opened the connection, or its scope until it is first asked for.
        self._request = request
        #: The transport that opened the connection: a URL suffix such as ``"xhr_streaming"``,
        #: or ``"raw_websocket"`` for the raw ``/websocket`` endpoint.
        self.transport = transport
        self._state: dict[str, Any] | None = None  # made when first asked for

    @property
    def id(self) -> str:
        """An opaque identifier, unique in this process.  It is not the SockJS session id,
        which is a secret between the client and the server."""
        return f"c{self._number}"

    @property
    def request(self) -> HTTPConnection:
        """The request that opened the connection: headers, cookies, query, client address."""
        request = self._request
        if not isinstance(request, HTTPConnection):
            request = self._request = HTTPConnection(request)
        return request

    @property
    def state(self) -> dict[str, Any]:
        """The application's own data about this connection."""
        if self._state is None:
            self._state = {}
        return self._state

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

    def send(self, message: str) -> Awaitable[None]:
        """Send one text message: ``await conn.send(message)``.

        Waits while too much is queued for a client that is not reading.  Raises
        :class:`ConnectionClosed` if the connection is closed.  (The awaitable is the
        session's own send: one coroutine per message rather than two.)
        """
        if message.__class__ is not str and not isinstance(message, str):
            return _raise(TypeError(f"messages are str, got {type(message).__name__}"))
        return self._link.send(message)  # which raises ConnectionClosed once closed

    async def close(self, code: int = CloseReason.GO_AWAY[0], reason: str = CloseReason.GO_AWAY[1]) -> None:
        """Close the connection; the client gets ``code`` and ``reason``.

        Closing a closed connection does nothing.  Codes 3000-4999 are the application's.
        """
        if isinstance(code, bool) or not isinstance(code, int) or not isinstance(reason, str):
            raise TypeError("close() takes an int code and a str reason")
        self._link.close_now(code, reason)

    def receive(self) -> Awaitable[str]:
        """The next message: ``await conn.receive()``.  Raises :class:`ConnectionClosed` once
        the connection is closed."""
        return self._link.receive(ConnectionClosed)

    def __aiter__(self) -> AsyncIterator[str]:
        # The session iterates over its messages itself: its receive is its __anext__, so that
        # an ``async for`` step calls no method of this object, and every idle session's await
        # chain has no coroutine of it.
        return self._link

    def __anext__(self) -> Awaitable[str]:
        return self._link.receive(StopAsyncIteration)

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

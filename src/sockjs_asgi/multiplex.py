"""Several named channels over one SockJS connection, in the websocket-multiplex format.

Browsers limit the connections a page may open to one host, so an application with several
independent streams of messages (a chat, a ticker, notifications) often carries them all over
one SockJS connection.  The websocket-multiplex client library, written for SockJS, frames each
message as ``type,topic,payload``:

* ``sub,TOPIC``: the client opens its channel ``TOPIC``;
* ``msg,TOPIC,PAYLOAD``: a message on that channel, in either direction (the payload may
  contain commas);
* ``uns,TOPIC``: the channel is closed, by the client or by the server.

The client applies JavaScript's ``escape()`` to channel names, so a channel registered here as
``"my room"`` travels as ``my%20room``; registration does the same (see ``escape_topic``).

A ``Multiplexer`` is a handler for ``SockJSApp``.  Each channel the client opens runs its own
handler, which gets a ``Channel``: the same ``async for``, ``send`` and ``close`` as a
``Connection``, scoped to one topic::

    from sockjs_asgi import SockJSApp
    from sockjs_asgi.multiplex import Channel, Multiplexer

    mux = Multiplexer()

    @mux.channel("echo")
    async def echo(channel: Channel) -> None:
        async for message in channel:
            await channel.send(message)

    app = SockJSApp(mux)

A client that opens a channel nobody registered, or one that authorization refuses, gets
``uns,TOPIC`` at once, which the client library turns into the channel's ``close`` event; so
does a channel whose handler returns.  Closing a channel never closes the connection.
"""

from __future__ import annotations

import contextlib
import logging
import string
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, overload

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.requests import HTTPConnection

from ._app import _is_connection_closed
from ._connection import Connection
from ._hub import push
from .protocol.errors import ConnectionClosed

__all__ = ["Channel", "ChannelAuthorize", "ChannelHandler", "Multiplexer", "escape_topic", "parse"]

logger = logging.getLogger("sockjs_asgi")

# What JavaScript's escape() leaves alone (ECMA-262, B.2.1.1).
_UNESCAPED = frozenset(string.ascii_letters + string.digits + "@*_+-./")


def escape_topic(name: str) -> str:
    """The topic of channel ``name`` on the wire: JavaScript's ``escape(name)``.

    The websocket-multiplex client escapes every channel name this way, so ``"my room"``
    travels as ``"my%20room"`` and a topic never contains the comma that separates fields.
    """
    units = name.encode("utf-16-le", "surrogatepass")
    escaped: list[str] = []
    for index in range(0, len(units), 2):
        unit = units[index] | units[index + 1] << 8
        char = chr(unit)
        if char in _UNESCAPED:
            escaped.append(char)
        elif unit < 0x100:
            escaped.append(f"%{unit:02X}")
        else:
            escaped.append(f"%u{unit:04X}")
    return "".join(escaped)


def parse(message: str) -> tuple[str, str, str]:
    """Split a multiplexed message into ``(type, topic, payload)``.

    Everything after the second comma is the payload, commas included, as the client library
    reads it; missing fields are empty strings.
    """
    kind, _, rest = message.partition(",")
    topic, _, payload = rest.partition(",")
    return kind, topic, payload


class Channel:
    """One channel of a multiplexed connection, as its handler sees it.

    It behaves like a ``Connection`` scoped to one topic: iterate over it to receive the
    client's messages on this channel (the loop ends when the channel or the connection
    closes), ``send()`` to answer on it, ``close()`` to end it.  The connection under it is
    ``channel.connection``: its ``request``, ``state``, rooms and why it closed.
    """

    def __init__(self, connection: Connection, name: str, max_incoming_messages: int) -> None:
        #: The connection that carries this channel.
        self.connection = connection
        #: The channel's name, as registered with ``Multiplexer.channel``.
        self.name = name
        #: The name as it travels on the wire (``escape_topic(name)``).
        self.topic = escape_topic(name)
        #: An identifier unique in this process: the connection's, and the topic.
        self.id = f"{connection.id}/{self.topic}"
        #: The application's own data about this channel (the connection's is ``connection.state``).
        self.state: dict[str, Any] = {}
        #: Whether the client closed the channel (``uns``), rather than the server or the connection.
        self.is_closed_by_client = False
        self._is_ended = False
        self._prefix = f"msg,{self.topic},"
        self._inbox: MemoryObjectSendStream[str]
        self._outbox: MemoryObjectReceiveStream[str]
        self._inbox, self._outbox = anyio.create_memory_object_stream[str](max_incoming_messages)

    def __repr__(self) -> str:
        status = "closed" if self.is_closed else "open"
        return f"<Channel {self.id} {self.connection.transport} {status}>"

    @property
    def request(self) -> HTTPConnection:
        """The request that opened the connection: headers, cookies, query, client address."""
        return self.connection.request

    @property
    def transport(self) -> str:
        """The connection's transport, such as ``"websocket"`` or ``"xhr_streaming"``."""
        return self.connection.transport

    @property
    def is_closed(self) -> bool:
        """Whether the channel (or the whole connection) is closed: nothing more can be sent."""
        return self._is_ended or self.connection.is_closed

    async def send(self, message: str) -> None:
        """Send one text message on this channel.

        Waits, like ``Connection.send``, while too much is queued for a client that is not
        reading.  Raises ``ConnectionClosed`` once the channel or the connection is closed.
        """
        if not isinstance(message, str):
            raise TypeError(f"messages are str, got {type(message).__name__}")
        if self.is_closed:
            raise ConnectionClosed("the channel is closed")
        await self.connection.send(self._prefix + message)

    async def receive(self) -> str:
        """The next message on this channel.  Raises ``ConnectionClosed`` once it is closed."""
        try:
            return await self._outbox.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise ConnectionClosed("the channel is closed") from None

    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        try:
            return await self._outbox.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def close(self) -> None:
        """Close this channel: the client's channel gets its ``close`` event.

        The connection and its other channels stay open.  Closing a closed channel does nothing.
        """
        self._close_now()

    # -- the multiplexer's side ------------------------------------------------------------

    def _close_now(self) -> None:
        """End the channel and tell the client, without waiting (a control frame never queues
        behind the connection's flow control)."""
        if self._is_ended:
            return
        self._end()
        push(f"uns,{self.topic}", [self.connection])

    def _end(self) -> None:
        """End the channel without telling the client: messages already received can still be
        read, then the handler's loop ends."""
        self._is_ended = True
        self._inbox.close()

    async def _deliver(self, payload: str) -> None:
        """Hand a client message to the handler; waits while its queue is full."""
        # The handler may have returned (or the channel closed) while the client was still sending.
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await self._inbox.send(payload)

    def _release(self) -> None:
        self._inbox.close()
        self._outbox.close()


#: Runs one channel; the channel closes when it returns.
ChannelHandler = Callable[[Channel], Awaitable[None]]

#: Decides whether the client may open a channel; ``False`` answers ``uns`` and no handler runs.
ChannelAuthorize = Callable[[Channel], Awaitable[bool]]


@dataclass(frozen=True)
class _Registration:
    name: str
    handler: ChannelHandler
    authorize: ChannelAuthorize | None


class Multiplexer:
    """Serves named channels over each SockJS connection; pass it to ``SockJSApp`` as the handler.

    ``authorize``, if given, is asked about every channel a client opens (in addition to a
    channel's own ``authorize``): ``async def authorize(channel: Channel) -> bool``.  It sees
    the channel's ``name``, the ``request`` and the ``connection`` (whose ``state`` your own
    handler may have filled before calling ``serve``).

    ``max_incoming_messages`` bounds each channel's queue of client messages that its handler
    has not read yet.  All channels share one connection, so a handler that stops reading
    holds up the others once its queue is full (as it would hold up the connection alone):
    nothing is dropped.
    """

    def __init__(self, *, authorize: ChannelAuthorize | None = None, max_incoming_messages: int = 1024) -> None:
        if authorize is not None and not callable(authorize):
            raise TypeError(f"authorize must be an async callable, got {authorize!r}")
        if isinstance(max_incoming_messages, bool) or not isinstance(max_incoming_messages, int):
            raise TypeError(f"max_incoming_messages must be an integer, got {max_incoming_messages!r}")
        if max_incoming_messages <= 0:
            raise ValueError(f"max_incoming_messages must be positive, got {max_incoming_messages!r}")
        self.authorize = authorize
        self.max_incoming_messages = max_incoming_messages
        self._registrations: dict[str, _Registration] = {}
        self._subscribers: dict[str, set[Channel]] = {}

    def __repr__(self) -> str:
        return f"<Multiplexer {sorted(self.names)!r}>"

    @overload
    def channel(
        self, name: str, handler: None = None, *, authorize: ChannelAuthorize | None = None
    ) -> Callable[[ChannelHandler], ChannelHandler]: ...

    @overload
    def channel(
        self, name: str, handler: ChannelHandler, *, authorize: ChannelAuthorize | None = None
    ) -> ChannelHandler: ...

    def channel(
        self, name: str, handler: ChannelHandler | None = None, *, authorize: ChannelAuthorize | None = None
    ) -> ChannelHandler | Callable[[ChannelHandler], ChannelHandler]:
        """Register ``handler`` for the channel ``name``; as a decorator, without ``handler``.

        ``authorize`` is this channel's own check, asked after the multiplexer's.  A name can
        be registered once.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a channel name is a non-empty str, got {name!r}")
        if name in self.names:
            raise ValueError(f"channel {name!r} is already registered")
        if authorize is not None and not callable(authorize):
            raise TypeError(f"authorize must be an async callable, got {authorize!r}")

        def register(handler: ChannelHandler) -> ChannelHandler:
            if not callable(handler):
                raise TypeError(f"a channel handler must be an async callable, got {handler!r}")
            self._registrations[escape_topic(name)] = _Registration(name, handler, authorize)
            return handler

        if handler is None:
            return register
        return register(handler)

    @property
    def names(self) -> frozenset[str]:
        """The registered channel names."""
        return frozenset(registration.name for registration in self._registrations.values())

    def subscribers(self, name: str) -> frozenset[Channel]:
        """The open channels called ``name``, over every connection."""
        return frozenset(self._subscribers.get(escape_topic(name), ()))

    async def broadcast(self, name: str, message: str, *, exclude: Channel | None = None) -> int:
        """Send ``message`` on every open channel called ``name`` except ``exclude``.

        Like ``SockJSApp.broadcast``, the frame is encoded once and queued without waiting for
        any client.  Returns how many channels it was queued for.
        """
        if not isinstance(message, str):
            raise TypeError(f"messages are str, got {type(message).__name__}")
        topic = escape_topic(name)
        targets = [channel.connection for channel in self._subscribers.get(topic, ()) if not channel.is_closed]
        return push(f"msg,{topic},{message}", targets, exclude.connection if exclude is not None else None)

    async def __call__(self, connection: Connection) -> None:
        """Serve ``connection``'s channels until it closes: the multiplexer as a handler."""
        await self.serve(connection)

    async def serve(self, connection: Connection) -> None:
        """Serve ``connection``'s channels until it closes.

        Call it from your own handler to prepare the connection first (say, to put the user
        into ``connection.state`` for the channels' ``authorize``).  Returns when the connection
        has closed and every channel's handler has returned.
        """
        channels: dict[str, Channel] = {}
        async with anyio.create_task_group() as task_group:
            async for message in connection:
                kind, topic, payload = parse(message)
                channel = channels.get(topic)
                if channel is not None:
                    if kind == "msg":
                        await channel._deliver(payload)
                    elif kind == "uns":
                        del channels[topic]
                        channel.is_closed_by_client = True
                        channel._end()
                elif kind == "sub":
                    # Messages of other types on a channel that is not open are ignored, as the
                    # reference server does: they cross the server's own "uns" on the wire.
                    channel = await self._open(connection, topic)
                    if channel is not None:
                        channels[topic] = channel
                        # A subscriber from now on, before its handler starts: a broadcast
                        # that follows this "sub" reaches it.
                        self._subscribers.setdefault(topic, set()).add(channel)
                        task_group.start_soon(self._run, channel, channels)
            for channel in channels.values():
                channel._end()

    async def _open(self, connection: Connection, topic: str) -> Channel | None:
        """A new channel for ``topic`` if it is registered and allowed; else answers ``uns``."""
        registration = self._registrations.get(topic)
        if registration is not None:
            channel = Channel(connection, registration.name, self.max_incoming_messages)
            if await self._allowed(channel, registration):
                return channel
            channel._release()
            logger.debug("%r: channel %r refused", connection, registration.name)
        push(f"uns,{topic}", [connection])
        return None

    async def _allowed(self, channel: Channel, registration: _Registration) -> bool:
        for check in (self.authorize, registration.authorize):
            if check is not None and not await check(channel):
                return False
        return True

    async def _run(self, channel: Channel, channels: dict[str, Channel]) -> None:
        """Run a channel's handler; close the channel when it returns."""
        registration = self._registrations[channel.topic]
        try:
            await registration.handler(channel)
        except Exception as exc:
            if _is_connection_closed(exc):
                logger.debug("%r: the channel handler sent on a closed channel", channel)
            else:
                logger.exception("%r: the channel handler raised; closing the channel", channel)
        finally:
            subscribers = self._subscribers.get(channel.topic, set())
            subscribers.discard(channel)
            if not subscribers:
                self._subscribers.pop(channel.topic, None)
            if channels.get(channel.topic) is channel:
                del channels[channel.topic]
            channel._close_now()
            channel._release()

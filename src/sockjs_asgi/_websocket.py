"""The websocket endpoints: the SockJS websocket transport and the raw ``/websocket``.

A websocket session is private to its socket (PROTOCOL.md 6): it is never registered under its
session id and it ends with the socket, without ``disconnect_delay``.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import anyio
from starlette.requests import HTTPConnection

from ._connection import Connection
from ._http import pump
from ._session import SOCKET_LOST, DirectWriter, Wakeup
from ._types import Message, Receive, Scope, Send
from .protocol import frames
from .protocol.errors import ConnectionClosed, RemoteProtocolError
from .protocol.escaping import decode_messages
from .protocol.http import NOT_FOUND
from .protocol.session import CloseReason

if TYPE_CHECKING:
    from ._app import SockJSApp

__all__ = ["RawLink", "deny", "serve_raw", "serve_session"]

logger = logging.getLogger("sockjs_asgi")

#: Close code and reason for a client message that is not JSON (node's choice).
BROKEN_FRAMING = (3000, "Broken framing.")


async def _refuse(scope: Scope, send: Send, status: int) -> None:
    """Refuse a websocket before accepting it: with ``status`` where the server supports the
    denial-response extension, else by closing, which servers answer with 403."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    body = b"Forbidden" if status == 403 else NOT_FOUND.encode()
    headers = [(b"content-type", b"text/plain; charset=UTF-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body, "more_body": False})


async def deny(scope: Scope, receive: Receive, send: Send, status: int) -> None:
    """Refuse a websocket request for a URL that takes none (404)."""
    if (await receive())["type"] == "websocket.connect":
        await _refuse(scope, send, status)


def _text(message: dict[str, object] | object) -> str | None:
    assert isinstance(message, dict)
    text = message.get("text")
    if isinstance(text, str):
        return text
    data = message.get("bytes")
    if isinstance(data, bytes):
        try:
            return data.decode()
        except UnicodeDecodeError:
            return None
    return None


async def _accept(app: SockJSApp, scope: Scope, receive: Receive, send: Send, *, raw: bool) -> HTTPConnection | None:
    """Accept a websocket as a new session, or refuse it and return ``None``.

    On success the session is counted in ``app._websocket_sessions``; the caller uncounts it.
    """
    message = await receive()
    if message["type"] != "websocket.connect":
        return None
    request = HTTPConnection(scope)
    options = app.options
    if not app.is_origin_allowed(request) or (options.authorize is not None and not await options.authorize(request)):
        await _refuse(scope, send, 403)
        return None
    await send({"type": "websocket.accept"})
    if app.is_full:
        # Accepted, then closed with a reason the client can read (``max_sessions``).
        code, reason = CloseReason.TOO_MANY_SESSIONS
        with contextlib.suppress(OSError):
            if not raw:
                await send({"type": "websocket.send", "text": frames.close(code, reason)})
            await send({"type": "websocket.close", "code": code, "reason": reason})
        return None
    app._websocket_sessions += 1
    return request


async def serve_session(app: SockJSApp, scope: Scope, receive: Receive, send: Send) -> None:
    """The SockJS websocket transport: one text message per frame."""
    request = await _accept(app, scope, receive, send, raw=False)
    if request is None:
        return
    try:
        await _run_session(app, request, receive, send)
    finally:
        app._websocket_sessions -= 1


async def _run_session(app: SockJSApp, request: HTTPConnection, receive: Receive, send: Send) -> None:
    channel = app._new_channel(None, "websocket")
    channel.attach()
    socket_open = True

    def on_read(message: Message) -> Awaitable[None] | None:
        # One message the handler's task read from the socket (see ``Channel.receive``): a
        # session has no reading task of its own.  A handler that does not read learns that the
        # client left when a write fails, the heartbeat's at the latest.
        nonlocal socket_open
        if message["type"] == "websocket.disconnect":
            socket_open = False
            channel.terminate(message.get("code", 1005), message.get("reason") or "")
            return None
        text = _text(message)
        # Empty messages and "[]" carry nothing; a bare JSON value is not a SockJS payload.
        if text == "":
            return None
        try:
            if text is None:
                raise RemoteProtocolError("Broken framing.")
            channel.take(decode_messages(text))
        except RemoteProtocolError:
            channel.terminate(*BROKEN_FRAMING)
            if socket_open:
                socket_open = False
                return close_broken()
        return None

    async def close_broken() -> None:
        with contextlib.suppress(OSError):  # the client may be gone already
            await send({"type": "websocket.close", "code": BROKEN_FRAMING[0], "reason": BROKEN_FRAMING[1]})

    async def write(frame: str) -> bool:
        await send({"type": "websocket.send", "text": frame})
        return frames.is_close(frame)

    channel.direct = send
    channel._read = receive
    channel._on_read = on_read

    async def run_pump(on_demand: bool = False) -> None:
        nonlocal socket_open
        try:
            await pump(
                channel,
                write,
                heartbeat_delay=app.options.heartbeat_delay,
                heartbeats=app._heartbeats,
                on_demand=on_demand,
            )
            if on_demand and not channel.core.is_closed:
                return  # nothing more to write for now
            if socket_open:
                socket_open = False
                await send({"type": "websocket.close", "code": 1000})
        except OSError:
            socket_open = False  # the server reports a socket that closed under us
        channel.terminate(channel.close_code or 1006, channel.close_reason or "Socket lost")

    conn = Connection(channel, request, "websocket", app)
    heartbeats, task_group = app._heartbeats, app._task_group
    if heartbeats is None or task_group is None:
        # No run(): the session's own task group holds a pump for the whole session.
        async with anyio.create_task_group() as own:
            own.start_soon(run_pump)
            await app.run_handler(channel, conn)
            # The handler returned: run_handler closed the session, the pump writes the close
            # frame and closes the socket, and the task group ends with it.
        return

    # With run(), a writer runs only while there is something to write: an idle session holds
    # no task but the handler's (which waits for the client), and broadcasts, heartbeats and
    # the close frame start one when they need it, in run()'s task group.
    async def write_on_demand() -> None:
        try:
            await run_pump(on_demand=True)
        except Exception:  # keep run()'s task group alive; the server's error ends this session
            logger.exception("%r: writing to the websocket failed", conn)
            channel.terminate(*CloseReason.INTERNAL_ERROR)
        finally:
            channel.writer_finished()

    def start_writer() -> None:
        task_group.start_soon(write_on_demand)

    channel.start_writer = start_writer
    try:
        opening = channel.next_frame()  # the open frame, written here: no writer is needed yet
        assert opening == frames.OPEN
        channel.is_writing = True
        try:
            await write(opening)
        finally:
            channel.is_writing = False
        channel.last_write = channel.clock()
        channel.is_parked = True
        heartbeats.park(channel)
        await app.run_handler(channel, conn)
        # The handler returned: run_handler closed the session, and a writer writes the close
        # frame and closes the socket.  This call returns only after it: the socket is the
        # server's once the application returns.
        await channel.wait_writers()
    except OSError:  # the socket closed under the open frame
        channel.terminate(1006, "Socket lost")
    except BaseException:
        channel.terminate(1006, "Socket lost")
        raise
    finally:
        heartbeats.unpark(channel)


class RawLink(DirectWriter):
    """A raw websocket: messages go out and come in verbatim, with no SockJS framing.

    The handler's task reads the socket in :meth:`receive`; that wait ends when the socket
    closes (for a close from this side, when the client answers it).  :meth:`write` empties
    the outgoing queue, so that a broadcast can add to it without waiting; while it waits with
    nothing to write, senders write to the socket themselves (see
    :meth:`Channel.offer <sockjs_asgi._session.Channel.offer>`).
    """

    __slots__ = (
        "_incoming",
        "_pending",
        "_reading",
        "_receive",
        "_room",
        "_send",
        "_socket_closed",
        "_taken",
        "close_code",
        "close_reason",
        "max_pending_size",
        "pending_size",
    )

    def __init__(self, receive: Receive, send: Send, *, max_pending_size: int) -> None:
        super().__init__()
        self._receive = receive
        self._send = send
        self.max_pending_size = max_pending_size
        self._incoming: deque[str] = deque()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._pending: deque[str] = deque()
        self.pending_size = 0
        self._reading = False
        self._taken = Wakeup()  # incoming messages for the handler, or closed
        self._room = Wakeup()  # a queue shrank, or closed
        self._socket_closed = False

    @property
    def is_closed(self) -> bool:
        return self.close_code is not None

    async def send(self, message: str) -> None:
        while self.pending_size >= self.max_pending_size and self.close_code is None:
            await self._room.wait()
        if self.close_code is not None:
            raise ConnectionClosed("the connection is closed")
        # No frame packs raw messages: one for an idle socket is written at once, by the caller.
        blocked = self.offer(message, message, message, 0.0)
        if blocked is not None:
            await blocked

    def push(self, message: str, encoded: str) -> None:
        """Queue a message for :meth:`write`."""
        self._pending.append(message)
        self.pending_size += len(message)
        self._outgoing.fire()

    def offer(self, message: str, encoded: str, frame: str, now: float) -> Awaitable[None] | None:
        """Write ``message`` at once if the socket is idle, else queue it; see ``Channel.offer``."""
        if not self.is_parked or self.is_writing or self._pending:
            self.push(message, encoded)
            return None
        return self._write_now(self._send, message)

    def _socket_lost(self) -> None:
        self.is_writing = False
        self.close_now(*SOCKET_LOST)

    def _take(self) -> str:
        message = self._pending.popleft()
        self.pending_size -= len(message)
        self._room.fire()
        return message

    def close_now(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self._outgoing.fire()
            self._taken.fire()
            self._room.fire()

    async def write(self) -> None:
        """Write queued messages until the connection closes, then close the socket."""
        try:
            while True:
                if self.is_writing:  # another task is finishing a write
                    await self._outgoing.wait()
                elif self._pending:
                    message = self._take()
                    self.is_writing = True
                    try:
                        await self._send({"type": "websocket.send", "text": message})
                    finally:
                        self.is_writing = False
                elif self.is_closed:
                    break
                else:
                    self.is_parked = True
                    try:
                        await self._outgoing.wait()
                    finally:
                        self.is_parked = False
            if not self._socket_closed:
                self._socket_closed = True
                await self._send({"type": "websocket.close", "code": self.close_code, "reason": self.close_reason})
        except OSError:
            self.close_now(*SOCKET_LOST)  # the server reports the socket gone

    async def receive(self) -> str | None:
        """The next message; ``None`` once the connection is closed and nothing is left.

        There is no reading task: the handler's task reads the socket here, as the SockJS
        websocket transport does (see ``Channel.receive``).
        """
        incoming = self._incoming
        while not incoming:
            if self.close_code is not None:
                return None
            if self._reading:
                await self._taken.wait()
                continue
            self._reading = True
            try:
                message = await self._receive()
            finally:
                self._reading = False
                self._taken.fire()
            if message["type"] == "websocket.disconnect":
                self._socket_closed = True
                self.close_now(message.get("code", 1005), message.get("reason") or "")
                return None
            text = message.get("text")
            if text.__class__ is not str:
                text = _text(message)
            if text is not None and self.close_code is None:
                if not incoming:  # the usual case: straight to the handler
                    return text
                incoming.append(text)
        return incoming.popleft()


async def serve_raw(app: SockJSApp, scope: Scope, receive: Receive, send: Send) -> None:
    """The raw ``/websocket`` endpoint (PROTOCOL.md 6)."""
    request = await _accept(app, scope, receive, send, raw=True)
    if request is None:
        return
    link = RawLink(receive, send, max_pending_size=app.options.max_pending_size)
    try:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(link.write)
            await app.run_handler(link, Connection(link, request, "raw_websocket", app))
    finally:
        app._websocket_sessions -= 1

"""The websocket endpoints: the SockJS websocket transport and the raw ``/websocket``.

A websocket session is private to its socket (PROTOCOL.md 6): it is never registered under its
session id and it ends with the socket, without ``disconnect_delay``.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import HTTPConnection

from . import _immediate
from ._connection import Connection
from ._http import pump
from ._session import SOCKET_LOST, Channel, DirectWriter, Wakeup
from ._types import Message, Receive, Scope, Send
from .protocol import frames
from .protocol.errors import ConnectionClosed, RemoteProtocolError
from .protocol.escaping import decode_messages, one_plain_message, utf8_length
from .protocol.http import NOT_FOUND
from .protocol.session import CloseReason

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ._app import SockJSApp
    from ._metrics import Metrics

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


async def _accept(
    app: SockJSApp, scope: Scope, receive: Receive, send: Send, *, raw: bool
) -> HTTPConnection | Scope | None:
    """Accept a websocket as a new session, or refuse it and return ``None``.

    Returns the request for its :class:`Connection`: the scope itself, unless checking the
    origin or ``authorize`` needed the request object.  On success the session is counted in
    ``app._websocket_sessions``; the caller uncounts it.
    """
    message = await receive()
    if message["type"] != "websocket.connect":
        return None
    request: HTTPConnection | Scope = scope
    options = app.options
    if options.allowed_origins is not None or options.authorize is not None:
        request = HTTPConnection(scope)
        if not app.is_origin_allowed(request) or (
            options.authorize is not None and not await options.authorize(request)
        ):
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
    """The SockJS websocket transport: one text message per frame.

    An idle session is this coroutine and its handler's, waiting on the socket: the state it
    needs lives in its channel, a slotted :class:`_SocketChannel`, rather than in closures,
    and nothing else is awaited in between, so that a session costs little more than a bare
    socket.
    """
    request = await _accept(app, scope, receive, send, raw=False)
    if request is None:
        return
    channel: _SocketChannel | None = None
    try:
        channel = app._new_channel(None, "websocket", _SocketChannel)
        channel.serve(app, receive, send)
        channel.attach()
        conn = channel.conn = Connection(channel, request, "websocket", app)
        heartbeats, task_group = app._heartbeats, app._task_group
        if heartbeats is None or task_group is None:
            # No run(): the session's own task group holds a pump for the whole session.
            await _run_with_writer(app, channel, conn, channel.run_pump)
            return
        # With run(), a writer runs only while there is something to write: an idle session
        # holds no task but the handler's (which waits for the client), and broadcasts,
        # heartbeats and the close frame start one when they need it, in run()'s task group.
        channel.task_group = task_group
        channel.on_demand = True
        try:
            opening = channel.next_frame()  # the open frame, written here: no writer is needed yet
            assert opening == frames.OPEN
            channel.is_writing = True
            try:
                await channel.write(opening)
            finally:
                channel.is_writing = False
            channel.last_write = channel.clock()
            channel.is_parked = True
            heartbeats.park(channel)
            app._handler_starts(conn)  # run_handler, inline: see there
            try:
                await app.handler(conn)
            except Exception as exc:
                app._handler_raised(channel, conn, exc)
            finally:
                app._handler_ended(conn)
            channel.close_now(*CloseReason.GO_AWAY)
            # The handler returned and the session is closed: a writer writes the close frame
            # and closes the socket.  This call returns only after it: the socket is the
            # server's once the application returns.
            await channel.wait_writers()
        except OSError:  # the socket closed under the open frame
            channel.terminate(1006, "Socket lost")
        except BaseException:
            channel.terminate(1006, "Socket lost")
            raise
        finally:
            heartbeats.unpark(channel)
    finally:
        app._websocket_sessions -= 1
        if channel is not None:
            # The connection refers to its channel: without this reference back, the session's
            # objects, and the server's socket objects they hold, are freed as it ends rather
            # than left to the cycle collector.
            channel.conn = None


async def _run_with_writer(
    app: SockJSApp, link: Channel | RawLink, conn: Connection, writer: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    """Run the handler beside a writer of the socket's own, without ``run()``.  When the handler
    returns, ``run_handler`` closes the connection; the writer writes what is left, the close
    included, closes the socket and returns, and the task group ends with it."""
    async with anyio.create_task_group() as own:
        own.start_soon(writer)
        await app.run_handler(link, conn)


class _SocketChannel(Channel):
    """The channel of one websocket session, and its socket's side: reading client messages
    into the session, and the writer that writes its frames."""

    __slots__ = ("_call_soon", "_read", "_reading", "_unfinished", "app", "conn", "is_open", "task_group")

    def serve(self, app: SockJSApp, receive: Receive, send: Send) -> None:
        """Serve the session over this socket (right after the channel is made)."""
        self.app = app
        self.direct = send
        #: The socket's ``receive``, which the handler's task reads in :meth:`receive`.
        self._read = receive
        self._reading = False
        self.is_open = True
        self.conn: Connection | None = None
        #: run()'s task group, where a writer starts when one is needed.
        self.task_group: TaskGroup | None = None
        # run()'s loop's call_soon on asyncio, for the handler's bursts (see _wake_soon).
        self._call_soon = app._call_soon
        self._unfinished: Awaitable[None] | None = None  # a write _flush() left to the writer

    def _socket_send(self, message: Message) -> Awaitable[None]:
        send = self.direct
        assert send is not None
        return send(message)

    async def receive(self, end: type[Exception] = StopAsyncIteration) -> str:
        """The next message from the client (see ``Channel.receive``).

        A session has no task of its own that reads the socket: the handler's task reads it
        here, when it wants a message and none is waiting.  While one task reads, others asking
        for a message wait for what it brings.  A close from this side ends that read when the
        client answers it (servers then report the socket closed): a read is not interrupted,
        as cancelling one costs more than the read itself.  A payload of one message, the usual
        one, goes straight to the caller, with no queue in between.  A handler that does not
        read learns that the client left when a write fails, the heartbeat's at the latest.
        """
        core = self.core
        while True:
            incoming = self.incoming
            if incoming:
                message = incoming.popleft()
                if not incoming:
                    self.incoming = None
                break
            if core.is_closed:
                raise end("the connection is closed")
            if self._reading:
                await self._incoming.wait()
                continue
            self._reading = True
            try:
                read = await self._read()
            finally:
                self._reading = False
                if self._incoming._waiters is not None:  # fire(), inline when nobody waits
                    self._incoming.fire()
            text = read.get("text")
            if text.__class__ is str:
                plain = one_plain_message(text)  # decode_messages(), inline for the usual payload
                if plain is not None:
                    if core.is_closed:  # core.receive(): nothing more for the handler
                        continue
                    message = plain.group(1)
                    break
            else:
                if read["type"] == "websocket.disconnect":
                    self.is_open = False
                    self.terminate(read.get("code", 1005), read.get("reason") or "")
                    continue
                text = _text(read)
            # Empty messages and "[]" carry nothing; a bare JSON value is not a SockJS payload.
            if text == "":
                continue
            try:
                if text is None:
                    raise RemoteProtocolError("Broken framing.")
                messages = core.receive(decode_messages(text))
            except RemoteProtocolError:
                self.terminate(*BROKEN_FRAMING)
                if self.is_open:
                    self.is_open = False
                    await self.close_broken()
                continue
            if len(messages) == 1:
                message = messages[0]
                break
            if messages:
                self.incoming = deque(messages)
        if self._drained is not None:
            self._drained.fire()
        metrics = self.metrics
        if metrics is not None:  # count_in(), inline: this is every message's path
            metrics.messages_in += 1
            metrics.bytes_in += len(message) if message.isascii() else utf8_length(message)
        return message

    __anext__ = receive

    async def close_broken(self) -> None:
        with contextlib.suppress(OSError):  # the client may be gone already
            await self._socket_send({"type": "websocket.close", "code": BROKEN_FRAMING[0], "reason": BROKEN_FRAMING[1]})

    async def write(self, frame: str) -> bool:
        await self._socket_send({"type": "websocket.send", "text": frame})
        return frames.is_close(frame)

    async def run_pump(self, on_demand: bool = False) -> None:
        try:
            await pump(
                self,
                self.write,
                heartbeat_delay=self.app.options.heartbeat_delay,
                heartbeats=self.app._heartbeats,
                on_demand=on_demand,
            )
            if on_demand and not self.core.is_closed:
                return  # nothing more to write for now
            if self.is_open:
                self.is_open = False
                await self._socket_send({"type": "websocket.close", "code": 1000})
        except OSError:
            self.is_open = False  # the server reports a socket that closed under us
        self.terminate(self.close_code or 1006, self.close_reason or "Socket lost")

    async def write_on_demand(self) -> None:
        try:
            await self.run_pump(on_demand=True)
        except Exception:  # keep run()'s task group alive; the server's error ends this session
            logger.exception("%r: writing to the websocket failed", self.conn)
            self.terminate(*CloseReason.INTERNAL_ERROR)
        finally:
            self.writer_finished()

    def _start_writer(self) -> None:
        assert self.task_group is not None
        self.task_group.start_soon(self.write_on_demand)

    # -- the handler's bursts, on asyncio -----------------------------------------------

    def _wake_soon(self) -> None:
        """The handler queued the first message of a burst.  With its writer parked and the
        socket idle, the burst is written by :meth:`_flush`, which the loop calls once the
        handler's task yields: by then the rest of the burst is queued too, and one frame goes
        out with no task woken, as a broadcast writes to an idle socket."""
        call_soon = self._call_soon
        if (
            call_soon is None
            or not self.has_writer
            or not self.is_parked
            or self.is_writing
            or self._writer_done is not None
        ):
            self._wake_writer()
            return
        self._flush_due = True
        call_soon(self._flush)

    def _flush(self) -> None:
        """Write what the handler queued (see :meth:`_wake_soon`), from the loop.

        No task runs this, so it starts none (anyio cannot, outside a task): a write that must
        wait for the socket is finished by the parked writer, in :meth:`wait_outgoing`.
        """
        self._flush_due = False
        core = self.core
        if not self.has_writer or not self.is_parked or self.is_writing or core.is_closed or not core.pending_size:
            # A writer took over meanwhile (woken by a broadcast, the close or a heartbeat) and
            # writes what is queued, or the session is over: waking it is all there is to do.
            # (Without a writer, nothing is queued: one returns only after the close, or after
            # a heartbeat, written when nothing is.  Were something queued all the same, the
            # next heartbeat's wake-up would start a writer for it.)
            if self.has_writer:
                self._wake_writer()
            return
        frame = self.next_frame()
        assert frame is not None and frame.startswith("a")
        send = self.direct
        assert send is not None
        self.is_writing = True  # claim(), inline
        self.last_write = self.clock()
        try:
            rest = _immediate.start(send({"type": "websocket.send", "text": frame}))
        except OSError:  # the server reports the socket gone
            self._socket_lost()
            return
        except Exception:
            # Refused outside a task, perhaps (a middleware whose send needs one): the frame's
            # messages go back in front of the queue, for the writer to write, or fail on.
            core.requeue(frames.messages_of(frame))
            self._write_done()
            return
        if rest is None:
            self.is_writing = False
        else:
            self._unfinished = rest
            self._outgoing.fire()

    async def wait_outgoing(self) -> None:
        """The writer's wait (see ``Channel.wait_outgoing``); it finishes a write that
        :meth:`_flush` left waiting for the socket, as its own."""
        await self._outgoing.wait()
        rest = self._unfinished
        if rest is None:
            return
        self._unfinished = None
        try:
            await rest
        except OSError:
            self._socket_lost()
            return
        except BaseException:
            self.is_writing = False  # the writer's error handling takes it from here
            raise
        self._write_done()  # release(waited=True): what was queued meanwhile is written next


class RawLink(DirectWriter):
    """A raw websocket: messages go out and come in verbatim, with no SockJS framing.

    The handler's task reads the socket in :meth:`receive`; that wait ends when the socket
    closes (for a close from this side, when the client answers it).  :meth:`write` empties
    the outgoing queue, so that a broadcast can add to it without waiting; while nothing is
    queued, senders write to the socket themselves (see
    :meth:`DirectWriter.claim <sockjs_asgi._session.DirectWriter.claim>`).

    With :attr:`task_group` set (``run()``'s), a writer runs only while there is something to
    write, as for a SockJS websocket: an idle raw socket then holds no task but its handler's.
    Without it, :meth:`write` runs for the socket's whole life.
    """

    __slots__ = (
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
        "metrics",
        "pending_size",
        "task_group",
    )

    def __init__(self, receive: Receive, send: Send, *, max_pending_size: int, metrics: Metrics | None = None) -> None:
        super().__init__()
        self._receive = receive
        self._send = send
        self.max_pending_size = max_pending_size
        #: The service's counters (see ``Channel.metrics``).
        self.metrics = metrics
        self.close_code: int | None = None
        self.close_reason: str | None = None
        # Messages for the writer; made by the first one queued (an empty deque is over 600
        # bytes, and most raw sockets never queue one).
        self._pending: deque[str] | None = None
        self.pending_size = 0
        self._reading = False
        self._taken = Wakeup()  # incoming messages for the handler, or closed
        self._room = Wakeup()  # a queue shrank, or closed
        self._socket_closed = False
        #: Where a writer starts when there is something to write; ``None``: :meth:`write`
        #: runs for the socket's whole life.
        self.task_group: TaskGroup | None = None

    @property
    def is_closed(self) -> bool:
        return self.close_code is not None

    async def send(self, message: str) -> None:
        while self.pending_size >= self.max_pending_size and self.close_code is None:
            await self._room.wait()
        if self.close_code is not None:
            raise ConnectionClosed("the connection is closed")
        # No frame packs raw messages: one for an idle socket is written at once, by the caller
        # (claim() and release(), inline: this is every message's path).
        if self.is_parked and not self.is_writing and not self._pending:
            self.is_writing = True
            try:
                await self._send({"type": "websocket.send", "text": message})
            except OSError:  # the server reports the socket gone
                self._socket_lost()
            except BaseException:
                self._write_done()
                raise
            else:
                # The write waited for a full socket: a broadcast may have queued meanwhile, or
                # the connection closed, and the writer has the rest to write.
                if self._pending or self.close_code is not None:
                    self._write_done()
                else:
                    self.is_writing = False
        else:
            self.push(message, message)
        metrics = self.metrics
        if metrics is not None:  # count_out(), inline
            metrics.messages_out += 1
            metrics.bytes_out += len(message) if message.isascii() else utf8_length(message)

    def push(self, message: str, encoded: str) -> None:
        """Queue a message for :meth:`write`."""
        if self._pending is None:
            self._pending = deque((message,))
        else:
            self._pending.append(message)
        self.pending_size += len(message)
        self._wake_writer()

    framed = False

    def claim(self, now: float) -> Send | None:
        """The socket's ``send`` if it is idle; see :meth:`DirectWriter.claim`."""
        if not self.is_parked or self.is_writing or self._pending or self.close_code is not None:
            return None
        self.is_writing = True
        return self._send

    def _socket_lost(self) -> None:
        self.is_writing = False
        self._socket_closed = True  # nothing more can be written, the close included
        self.close_now(*SOCKET_LOST)

    def _wake_writer(self) -> None:
        """Something may need writing: wake the writer, or, when writers run on demand, start
        one if none runs and there is something to write (queued messages, or the close)."""
        if self._outgoing._waiters is not None:  # fire(), inline when nobody waits
            self._outgoing.fire()
        if self._writer_done is not None:
            self._writer_done.fire()  # for wait_writers(): a write may have ended
        task_group = self.task_group
        if task_group is None or self.has_writer or self.is_writing:
            return
        if not self._socket_closed and (self._pending or self.close_code is not None):
            self.has_writer = True
            self.is_parked = False
            task_group.start_soon(self._write_on_demand)
        else:
            self.is_parked = True  # no writer, no write: senders write themselves

    async def _write_on_demand(self) -> None:
        try:
            await self.write(on_demand=True)
        except Exception:  # keep run()'s task group alive; the server's error ends this socket
            logger.exception("writing to a raw websocket failed")
            self._socket_closed = True
            self.close_now(*CloseReason.INTERNAL_ERROR)
        finally:
            self.writer_finished()

    def _take(self) -> str:
        pending = self._pending
        assert pending is not None
        message = pending.popleft()
        if not pending:
            self._pending = None
        self.pending_size -= len(message)
        self._room.fire()
        return message

    def close_now(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self._wake_writer()
            self._taken.fire()
            self._room.fire()

    async def write(self, *, on_demand: bool = False) -> None:
        """Write queued messages until the connection closes, then close the socket; or, when
        ``on_demand``, only until nothing is queued."""
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
                elif on_demand:
                    return
                else:
                    self.is_parked = True
                    try:
                        await self._outgoing.wait()
                    finally:
                        self.is_parked = False
            if not self._socket_closed:
                self._socket_closed = True
                await self._send({"type": "websocket.close", "code": self.close_code, "reason": self.close_reason})
        except OSError:  # the server reports the socket gone
            self._socket_closed = True
            self.close_now(*SOCKET_LOST)

    async def receive(self, end: type[Exception] = StopAsyncIteration) -> str:
        """The next message; once the connection is closed, ``end`` is raised (see
        ``Channel.receive``).

        There is no reading task: the handler's task reads the socket here, as the SockJS
        websocket transport does.  Each message read goes straight to the handler, so nothing
        is ever queued on this side.
        """
        while self.close_code is None:
            if self._reading:  # another task reads: wait for it, then read the next one
                await self._taken.wait()
                continue
            self._reading = True
            try:
                message = await self._receive()
            finally:
                self._reading = False
                if self._taken._waiters is not None:  # fire(), inline when nobody waits
                    self._taken.fire()
            text = message.get("text")
            if text.__class__ is not str:
                if message["type"] == "websocket.disconnect":
                    self._socket_closed = True
                    self.close_now(message.get("code", 1005), message.get("reason") or "")
                    break
                text = _text(message)
            if text is not None and self.close_code is None:
                metrics = self.metrics
                if metrics is not None:  # count_in(), inline
                    metrics.messages_in += 1
                    metrics.bytes_in += len(text) if text.isascii() else utf8_length(text)
                return text
        raise end("the connection is closed")

    def __aiter__(self) -> RawLink:
        return self

    __anext__ = receive


async def serve_raw(app: SockJSApp, scope: Scope, receive: Receive, send: Send) -> None:
    """The raw ``/websocket`` endpoint (PROTOCOL.md 6)."""
    request = await _accept(app, scope, receive, send, raw=True)
    if request is None:
        return
    link = RawLink(receive, send, max_pending_size=app.options.max_pending_size, metrics=app.metrics)
    try:
        conn = Connection(link, request, "raw_websocket", app)
        task_group = app._task_group
        if task_group is None:
            # No run(): the socket's own task group holds a writer for its whole life.
            await _run_with_writer(app, link, conn, link.write)
            return
        # With run(), a writer runs in its task group only while there is something to write
        # (broadcasts queue, the close), so an idle socket holds no task but the handler's.
        link.task_group = task_group
        link.is_parked = True
        try:
            await app.run_handler(link, conn)
            # The handler returned and the connection is closed: a writer writes the close.
            # This returns only after it: the socket is the server's once the application
            # returns.
            await link.wait_writers()
        except BaseException:  # cancelled: the socket is no longer ours to write to
            link._socket_closed = True
            link.close_now(*SOCKET_LOST)
            raise
    finally:
        app._websocket_sessions -= 1

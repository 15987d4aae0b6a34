"""HTTP plumbing: reading bounded bodies, writing responses, and the frame pump.

The pump is the one loop every receiving transport runs (PROTOCOL.md 5): take the session's next
frame, or wait for one with the heartbeat delay as a timeout, write it through the transport's
wrapper, and stop after a close frame or once the response limit is reached.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import anyio

from ._session import Channel, Wakeup
from ._types import Message, Receive, Send
from .protocol import frames
from .protocol.errors import RemoteProtocolError
from .protocol.http import NOT_FOUND
from .protocol.session import SessionState
from .protocol.transports import Kind, Transport, htmlfile_prelude

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

__all__ = [
    "FrameWriter",
    "RawHeaders",
    "encode_headers",
    "pump",
    "read_body",
    "respond",
    "start_watcher",
    "watch_disconnect",
]

Write = Callable[[str], Awaitable[bool]]

# Enum members read per request, as globals (see protocol/session.py).
_CLOSED, _STREAMING = SessionState.CLOSED, Kind.STREAMING

#: Response headers as ASGI sends them: ``(name, value)`` byte pairs.
RawHeaders = list[tuple[bytes, bytes]]


def encode_headers(headers: Sequence[tuple[str, str]]) -> RawHeaders:
    """``headers`` as ASGI sends them."""
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]


async def respond(
    send: Send,
    status: int,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    content_type: str | None = None,
) -> None:
    """Send a whole response.  ``content_type`` ``None`` sends no Content-Type (304, 405)."""
    all_headers = list(headers)
    if content_type is not None:
        all_headers.append(("content-type", content_type))
    if status not in (204, 304):
        all_headers.append(("content-length", str(len(body))))
    await send({"type": "http.response.start", "status": status, "headers": encode_headers(all_headers)})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def encoded_response(status: int, headers: RawHeaders, body: bytes = b"") -> tuple[Message, Message]:
    """The two ASGI messages of a whole response whose headers (Content-Type included) are
    encoded already, for a caller that sends them itself (no coroutine of its own).

    ``headers`` is copied, never handed over: callers keep one list for many responses, and a
    server or middleware may add to the list it gets (Starlette's ``MutableHeaders`` does).
    """
    all_headers = headers.copy()
    if status != 204 and status != 304:
        all_headers.append((b"content-length", b"%d" % len(body)))
    return (
        {"type": "http.response.start", "status": status, "headers": all_headers},
        {"type": "http.response.body", "body": body, "more_body": False},
    )


async def start_stream(send: Send, headers: RawHeaders) -> None:
    """Start a streaming response (chunked on HTTP/1.1); ``headers`` as for :func:`encoded_response`."""
    await send({"type": "http.response.start", "status": 200, "headers": headers.copy()})


async def not_found(send: Send) -> None:
    await respond(send, 404, body=NOT_FOUND.encode(), content_type="text/plain; charset=UTF-8")


async def error(send: Send, exc: RemoteProtocolError, headers: Sequence[tuple[str, str]] = ()) -> None:
    if isinstance(exc, BodyTooLarge) and not exc.is_drained:
        headers = [*headers, ("connection", "close")]
    await respond(send, exc.status, headers, exc.body.encode(), content_type="text/plain; charset=UTF-8")


#: How much of an oversized request body is read and thrown away before answering 413.
#:
#: A client that sends its whole body before it reads the answer (most do) would otherwise be
#: writing into a connection the server closes under it: the reset can destroy the 413 before the
#: client reads it.  Up to this many bytes the body is drained, which costs bandwidth but no
#: memory, and the 413 leaves the connection usable; beyond it the 413 says ``Connection: close``.
DRAIN_LIMIT = 256 * 1024 * 1024


class BodyTooLarge(RemoteProtocolError):
    """A request body over the limit; ``is_drained``: all of it was read (and thrown away)."""

    def __init__(self, *, is_drained: bool) -> None:
        super().__init__("Payload too large.", status=413)
        self.is_drained = is_drained


class Disconnected(Exception):
    """The client went away before the request body arrived."""


async def read_body(
    receive: Receive,
    limit: int,
    *,
    declared: int | None = None,
    drain_limit: int | None = None,
    first: Message | None = None,
) -> bytes:
    """Read the request body, refusing more than ``limit`` bytes before holding them.

    ``declared`` is the request's Content-Length, if it has one: a body declared larger than
    ``drain_limit`` (:data:`DRAIN_LIMIT`) is refused at once, any other oversized body is first
    read to its end, or to ``drain_limit`` bytes.  ``first``: the first message, already
    received (see :func:`whole_body`).
    """
    if drain_limit is None:
        drain_limit = DRAIN_LIMIT
    if declared is not None and declared > max(limit, drain_limit):
        raise BodyTooLarge(is_drained=False)
    chunks: list[bytes] = []
    size = 0
    while True:
        if first is None:
            message = await receive()
        else:
            message, first = first, None
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        more = message.get("more_body", False)
        if size > limit:
            chunks.clear()
            if not more:
                raise BodyTooLarge(is_drained=True)
            if size > drain_limit:
                raise BodyTooLarge(is_drained=False)
            continue
        chunks.append(chunk)
        if not more:
            return b"".join(chunks)


def whole_body(message: Message, limit: int) -> bytes | None:
    """The body, if the first message of a request holds all of it within ``limit`` (a send
    request's usually does); else ``None``, and :func:`read_body` reads it, from ``first``.
    The caller reads that message itself: one coroutine fewer per request."""
    if message["type"] != "http.request" or message.get("more_body", False):
        return None
    body: bytes = message.get("body", b"")
    return None if len(body) > limit else body


async def watch_disconnect(receive: Receive) -> None:
    """Return when the client disconnects (the request body, if any, is discarded)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def start_watcher(task_group: TaskGroup, wait_gone: Callable[[], Awaitable[None]], gone: Callable[[], None]) -> None:
    """Call ``gone()`` when ``wait_gone()`` returns (the client left), from a task of
    ``task_group``, which its owner cancels once the response is over.

    Cancelled so, the task returns rather than ending cancelled: on asyncio, anyio holds a task
    that ends cancelled in a reference cycle (its done-callback keeps the ``CancelledError``,
    whose traceback keeps that callback's frame), and with it the request's objects and the
    server's, until the cycle collector runs.  Any other cancellation goes on.
    """

    async def watch() -> None:
        try:
            await wait_gone()
        except anyio.get_cancelled_exc_class():
            if task_group.cancel_scope.cancel_called:
                return
            raise
        gone()

    task_group.start_soon(watch)


class FrameWriter:
    """Writes the frames of one receiving request in its transport's shape.

    ``headers`` are the response's, encoded, the transport's Content-Type included.

    A polling transport answers one frame as a whole response (with Content-Length); a
    streaming one starts the response with the prelude and sends each frame as its own chunk
    (PROTOCOL.md 9) until a close frame or ``limit`` bytes of frames, the prelude not counted
    (PROTOCOL.md 7.5).

    ``before_last`` runs just before the last frame goes out: the receiver detaches from its
    session there, so that a client that polls again as soon as it has the answer is never
    refused as a second receiver.
    """

    def __init__(self, send: Send, transport: Transport, callback: str, headers: RawHeaders, *, limit: int) -> None:
        #: The response's ``send``.
        self.send = send
        self._transport = transport
        self._callback = callback
        self._headers = headers
        self._limit = limit  # a streaming response's; a poll answers one frame
        self._sent = 0
        self.is_streaming = transport.kind is _STREAMING
        self.prelude = htmlfile_prelude(callback) if transport.name == "htmlfile" else transport.prelude
        self.before_last: Callable[[], None] | None = None
        #: Whether the last frame went out: a disconnect after that is no abort.
        self.is_finished = False

    async def start(self) -> None:
        if self.is_streaming:
            await start_stream(self.send, self._headers)
            if self.prelude:
                await self.send({"type": "http.response.body", "body": self.prelude.encode(), "more_body": True})

    async def write(self, frame: str) -> bool:
        """Write one frame; returns whether it was the last one of the response."""
        if not self.is_streaming:
            start, last = self.answer(frame)
            await self.send(start)
            await self.send(last)
            return True
        body = self._transport.wrap(frame, self._callback).encode()
        self._sent += len(body)
        self.is_finished = frames.is_close(frame) or self._sent >= self._limit
        if self.is_finished and self.before_last is not None:
            self.before_last()
        await self.send({"type": "http.response.body", "body": body, "more_body": True})
        if self.is_finished:
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})
        return self.is_finished

    def answer(self, frame: str) -> tuple[Message, Message]:
        """A polling response's answer, ``frame``, as the two ASGI messages to send (in that
        order, with :attr:`send`): the caller needs no coroutine of this writer's."""
        body = self._transport.wrap(frame, self._callback).encode()
        if self.prelude:
            body = self.prelude.encode() + body
        self.is_finished = True
        if self.before_last is not None:
            self.before_last()
        return encoded_response(200, self._headers, body)

    async def refuse(self, frame: str) -> None:
        """Answer with ``frame`` alone (2010, or a close frame) without attaching."""
        await self.start()
        await self.write(frame)

    async def end(self) -> None:
        """End the response without closing the session, as the response limit does: a
        polling response answers a heartbeat, a stream just ends (the client opens the next)."""
        if self.is_finished:
            return
        if not self.is_streaming:
            await self.write(frames.HEARTBEAT)
            return
        self.is_finished = True
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})


class Heartbeats:
    """One task that wakes every parked pump whose heartbeat is due.

    A pump waiting with a timeout of its own costs a cancel scope and a timer per wait, and
    a pump waits once per burst of frames.  Registered here instead, a parked pump costs an
    entry in a set; this task looks at them every quarter of ``delay``, so a heartbeat goes
    out between ``delay`` and 1.25 ``delay`` after the last frame.
    """

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._parked: set[Channel] = set()
        self._first = Wakeup()  # a pump parked while none was

    def park(self, channel: Channel) -> None:
        if not self._parked:
            self._first.fire()
        self._parked.add(channel)

    def unpark(self, channel: Channel) -> None:
        self._parked.discard(channel)

    async def run(self) -> None:
        while True:
            if not self._parked:
                await self._first.wait()
            await anyio.sleep(self.delay / 4)
            due = anyio.current_time() - self.delay
            for channel in [channel for channel in self._parked if channel.last_write <= due]:
                channel.wake_outgoing()


async def pump(
    channel: Channel,
    write: Write,
    *,
    heartbeat_delay: float,
    is_attached: Callable[[], bool] = lambda: True,
    heartbeats: Heartbeats | None = None,
    on_demand: bool = False,
) -> None:
    """Write the session's frames until ``write`` says the last one went out.

    A heartbeat goes out after ``heartbeat_delay`` seconds without a frame.  Returns at once
    when the session is forgotten under the receiver (a websocket whose socket closed), or when
    ``is_attached()`` turns false: the receiver was detached because its client left, and from
    then on the session's frames belong to whichever receiver attaches next.

    While the pump waits it is *parked*: a websocket's senders may then write to the socket
    themselves (see :meth:`Channel.claim`), so an idle receiver of a broadcast costs no
    wake-up.  They move :attr:`Channel.last_write` forward, which the heartbeat deadline
    follows; the pump's timeout is only re-armed when it wakes, not per frame.  With
    ``heartbeats`` (a service that runs) the pump waits with no timeout of its own, and that
    task wakes it when its heartbeat is due.

    ``on_demand``: a websocket's writer started because something needs writing (see
    ``Channel.on_demand``).  The session is registered with ``heartbeats`` for its whole
    life, the clock of its last frame is kept, and the pump returns after writing a heartbeat:
    a session that was silent that long needs no task of its own until something comes.
    """
    clock = channel.clock
    if not on_demand:
        channel.last_write = clock()
    # Only a websocket's socket is shared with other writers; successive HTTP receivers of a
    # session each write to their own response.
    shared = channel.direct is not None
    try:
        while channel.core.state is not _CLOSED and is_attached():
            if shared and channel.is_writing:  # another task is finishing a write to the socket
                await channel.wait_outgoing()
                continue
            frame = channel.next_frame()
            is_heartbeat = frame is None
            if frame is None:
                wait = channel.last_write + heartbeat_delay - clock()
                if wait > 0:
                    channel.is_parked = True
                    if on_demand:
                        await channel.wait_outgoing()
                    elif heartbeats is not None:
                        heartbeats.park(channel)
                        try:
                            await channel.wait_outgoing()
                        finally:
                            heartbeats.unpark(channel)
                    else:
                        with anyio.move_on_after(wait):
                            await channel.wait_outgoing()
                    channel.is_parked = False
                    continue
                frame = frames.HEARTBEAT
            channel.is_writing = shared
            try:
                is_last = await write(frame)
            finally:
                channel.is_writing = False
            channel.last_write = clock()
            if is_last or (on_demand and is_heartbeat):
                return
    finally:
        channel.is_parked = False

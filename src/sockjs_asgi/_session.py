"""Live sessions: the protocol core's ``Session`` plus the events that wake its tasks.

A :class:`Channel` is shared by the tasks that serve one session: the application's handler
(through :class:`~sockjs_asgi.Connection`), the receiving request currently attached, send
requests, and the session's supervisor, which waits for the core's expiry deadline.  Every
decision is taken by the core; this module only turns "something changed" into wake-ups.

Memory is bounded both ways: ``send()`` waits while more than ``max_pending_size`` characters
wait for a receiver, and a send request waits while ``max_incoming_messages`` messages wait for
the handler.  Neither drops a message.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import anyio

from . import _loop
from ._types import Send
from .protocol import frames
from .protocol.escaping import encode_ascii, encode_string, utf8_length
from .protocol.session import Session, SessionState

if TYPE_CHECKING:
    from ._metrics import Metrics

__all__ = ["SOCKET_LOST", "Channel", "DirectWriter", "Registry", "Wakeup"]

#: Why a websocket session ended when its socket failed under a write.
SOCKET_LOST = (1006, "Socket lost")

_CLOSED = SessionState.CLOSED  # read as a global: see protocol/session.py


class Wakeup:
    """Something that tasks wait to change.

    Waiters are created when a task waits and dropped when the change fires, so a change
    nobody waits for costs one attribute read, and waiters always wait for the next change.
    On asyncio a waiter is a bare future of the loop, the smallest thing a task can wait for
    (an ``asyncio.Event`` would add a queue and a coroutine per wait); under trio it is an
    ``anyio.Event``.
    """

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[_loop.Waiter] | None = None

    async def wait(self) -> None:
        waiter = _loop.new_waiter()
        waiters = self._waiters
        if waiters is None:
            self._waiters = [waiter]
        else:
            waiters.append(waiter)
        try:
            if isinstance(waiter, _loop.Future):
                await waiter
            else:
                await waiter.wait()
        except BaseException:
            # Cancelled (a timeout, say): forget the waiter, or waits that keep timing out on
            # a change that never comes would pile up.
            waiters = self._waiters
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
            raise

    def fire(self) -> None:
        waiters = self._waiters
        if waiters is not None:
            self._waiters = None
            for waiter in waiters:
                if not isinstance(waiter, _loop.Future):
                    waiter.set()
                elif not waiter.done():
                    waiter.set_result(None)


class DirectWriter:
    """A websocket whose frames other tasks may write at once while its writer is parked.

    Shared by :class:`Channel` and the raw websocket link.  A broadcast (see ``_hub``) asks
    :meth:`claim` for the socket's ``send``, writes its frame with it in the broadcasting task,
    and gives the socket back with :meth:`release`.  A subclass sets ``is_parked`` while its own
    writer waits, and says what a lost socket means (:meth:`_socket_lost`).
    """

    __slots__ = ("_outgoing", "_writer_done", "has_writer", "is_parked", "is_writing")

    #: What a broadcast writes here: its SockJS frame (a session), or the message itself (a
    #: raw websocket).
    framed = True

    def __init__(self) -> None:
        self._outgoing = Wakeup()  # something to write, or closed
        #: The writer waits for frames (with nothing of its own to write).
        self.is_parked = False
        #: A frame is being written, by the writer or directly; nobody else may write meanwhile.
        self.is_writing = False
        #: A writer started on demand (for a socket whose writer runs only while it has
        #: something to write) is running, or starting.
        self.has_writer = False
        self._writer_done: Wakeup | None = None  # made when first waited for

    def claim(self, now: float) -> Send | None:
        """The socket's ``send``, if another task may write a frame to it now: the connection
        is open, its writer is parked and nothing is queued.  The socket is then the caller's
        until it calls :meth:`release`, or :meth:`_socket_lost` if the server reports the
        socket gone."""
        raise NotImplementedError

    def release(self, *, waited: bool) -> None:
        """A write after :meth:`claim` ended.  ``waited``: it had to wait for the socket, so
        that others may have queued frames meanwhile, which the writer now writes first."""
        if waited:
            self._write_done()
        else:
            self.is_writing = False

    def _write_done(self) -> None:
        self.is_writing = False
        self._wake_writer()

    def _wake_writer(self) -> None:
        """Something may need writing: wake the writer."""
        self._outgoing.fire()

    def _socket_lost(self) -> None:
        raise NotImplementedError

    def writer_finished(self) -> None:
        """A writer started on demand has returned."""
        self.has_writer = False
        self.is_parked = True  # nobody writes: senders write to the socket themselves
        if self._writer_done is not None:
            self._writer_done.fire()

    async def wait_writers(self) -> None:
        """Wait until no writer runs and no write is under way."""
        while self.has_writer or self.is_writing:
            if self._writer_done is None:
                self._writer_done = Wakeup()
            await self._writer_done.wait()


class Channel(DirectWriter):
    """One live session."""

    __slots__ = (
        "_detached",
        "_drained",
        "_flush_due",
        "_incoming",
        "_sleeps_until",
        "_timing",
        "client_host",
        "clock",
        "core",
        "direct",
        "incoming",
        "last_write",
        "max_incoming_messages",
        "max_pending_size",
        "metrics",
        "on_demand",
        "remote_receiver",
        "session_id",
        "transport",
    )

    def __init__(
        self,
        session_id: str | None,
        transport: str,
        *,
        disconnect_delay: float,
        max_pending_size: int,
        max_incoming_messages: int,
        metrics: Metrics | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.session_id = session_id
        #: The service's counters, which count the messages the handler sends and receives.
        self.metrics = metrics
        self.transport = transport
        #: The running loop's clock (``anyio.current_time``), looked up once (or given, by
        #: ``run()``): a session lives and dies in one loop, and its pump reads the clock twice
        #: per burst of frames.
        self.clock = clock if clock is not None else _loop.clock()
        self.core = Session(disconnect_delay=disconnect_delay, now=self.clock())
        self.max_pending_size = max_pending_size
        self.max_incoming_messages = max_incoming_messages
        #: Messages for the handler, oldest first; ``None`` when there are none, so that an
        #: idle session holds no queue (an empty deque is over 600 bytes).
        self.incoming: deque[str] | None = None
        #: The client address that opened the session (for ``verify_ip``).
        self.client_host: str | None = None
        #: Whether the attached receiver is served through another process (see ``_cluster``).
        self.remote_receiver = False
        super().__init__()
        self._incoming = Wakeup()  # messages for the handler, or the session closed
        # Pending frames written or incoming messages taken: made when a sender first waits for
        # room (most sessions never do).
        self._drained: Wakeup | None = None
        # Made when first waited for (a websocket session never waits for them):
        self._timing: Wakeup | None = None  # the expiry deadline came nearer (or the session closed)
        self._detached: Wakeup | None = None  # a receiver detached
        # The deadline the supervisor sleeps until (inf: none, it waits for a detach).  Only a
        # deadline nearer than this one needs to wake it: a later one (a poll came and went)
        # is found when it wakes at the old one, so a polling session costs the supervisor
        # one wake-up per disconnect delay, not two per poll.
        self._sleeps_until = -math.inf
        #: A websocket's ASGI ``send``, used by other tasks while its pump is parked: a message
        #: for an idle socket is then written by the sender at once, with no task woken.
        self.direct: Send | None = None
        #: When a frame last went out (``anyio.current_time()``), for the heartbeat.
        self.last_write = 0.0
        #: The websocket's writer runs only while it has something to write, and
        #: :meth:`_wake_writer` starts one with :meth:`_start_writer`; false: a pump runs for
        #: the whole session.
        self.on_demand = False
        # The handler's messages will be written once its task yields (see _wake_soon): the
        # rest of a burst need not ask again.
        self._flush_due = False

    # -- wake-ups ------------------------------------------------------------------------

    def _wake_writer(self, *, heartbeat: bool = False) -> None:
        """Something may need writing: wake the pump, or, for a websocket whose writer runs
        only when needed, start one if none runs and there is something to write (queued
        frames, a close frame, or a ``heartbeat`` that is due)."""
        if self._outgoing._waiters is not None:  # fire(), inline when nobody waits
            self._outgoing.fire()
        if not self.on_demand:
            return
        if self._writer_done is not None:
            self._writer_done.fire()  # for wait_writers(): a write may have ended
        if self.has_writer or self.is_writing:
            return
        core = self.core
        if (heartbeat or core.pending_size or core.is_closed) and core.state is not _CLOSED:
            self.has_writer = True
            self._start_writer()

    # -- what a websocket session's channel does (see ``_websocket``) ------------------------

    def _wake_soon(self) -> None:
        """The handler queued the first message of a burst for a websocket whose writer runs
        on demand: have it written (a subclass may wait until the handler's task yields, so
        that the rest of the burst goes in the same frame, and set ``_flush_due`` meanwhile)."""
        self._wake_writer()

    def _start_writer(self) -> None:
        """Start a writer (a pump) for a channel whose writer runs only while it has something
        to write (:attr:`on_demand`)."""
        raise NotImplementedError

    def _room(self) -> Wakeup:
        if self._drained is None:
            self._drained = Wakeup()
        return self._drained

    def _closed_changed(self) -> None:
        self._wake_writer()
        self._incoming.fire()
        if self._drained is not None:
            self._drained.fire()
        if self._timing is not None:
            self._timing.fire()
        if self._detached is not None:
            self._detached.fire()

    # -- the application's side ----------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self.core.is_closed

    async def send(self, message: str) -> None:
        """Queue a message, waiting while too much is already queued.

        The pump writes what is queued when it next runs, all of it in one ``a[...]`` frame: a
        handler answering ten messages read together sends one frame, not ten.
        """
        if message.isascii():  # encode_string() and utf8_length(), inline for the usual text
            encoded = encode_ascii(message)
            size = len(message)
        else:
            encoded = encode_string(message)
            size = utf8_length(message)
        core = self.core
        while core.pending_size >= self.max_pending_size and not core.is_closed:
            await self._room().wait()
        core.send(encoded)  # push(), inline: this is every message's path
        # Waking the writer is for the first message of a burst; the rest find it woken (an
        # HTTP receiver's pump, or a websocket's writer), or its write due, and ask nothing.
        if self.on_demand:
            if not self._flush_due and (
                not self.has_writer or self._outgoing._waiters is not None or self._writer_done is not None
            ):
                self._wake_soon()
        elif self._outgoing._waiters is not None:
            self._wake_writer()
        metrics = self.metrics
        if metrics is not None:  # count_out(), inline
            metrics.messages_out += 1
            metrics.bytes_out += size

    def push(self, message: str, encoded: str) -> None:
        """Queue an encoded message without waiting, for the pump."""
        self.core.send(encoded)
        self._wake_writer()

    def claim(self, now: float) -> Send | None:
        """An idle websocket's ``send`` (its pump parked, nothing queued), for a broadcast to
        write its frame with at once, as the pump would have written it (see
        :meth:`DirectWriter.claim`); ``None`` otherwise, and the broadcast queues its message
        with :meth:`push`."""
        send = self.direct
        if send is None or not self.is_parked or self.is_writing:
            return None
        core = self.core
        if core.pending_size or core.is_closed:
            return None
        self.last_write = now
        self.is_writing = True
        return send

    def _socket_lost(self) -> None:
        self.is_writing = False
        self.terminate(*SOCKET_LOST)

    @property
    def pending_size(self) -> int:
        return self.core.pending_size

    @property
    def close_code(self) -> int | None:
        return self.core.close_code

    @property
    def close_reason(self) -> str | None:
        return self.core.close_reason

    def close_now(self, code: int, reason: str) -> None:
        """Close the session; the attached receiver, if any, writes the close frame."""
        if self.core.close(code, reason):
            self._closed_changed()

    async def receive(self, end: type[Exception] = StopAsyncIteration) -> str:
        """The next message from the client; once the session is closed and empty, ``end`` is
        raised: ``ConnectionClosed`` for ``Connection.receive``, and by default
        ``StopAsyncIteration``, as this is also the channel's ``__anext__`` (see
        ``Connection.__aiter__``).

        Send requests hand messages over (:meth:`deliver`); a websocket session's channel reads
        its socket here instead (see ``_websocket``).
        """
        while not self.incoming:
            if self.core.is_closed:
                raise end("the connection is closed")
            await self._incoming.wait()
        incoming = self.incoming
        assert incoming is not None
        message = incoming.popleft()
        if not incoming:
            self.incoming = None
        if self._drained is not None:
            self._drained.fire()
        metrics = self.metrics
        if metrics is not None:  # count_in(), inline: every message's path
            metrics.messages_in += 1
            metrics.bytes_in += len(message) if message.isascii() else utf8_length(message)
        return message

    def __aiter__(self) -> Channel:
        return self

    __anext__ = receive

    # -- the client's side ---------------------------------------------------------------

    def deliver_now(self, messages: list[str]) -> bool:
        """:meth:`deliver`, if there is room for all of ``messages`` (the usual case), without
        a coroutine; returns whether it did."""
        waiting = len(self.incoming) if self.incoming is not None else 0
        if waiting + len(messages) > self.max_incoming_messages:
            return False
        messages = self.core.receive(messages)
        if messages:
            if self.incoming is None:
                self.incoming = deque(messages)
            else:
                self.incoming.extend(messages)
            self._incoming.fire()
        return True

    async def deliver(self, messages: list[str]) -> None:
        """Hand messages from the client to the handler, in order, waiting for room."""
        for message in self.core.receive(messages):
            while self.incoming is not None and len(self.incoming) >= self.max_incoming_messages:
                if self.core.is_closed:
                    return
                await self._room().wait()
            if self.core.is_closed:
                return
            if self.incoming is None:
                self.incoming = deque((message,))
            else:
                self.incoming.append(message)
            self._incoming.fire()

    async def attach_within(self, grace: float) -> str | None:
        """:meth:`attach`, but a receiver refused because a *remote* one is attached waits up
        to ``grace`` seconds for it to leave first.

        A client that aborts a receiver relayed by another process and polls again at once may
        otherwise reach the owner before the news of the abort does, and be refused with 2010
        where a single process would have answered it.
        """
        refused = self.attach()
        if refused is None or grace <= 0 or not self.remote_receiver or self.core.is_closed:
            return refused
        with anyio.move_on_after(grace):
            while refused is not None and not self.core.is_closed and self.core.has_receiver:
                if self._detached is None:
                    self._detached = Wakeup()
                await self._detached.wait()
        if self.core.state is _CLOSED:  # expired meanwhile (the server is stopping)
            return frames.close(self.core.close_code or 1006, self.core.close_reason or "")
        return self.attach()

    def attach(self) -> str | None:
        # No wake-up: with a receiver attached the session has no deadline, which is later than
        # any the supervisor sleeps until.
        return self.core.attach()

    def next_frame(self) -> str | None:
        frame = self.core.next_frame()
        if frame is not None and self._drained is not None and frame.startswith("a"):
            self._drained.fire()
        return frame

    def wake_outgoing(self) -> None:
        """Wake a pump waiting in :meth:`wait_outgoing`, or start one: its heartbeat is due."""
        self._wake_writer(heartbeat=True)

    async def wait_outgoing(self) -> None:
        """Wait until :meth:`next_frame` may have something new."""
        await self._outgoing.wait()

    def detach(self, *, interrupted: bool = False) -> None:
        was_closed = self.core.is_closed
        self.core.detach(self.clock(), interrupted=interrupted)
        if self.core.is_closed and not was_closed:
            self._closed_changed()
            return
        if self._detached is not None:
            self._detached.fire()
        deadline = self.core.next_deadline()
        if deadline is not None and deadline < self._sleeps_until and self._timing is not None:
            self._timing.fire()

    def expire_now(self) -> None:
        """Forget the session as soon as no receiver is attached (the server is stopping)."""
        self.core.disconnect_delay = 0
        if self._timing is not None:
            self._timing.fire()

    def terminate(self, code: int, reason: str) -> None:
        """Close and forget at once (a websocket session whose socket is gone)."""
        self.core.terminate(code, reason)
        self._closed_changed()

    # -- time ----------------------------------------------------------------------------

    async def supervise(self) -> None:
        """Expire the session when the core says so; returns once it is CLOSED."""
        timing = self._timing = Wakeup()
        try:
            while self.core.state is not _CLOSED:
                deadline = self.core.next_deadline()
                if deadline is None:
                    self._sleeps_until = math.inf
                    await timing.wait()
                else:
                    self._sleeps_until = deadline
                    with anyio.move_on_after(deadline - anyio.current_time()):
                        await timing.wait()
                self._sleeps_until = -math.inf
                if self.core.tick(anyio.current_time()):
                    self._closed_changed()
        finally:
            self._sleeps_until = -math.inf


class Registry:
    """The HTTP sessions of one service, by session id.

    WebSocket sessions are never registered: they are private to their socket (PROTOCOL.md 6).
    """

    def __init__(self) -> None:
        self._sessions: dict[str, Channel] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Channel]:
        return iter(list(self._sessions.values()))

    def get(self, session_id: str) -> Channel | None:
        return self._sessions.get(session_id)

    def add(self, channel: Channel) -> None:
        assert channel.session_id is not None
        self._sessions[channel.session_id] = channel

    def clear(self) -> None:
        self._sessions.clear()

    def remove(self, channel: Channel) -> None:
        if channel.session_id is not None and self._sessions.get(channel.session_id) is channel:
            del self._sessions[channel.session_id]

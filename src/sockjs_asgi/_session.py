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

from collections import deque
from collections.abc import Iterator

import anyio

from .protocol.escaping import encode_string
from .protocol.session import Session, SessionState

__all__ = ["Channel", "Registry"]


class Channel:
    """One live session."""

    def __init__(
        self,
        session_id: str | None,
        transport: str,
        *,
        disconnect_delay: float,
        max_pending_size: int,
        max_incoming_messages: int,
    ) -> None:
        self.session_id = session_id
        self.transport = transport
        self.core = Session(disconnect_delay=disconnect_delay, now=anyio.current_time())
        self.max_pending_size = max_pending_size
        self.max_incoming_messages = max_incoming_messages
        self.incoming: deque[str] = deque()
        #: The client address that opened the session (for ``verify_ip``).
        self.client_host: str | None = None
        # Each event is replaced after it fires, so a waiter always waits for the next change.
        self._outgoing = anyio.Event()  # frames to write, or the session closed
        self._incoming = anyio.Event()  # messages for the handler, or the session closed
        self._drained = anyio.Event()  # pending frames written or incoming messages taken
        self._timing = anyio.Event()  # the expiry deadline moved

    # -- wake-ups ------------------------------------------------------------------------

    @staticmethod
    def _fire(event: anyio.Event) -> anyio.Event:
        event.set()
        return anyio.Event()

    def _outgoing_changed(self) -> None:
        self._outgoing = self._fire(self._outgoing)

    def _closed_changed(self) -> None:
        self._outgoing = self._fire(self._outgoing)
        self._incoming = self._fire(self._incoming)
        self._drained = self._fire(self._drained)
        self._timing = self._fire(self._timing)

    # -- the application's side ----------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self.core.is_closed

    async def send(self, message: str) -> None:
        """Queue a message, waiting while too much is already queued."""
        encoded = encode_string(message)
        while self.core.pending_size >= self.max_pending_size and not self.core.is_closed:
            await self._drained.wait()
        self.send_encoded_nowait(encoded)

    def send_encoded_nowait(self, encoded: str) -> None:
        """Queue an encoded message now, whatever is queued (used by broadcasts)."""
        self.core.send(encoded)
        self._outgoing_changed()

    @property
    def pending_size(self) -> int:
        return self.core.pending_size

    def push(self, message: str, encoded: str) -> None:
        self.send_encoded_nowait(encoded)

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

    async def receive(self) -> str | None:
        """The next message from the client; ``None`` once the session is closed and empty."""
        while not self.incoming:
            if self.core.is_closed:
                return None
            await self._incoming.wait()
        message = self.incoming.popleft()
        self._drained = self._fire(self._drained)
        return message

    # -- the client's side ---------------------------------------------------------------

    async def deliver(self, messages: list[str]) -> None:
        """Hand messages from the client to the handler, in order, waiting for room."""
        for message in self.core.receive(messages):
            while len(self.incoming) >= self.max_incoming_messages and not self.core.is_closed:
                await self._drained.wait()
            if self.core.is_closed:
                return
            self.incoming.append(message)
            self._incoming = self._fire(self._incoming)

    def attach(self) -> str | None:
        refused = self.core.attach()
        if refused is None:
            self._timing = self._fire(self._timing)
        return refused

    def next_frame(self) -> str | None:
        frame = self.core.next_frame()
        if frame is not None and frame.startswith("a"):
            self._drained = self._fire(self._drained)
        return frame

    async def wait_outgoing(self) -> None:
        """Wait until :meth:`next_frame` may have something new."""
        await self._outgoing.wait()

    def detach(self, *, interrupted: bool = False) -> None:
        was_closed = self.core.is_closed
        self.core.detach(anyio.current_time(), interrupted=interrupted)
        if self.core.is_closed and not was_closed:
            self._closed_changed()
        else:
            self._timing = self._fire(self._timing)

    def expire_now(self) -> None:
        """Forget the session as soon as no receiver is attached (the server is stopping)."""
        self.core.disconnect_delay = 0
        self._timing = self._fire(self._timing)

    def terminate(self, code: int, reason: str) -> None:
        """Close and forget at once (a websocket session whose socket is gone)."""
        self.core.terminate(code, reason)
        self._closed_changed()

    # -- time ----------------------------------------------------------------------------

    async def supervise(self) -> None:
        """Expire the session when the core says so; returns once it is CLOSED."""
        while self.core.state is not SessionState.CLOSED:
            event = self._timing
            deadline = self.core.next_deadline()
            delay = float("inf") if deadline is None else deadline - anyio.current_time()
            with anyio.move_on_after(delay):
                await event.wait()
            if self.core.tick(anyio.current_time()):
                self._closed_changed()


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

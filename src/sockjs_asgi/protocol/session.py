"""The session state machine (PROTOCOL.md section 7).

Theory of operation
-------------------

A session is what a SockJS client sees as one connection.  Over HTTP it outlives every single
request: receiving requests (polls and streams) come and go, send requests deliver messages.
This class holds everything that decides what goes on the wire; it does no I/O and reads no
clock: each method that depends on time takes ``now``.

States::

    CONNECTING --first frame taken--> OPEN --close()/interrupted--> CLOSING --expired--> CLOSED
        |                                                              ^
        +--------------------------close()-----------------------------+

* ``CONNECTING``: created by the first receiving request; the open frame ``o`` is owed.  The
  first call to :meth:`next_frame` returns it.
* ``OPEN``: messages sent by the application are queued (already encoded) and all of them go to
  the attached receiver as one ``a[...]`` frame; incoming messages are accepted.
* ``CLOSING``: the application closed the session, or the client aborted a receiving request.
  The close frame is stored; queued messages still go out first, then every receiving request
  gets the close frame and ends.  Incoming messages are dropped.  A session closed before its
  open frame was taken still sends ``o`` first, so a client always sees ``o`` then ``c``.
* ``CLOSED``: forgotten.  A session with no receiver attached for ``disconnect_delay`` seconds
  expires, in any earlier state.  Nothing more can happen to it.

At most one receiver is attached at a time.  A second one is refused with the 2010 frame, or,
once the session is closing, with the session's close frame (PROTOCOL.md 7.2).

The expiry timer runs only while no receiver is attached: :meth:`next_deadline` says when it
fires and :meth:`tick` fires it.
"""

from __future__ import annotations

import enum

from . import frames
from .errors import ConnectionClosed, LocalProtocolError

__all__ = ["CloseReason", "Session", "SessionState"]


class SessionState(enum.Enum):
    """Where a session is in its life (see the module docstring)."""

    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


# The members as globals, for the methods run per session and per message: on Python 3.11 an
# enum's class has a ``__getattr__`` (gone in 3.12), which keeps the interpreter from caching
# the lookup of a member, so that ``SessionState.CLOSED`` costs about 120 ns, a global 10.
_CONNECTING = SessionState.CONNECTING
_OPEN = SessionState.OPEN
_CLOSING = SessionState.CLOSING
_CLOSED = SessionState.CLOSED


class CloseReason:
    """Close codes and reasons this library chooses itself (the application chooses others)."""

    #: The application returned or called ``close()`` without arguments.
    GO_AWAY = (3000, "Go away!")
    #: The client aborted a receiving request (PROTOCOL.md 7.6).
    INTERRUPTED = (1002, "Connection interrupted")
    #: No receiver came back within ``disconnect_delay``.
    EXPIRED = (1006, "Session expired")
    #: The application's handler raised an exception.
    INTERNAL_ERROR = (1011, "Internal server error")
    #: The server is shutting down.
    SHUTDOWN = (1001, "Server shutting down")
    #: ``max_sessions`` sessions are open already: try again later (1013, as websockets say it).
    TOO_MANY_SESSIONS = (1013, "Too many sessions")


class Session:
    """One SockJS session, without I/O.

    ``disconnect_delay`` is how long the session survives without a receiver; ``now`` is the
    creation time on whatever monotonic clock the caller uses for every later call.
    """

    __slots__ = (
        "_close_frame",
        "_detached_at",
        "_open_sent",
        "_pending",
        "close_code",
        "close_reason",
        "disconnect_delay",
        "has_receiver",
        "is_closed",
        "pending_size",
        "state",
    )

    def __init__(self, *, disconnect_delay: float, now: float) -> None:
        self.state = _CONNECTING
        self.disconnect_delay = disconnect_delay
        self.has_receiver = False
        #: Code and reason of the close, once the session is closing or closed.
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._close_frame: str | None = None
        self._open_sent = False
        self._pending: list[str] | None = None  # made by the first message (idle sessions are many)
        #: Characters of encoded messages waiting for a receiver.
        self.pending_size = 0
        #: Whether the session is closing or closed: nothing more can be sent.  (Plain
        #: attributes rather than properties: a broadcast reads them once per receiver.)
        self.is_closed = False
        self._detached_at = now

    # -- the application's side ---------------------------------------------------------

    def send(self, encoded: str) -> None:
        """Queue one message, already encoded with ``encode_string``.

        Raises :class:`ConnectionClosed` once the session is closing or closed.
        """
        if self.is_closed:
            raise ConnectionClosed("the session is closed")
        if self._pending is None:
            self._pending = [encoded]
        else:
            self._pending.append(encoded)
        self.pending_size += len(encoded)

    def requeue(self, encoded: list[str]) -> None:
        """Put messages that a receiver took with :meth:`next_frame` but never delivered back
        in front of what is queued, in their order, for the next receiver."""
        if encoded:
            self._pending = encoded + (self._pending or [])
            self.pending_size += sum(len(message) for message in encoded)

    def close(self, code: int, reason: str) -> bool:
        """Close the session with ``code`` and ``reason``.

        Returns whether this call closed it; closing a closed session does nothing.
        """
        if self.is_closed:
            return False
        self.state = _CLOSING
        self.is_closed = True
        self.close_code, self.close_reason = code, reason
        self._close_frame = frames.close(code, reason)
        return True

    def receive(self, messages: list[str]) -> list[str]:
        """Take messages from the client; returns those the application should get."""
        if self.is_closed:
            return []
        return messages

    # -- the receivers' side -----------------------------------------------------------

    def attach(self) -> str | None:
        """Attach a receiver.

        Returns ``None`` when it is attached.  Otherwise the receiver is refused and the return
        value is the one frame to answer it with before ending it.
        """
        if self.state is _CLOSED:
            raise LocalProtocolError("a closed session takes no receiver")
        if self.has_receiver:
            if self._close_frame is not None:
                return self._close_frame
            return frames.ANOTHER_CONNECTION_STILL_OPEN
        self.has_receiver = True
        return None

    def next_frame(self) -> str | None:
        """The next frame for the attached receiver, or ``None`` if there is nothing to send.

        After a close frame the receiver must end.
        """
        if not self.has_receiver:
            raise LocalProtocolError("no receiver is attached")
        if not self._open_sent:
            self._open_sent = True
            if self.state is _CONNECTING:
                self.state = _OPEN
            return frames.OPEN
        pending = self._pending
        if pending:
            frame = frames.messages(pending)
            self._pending = None
            self.pending_size = 0
            return frame
        return self._close_frame

    def detach(self, now: float, *, interrupted: bool = False) -> None:
        """Detach the receiver.  ``interrupted``: the client aborted the request."""
        if not self.has_receiver:
            raise LocalProtocolError("no receiver is attached")
        self.has_receiver = False
        self._detached_at = now
        if interrupted:
            self.close(*CloseReason.INTERRUPTED)

    # -- time ----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When the session expires unless a receiver attaches first; ``None``: not timing."""
        if self.has_receiver or self.state is _CLOSED:
            return None
        return self._detached_at + self.disconnect_delay

    def tick(self, now: float) -> bool:
        """Expire the session if its deadline has passed.  Returns whether it is now CLOSED."""
        deadline = self.next_deadline()
        if deadline is not None and now >= deadline:
            self.close(*CloseReason.EXPIRED)
            self.state = _CLOSED
        return self.state is _CLOSED

    def terminate(self, code: int, reason: str) -> None:
        """Close and forget at once, for a session that dies with its only connection
        (a websocket session, PROTOCOL.md 6)."""
        self.close(code, reason)
        self.state = _CLOSED
        self.has_receiver = False

"""The session state machine (PROTOCOL.md section 7): examples, then random call sequences."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockjs_asgi.protocol import frames
from sockjs_asgi.protocol.errors import ConnectionClosed, LocalProtocolError
from sockjs_asgi.protocol.escaping import encode_string
from sockjs_asgi.protocol.session import CloseReason, Session, SessionState

from .strategies import pairless_text


def open_session(*, delay: float = 5.0, now: float = 0.0) -> Session:
    """A session with a receiver attached and the open frame taken."""
    session = Session(disconnect_delay=delay, now=now)
    assert session.attach() is None
    assert session.next_frame() == "o"
    return session


def states_after(session: Session, call: Callable[[], object]) -> tuple[SessionState, SessionState]:
    """The state before and after ``call``."""
    before = session.state
    call()
    return before, session.state


# -- examples ----------------------------------------------------------------------------------


def test_new_session() -> None:
    session = Session(disconnect_delay=5.0, now=10.0)
    assert session.state is SessionState.CONNECTING
    assert not session.has_receiver
    assert not session.is_closed
    assert session.close_code is None and session.close_reason is None
    assert session.next_deadline() == 15.0


def test_first_frame_is_open_then_nothing() -> None:
    session = Session(disconnect_delay=5.0, now=0.0)
    assert session.attach() is None
    assert session.has_receiver
    assert session.next_frame() == "o"
    assert session.state is SessionState.OPEN
    assert session.next_frame() is None


def test_open_frame_comes_before_queued_messages() -> None:
    session = Session(disconnect_delay=5.0, now=0.0)
    session.send(encode_string("early"))
    session.attach()
    assert session.next_frame() == "o"
    assert session.next_frame() == 'a["early"]'


def test_queued_messages_go_out_in_one_frame() -> None:
    # Suite XhrPolling.test_content_types: many sends, one poll returns them all.
    session = open_session()
    for text in ["x", "y", "\u200c"]:
        session.send(encode_string(text))
    assert session.pending_size == len('"x""y""\\u200c"')
    assert session.next_frame() == 'a["x","y","\\u200c"]'
    assert session.pending_size == 0
    assert session.next_frame() is None


def test_messages_taken_back_go_out_first_in_their_order() -> None:
    # A receiver that took a frame but never delivered it (a relaying process left first).
    session = open_session()
    session.send(encode_string("a"))
    session.send(encode_string("b"))
    taken = session.next_frame()
    assert taken == 'a["a","b"]'
    session.send(encode_string("c"))
    session.requeue(frames.messages_of(taken))
    assert session.pending_size == len('"a""b""c"')
    assert session.next_frame() == 'a["a","b","c"]'
    session.requeue([])  # nothing to take back
    assert session.pending_size == 0 and session.next_frame() is None
    session.requeue([encode_string("d")])
    assert session.next_frame() == 'a["d"]'


def test_second_receiver_gets_2010() -> None:
    session = open_session()
    assert session.attach() == 'c[2010,"Another connection still open"]'
    assert session.has_receiver
    session.send(encode_string("x"))
    assert session.next_frame() == 'a["x"]'  # the first receiver is not disturbed


def test_second_receiver_of_a_closing_session_gets_the_close_frame() -> None:
    # PROTOCOL.md 7.2 / suite test_close_frame: never 2010 once closing.
    session = open_session()
    assert session.close(3000, "Go away!")
    assert session.attach() == 'c[3000,"Go away!"]'


def test_close() -> None:
    session = open_session()
    session.send(encode_string("last"))
    assert session.close(3001, "bye") is True
    assert session.state is SessionState.CLOSING
    assert session.is_closed
    assert (session.close_code, session.close_reason) == (3001, "bye")
    assert session.close(3002, "again") is False
    assert (session.close_code, session.close_reason) == (3001, "bye")
    # Queued messages first, then the close frame, repeated to every later request.
    assert session.next_frame() == 'a["last"]'
    assert session.next_frame() == 'c[3001,"bye"]'
    assert session.next_frame() == 'c[3001,"bye"]'
    session.detach(1.0)
    assert session.attach() is None
    assert session.next_frame() == 'c[3001,"bye"]'


def test_close_before_open_frame_still_sends_open_first() -> None:
    session = Session(disconnect_delay=5.0, now=0.0)
    session.close(*CloseReason.GO_AWAY)
    session.attach()
    assert session.next_frame() == "o"
    assert session.state is SessionState.CLOSING
    assert session.next_frame() == frames.GO_AWAY


def test_send_after_close_raises() -> None:
    session = open_session()
    session.close(3000, "Go away!")
    with pytest.raises(ConnectionClosed):
        session.send(encode_string("x"))
    assert issubclass(ConnectionClosed, LocalProtocolError)
    assert session.pending_size == 0


def test_receive() -> None:
    session = open_session()
    assert session.receive(["a", "b"]) == ["a", "b"]
    session.close(3000, "Go away!")
    assert session.receive(["c"]) == []


@pytest.mark.parametrize("method", ["next_frame", "detach"])
def test_receiver_calls_without_receiver_raise(method: str) -> None:
    session = Session(disconnect_delay=5.0, now=0.0)
    with pytest.raises(LocalProtocolError, match="no receiver"):
        if method == "next_frame":
            session.next_frame()
        else:
            session.detach(1.0)


def test_interrupted_receiver_closes_with_1002() -> None:
    session = open_session()
    session.detach(1.0, interrupted=True)
    assert session.state is SessionState.CLOSING
    assert (session.close_code, session.close_reason) == (1002, "Connection interrupted")
    session.attach()
    assert session.next_frame() == 'c[1002,"Connection interrupted"]'


def test_interrupt_after_application_close_keeps_its_frame() -> None:
    session = open_session()
    session.close(3000, "Go away!")
    session.detach(1.0, interrupted=True)
    assert session.close_code == 3000


def test_expiry_is_exactly_disconnect_delay_after_detach() -> None:
    session = open_session(delay=5.0, now=100.0)
    assert session.next_deadline() is None  # not timing while a receiver is attached
    assert session.tick(10_000.0) is False
    session.detach(200.0)
    assert session.next_deadline() == 205.0
    assert session.tick(math.nextafter(205.0, 0.0)) is False
    assert states_after(session, lambda: session.tick(205.0)) == (SessionState.OPEN, SessionState.CLOSED)
    assert (session.close_code, session.close_reason) == CloseReason.EXPIRED
    assert session.next_deadline() is None
    assert session.tick(300.0) is True


def test_reattaching_restarts_the_timer() -> None:
    session = open_session(delay=5.0, now=0.0)
    session.detach(1.0)
    session.attach()
    assert session.tick(7.0) is False
    session.detach(7.0)
    assert session.next_deadline() == 12.0


def test_never_attached_session_expires() -> None:
    session = Session(disconnect_delay=5.0, now=0.0)
    assert session.tick(5.0) is True
    assert session.close_code == 1006


def test_expiry_of_a_closing_session_keeps_its_close_code() -> None:
    session = open_session()
    session.close(3000, "Go away!")
    session.detach(1.0)
    assert session.tick(6.0) is True
    assert (session.close_code, session.close_reason) == (3000, "Go away!")


def test_closed_session_refuses_everything() -> None:
    session = Session(disconnect_delay=5.0, now=0.0)
    session.tick(5.0)
    with pytest.raises(LocalProtocolError, match="closed session"):
        session.attach()
    with pytest.raises(ConnectionClosed):
        session.send(encode_string("x"))
    assert session.close(3000, "Go away!") is False
    assert session.receive(["x"]) == []


def test_terminate() -> None:
    session = open_session()
    session.terminate(1000, "Normal closure")
    assert session.state is SessionState.CLOSED
    assert not session.has_receiver
    assert (session.close_code, session.close_reason) == (1000, "Normal closure")
    assert session.next_deadline() is None
    assert session.tick(0.0) is True


def test_terminate_after_close_keeps_the_first_reason() -> None:
    session = open_session()
    session.close(3000, "Go away!")
    session.terminate(1000, "Normal closure")
    assert session.state is SessionState.CLOSED
    assert session.close_code == 3000


def test_close_reasons() -> None:
    assert CloseReason.GO_AWAY == (3000, "Go away!")
    assert CloseReason.INTERRUPTED == (1002, "Connection interrupted")
    assert frames.close(*CloseReason.INTERRUPTED) == frames.CONNECTION_INTERRUPTED


# -- random call sequences ---------------------------------------------------------------------


@dataclass(frozen=True)
class Attach:
    pass


@dataclass(frozen=True)
class NextFrame:
    pass


@dataclass(frozen=True)
class Detach:
    interrupted: bool


@dataclass(frozen=True)
class Send:
    text: str


@dataclass(frozen=True)
class Close:
    code: int
    reason: str


@dataclass(frozen=True)
class Receive:
    messages: list[str]


@dataclass(frozen=True)
class Advance:
    """Move the clock forward by ``fraction`` of ``disconnect_delay``."""

    fraction: float


@dataclass(frozen=True)
class Tick:
    pass


@dataclass(frozen=True)
class TickAtDeadline:
    """Move the clock to the expected deadline (if it lies ahead) and tick."""


@dataclass(frozen=True)
class TickJustBeforeDeadline:
    """Move the clock to the last float before the expected deadline (if ahead) and tick."""


@dataclass(frozen=True)
class Terminate:
    code: int
    reason: str


Operation = (
    Attach
    | NextFrame
    | Detach
    | Send
    | Close
    | Receive
    | Advance
    | Tick
    | TickAtDeadline
    | TickJustBeforeDeadline
    | Terminate
)

codes = st.integers(min_value=1000, max_value=4999)
# Weighted so that the interesting states (a receiver attached to a closing session, messages
# queued across polls) are common and the session is not expired or terminated too soon.
_weighted: list[tuple[int, st.SearchStrategy[Operation]]] = [
    (3, st.just(Attach())),
    (4, st.just(NextFrame())),
    (2, st.builds(Detach, st.booleans())),
    (3, st.builds(Send, pairless_text)),
    (1, st.builds(Close, codes, pairless_text)),
    (1, st.builds(Receive, st.lists(st.text(max_size=3), max_size=3))),
    (2, st.builds(Advance, st.floats(min_value=0.0, max_value=1.2) | st.sampled_from([0.0, 0.5, 1.0]))),
    (1, st.just(Tick())),
    (1, st.just(TickAtDeadline())),
    (1, st.just(TickJustBeforeDeadline())),
    (1, st.builds(Terminate, codes, pairless_text)),
]
operations: st.SearchStrategy[Operation] = st.sampled_from(
    [strategy for weight, strategy in _weighted for _ in range(weight)]
).flatmap(lambda strategy: strategy)


@dataclass
class Run:
    """Drives a session and checks it against what the protocol says should happen.

    The expectations are kept here, independently of the session's own fields.
    """

    session: Session
    delay: float
    now: float
    detached_at: float
    attached: bool = False
    forgotten: bool = False
    close_frame: str | None = None
    #: Messages the session accepted, in order, and how many of them came out.
    accepted: list[str] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)
    #: Every frame handed to a receiver by next_frame.
    stream: list[str] = field(default_factory=list)
    sent_count: int = 0

    @property
    def deadline(self) -> float:
        return self.detached_at + self.delay

    def expect_local_error(self, call: Callable[[], object]) -> None:
        with pytest.raises(LocalProtocolError):
            call()

    def apply(self, op: Operation) -> None:
        session = self.session
        if isinstance(op, Attach):
            if self.forgotten:
                self.expect_local_error(session.attach)
            elif self.attached:
                expected = self.close_frame or frames.ANOTHER_CONNECTION_STILL_OPEN
                assert session.attach() == expected
            else:
                assert session.attach() is None
                self.attached = True
        elif isinstance(op, NextFrame):
            if not self.attached:
                self.expect_local_error(session.next_frame)
            else:
                self.take(session.next_frame())
        elif isinstance(op, Detach):
            if not self.attached:
                self.expect_local_error(lambda: session.detach(self.now, interrupted=op.interrupted))
            else:
                session.detach(self.now, interrupted=op.interrupted)
                self.attached = False
                self.detached_at = self.now
                if op.interrupted and self.close_frame is None:
                    self.close_frame = frames.CONNECTION_INTERRUPTED
        elif isinstance(op, Send):
            # A unique prefix makes "exactly once" checkable.
            text = f"{self.sent_count}:{op.text}"
            self.sent_count += 1
            if self.close_frame is not None or self.forgotten:
                with pytest.raises(ConnectionClosed):
                    session.send(encode_string(text))
            else:
                session.send(encode_string(text))
                self.accepted.append(text)
        elif isinstance(op, Close):
            closes = self.close_frame is None and not self.forgotten
            assert session.close(op.code, op.reason) is closes
            if closes:
                self.close_frame = frames.close(op.code, op.reason)
        elif isinstance(op, Receive):
            is_closed = self.close_frame is not None or self.forgotten
            assert session.receive(op.messages) == ([] if is_closed else op.messages)
        elif isinstance(op, Advance):
            self.now += op.fraction * self.delay
            self.tick()
        elif isinstance(op, Tick):
            self.tick()
        elif isinstance(op, TickAtDeadline):
            if self.deadline >= self.now:
                self.now = self.deadline
            self.tick()
        elif isinstance(op, TickJustBeforeDeadline):
            before = math.nextafter(self.deadline, -math.inf)
            if before >= self.now:
                self.now = before
            self.tick()
        else:
            session.terminate(op.code, op.reason)
            if self.close_frame is None and not self.forgotten:
                self.close_frame = frames.close(op.code, op.reason)
            self.forgotten = True
            self.attached = False

    def tick(self) -> None:
        expires = not self.forgotten and not self.attached and self.now >= self.deadline
        if expires:
            self.forgotten = True
            if self.close_frame is None:
                self.close_frame = frames.close(*CloseReason.EXPIRED)
        assert self.session.tick(self.now) is self.forgotten

    def take(self, frame: str | None) -> None:
        """Check one frame from next_frame against the invariants of PROTOCOL.md 4 and 7."""
        if frame is None:
            # Nothing to send: the open frame went out, nothing is queued, not closing.
            assert self.stream and self.stream[0] == "o"
            assert self.delivered == self.accepted
            assert self.close_frame is None
            return
        if not self.stream:
            assert frame == "o", "the open frame comes first"
        elif frames.is_close(self.stream[-1]):
            assert frame == self.stream[-1], "after a close frame only the same close frame"
        else:
            assert frame != "o", "the open frame comes exactly once"
        if frame.startswith("a"):
            batch = json.loads(frame[1:])
            assert batch, "no empty message frames"
            start = len(self.delivered)
            assert batch == self.accepted[start : start + len(batch)], "in order, exactly once"
            self.delivered.extend(batch)
        elif frames.is_close(frame):
            assert frame == self.close_frame
            assert self.delivered == self.accepted, "queued messages go out before the close frame"
        self.stream.append(frame)

    def check(self) -> None:
        session = self.session
        if self.forgotten:
            state = SessionState.CLOSED
        elif self.close_frame is not None:
            state = SessionState.CLOSING
        elif self.stream:
            state = SessionState.OPEN
        else:
            state = SessionState.CONNECTING
        assert session.state is state
        assert session.has_receiver is self.attached
        assert session.is_closed is (self.close_frame is not None)
        assert session.next_deadline() == (None if self.attached or self.forgotten else self.deadline)
        undelivered = self.accepted[len(self.delivered) :]
        if not self.forgotten:
            assert session.pending_size == sum(len(encode_string(m)) for m in undelivered)

    def drain(self) -> None:
        """Attach if needed and take frames until the session has nothing more to say."""
        if self.forgotten:
            return
        if not self.attached:
            self.apply(Attach())
        for _ in range(3):
            frame = self.session.next_frame()
            self.take(frame)
            if frame is None or frames.is_close(frame):
                break
        assert self.delivered == self.accepted
        assert self.stream[0] == "o"
        assert self.stream.count("o") == 1


@settings(max_examples=500, deadline=None)
@given(
    delay=st.sampled_from([0.001, 0.1, 5.0, 25.0]) | st.floats(min_value=1e-3, max_value=60.0),
    start=st.floats(min_value=0.0, max_value=1e9),
    ops=st.lists(operations, max_size=40),
)
def test_random_call_sequences(delay: float, start: float, ops: list[Operation]) -> None:
    run = Run(Session(disconnect_delay=delay, now=start), delay=delay, now=start, detached_at=start)
    run.check()
    for op in ops:
        try:
            run.apply(op)
        except LocalProtocolError as error:
            raise AssertionError(f"unexpected {error!r} on {op}") from error
        run.check()
    run.drain()
    run.check()


def test_model_catches_a_duplicate_open_frame() -> None:
    # The checker must be able to fail: feed it a stream the protocol forbids.
    run = Run(Session(disconnect_delay=5.0, now=0.0), delay=5.0, now=0.0, detached_at=0.0)
    run.take("o")
    with pytest.raises(AssertionError, match="exactly once"):
        run.take("o")


def test_model_catches_frames_after_close() -> None:
    run = Run(Session(disconnect_delay=5.0, now=0.0), delay=5.0, now=0.0, detached_at=0.0)
    run.close_frame = frames.GO_AWAY
    run.take("o")
    run.take(frames.GO_AWAY)
    with pytest.raises(AssertionError, match="only the same close frame"):
        run.take('a["0:"]')


def test_model_catches_reordered_messages() -> None:
    run = Run(Session(disconnect_delay=5.0, now=0.0), delay=5.0, now=0.0, detached_at=0.0)
    run.accepted = ["0:", "1:"]
    run.take("o")
    with pytest.raises(AssertionError, match="in order"):
        run.take('a["1:","0:"]')

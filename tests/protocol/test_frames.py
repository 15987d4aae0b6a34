"""The four server-to-client frames (PROTOCOL.md section 4)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockjs_asgi.protocol import frames
from sockjs_asgi.protocol.escaping import SERVER_ESCAPED, encode_string

from .strategies import any_text, no_deadline, pairless_text, utf16_units


def test_open_and_heartbeat() -> None:
    assert frames.OPEN == "o"
    assert frames.HEARTBEAT == "h"


@no_deadline
@given(st.lists(pairless_text))
def test_messages_of_a_frame_are_what_built_it(texts: list[str]) -> None:
    encoded = [encode_string(text) for text in texts]
    assert frames.messages_of(frames.messages(encoded)) == encoded


@pytest.mark.parametrize("frame", ["o", "h", 'c[1000,"bye"]'])
def test_other_frames_carry_no_messages(frame: str) -> None:
    assert frames.messages_of(frame) == []


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (frames.GO_AWAY, 'c[3000,"Go away!"]'),
        (frames.ANOTHER_CONNECTION_STILL_OPEN, 'c[2010,"Another connection still open"]'),
        (frames.CONNECTION_INTERRUPTED, 'c[1002,"Connection interrupted"]'),
        (frames.close(3000, "Go away!"), 'c[3000,"Go away!"]'),
        (frames.close(1000, ""), 'c[1000,""]'),
        (frames.close(4999, 'say "bye"\n'), 'c[4999,"say \\"bye\\"\\n"]'),
        (frames.close(3001, "\u2028\u200c"), 'c[3001,"\\u2028\\u200c"]'),
    ],
)
def test_close_frame_bytes(frame: str, expected: str) -> None:
    assert frame == expected


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([], "a[]"),
        (["x"], 'a["x"]'),
        (["a", "a"], 'a["a","a"]'),
        (["x", "y"], 'a["x","y"]'),
        (["\u200c", '"'], 'a["\\u200c","\\""]'),
    ],
)
def test_messages_frame_bytes(messages: list[str], expected: str) -> None:
    assert frames.messages(encode_string(m) for m in messages) == expected


def test_messages_accepts_any_iterable_once() -> None:
    # The session hands over a list; a generator must work too (it is consumed once).
    assert frames.messages(iter(['"x"', '"y"'])) == 'a["x","y"]'


@pytest.mark.parametrize(
    ("frame", "is_close"),
    [
        ("o", False),
        ("h", False),
        ('a["c"]', False),
        ("a[]", False),
        ('c[3000,"Go away!"]', True),
        (frames.ANOTHER_CONNECTION_STILL_OPEN, True),
    ],
)
def test_is_close(frame: str, is_close: bool) -> None:
    assert frames.is_close(frame) is is_close


@no_deadline
@given(st.lists(pairless_text))
def test_messages_frame_round_trips(messages: list[str]) -> None:
    frame = frames.messages([encode_string(m) for m in messages])
    assert frame[0] == "a"
    assert json.loads(frame[1:]) == messages
    assert not frames.is_close(frame)


@no_deadline
@given(st.lists(any_text))
def test_messages_frame_is_escaped_and_round_trips_as_utf16(messages: list[str]) -> None:
    frame = frames.messages([encode_string(m) for m in messages])
    assert SERVER_ESCAPED.search(frame) is None
    assert [utf16_units(m) for m in json.loads(frame[1:])] == [utf16_units(m) for m in messages]


@no_deadline
@given(st.integers(min_value=1000, max_value=4999), pairless_text)
def test_close_frame_round_trips(code: int, reason: str) -> None:
    frame = frames.close(code, reason)
    assert frames.is_close(frame)
    assert SERVER_ESCAPED.search(frame) is None
    assert json.loads(frame[1:]) == [code, reason]
    assert frame == "c[" + str(code) + "," + encode_string(reason) + "]"

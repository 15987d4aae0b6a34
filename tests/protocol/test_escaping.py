"""JSON with the SockJS escape set, script literals, event-stream data, client payloads."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockjs_asgi.protocol.errors import RemoteProtocolError
from sockjs_asgi.protocol.escaping import (
    BROKEN_JSON,
    PAYLOAD_EXPECTED,
    SERVER_ESCAPED,
    decode_messages,
    encode_ascii,
    encode_string,
    event_stream_data,
    one_plain_message,
    script_literal,
)

from .strategies import any_text, has_surrogate_pair, no_deadline, pairless_text, utf16_units

# The escape set of PROTOCOL.md section 4, written out independently of the module under test.
SERVER_RANGES = [
    (0x0000, 0x001F),
    (0x200C, 0x200F),
    (0x2028, 0x202F),
    (0x2060, 0x206F),
    (0xFFF0, 0xFFFF),
    (0xD800, 0xDFFF),
]


def in_server_set(char: str) -> bool:
    return any(low <= ord(char) <= high for low, high in SERVER_RANGES)


# -- encode_string: examples -----------------------------------------------------------------


@pytest.mark.parametrize(
    "code_point",
    [
        *(0x0000, 0x0001, 0x001F),
        *(0x200C, 0x200D, 0x200F),
        *(0x2028, 0x2029, 0x202F),
        *(0x2060, 0x206F),
        *(0xFFF0, 0xFFFE, 0xFFFF),
        *(0xD800, 0xDBFF, 0xDC00, 0xDFFF),
    ],
)
def test_escape_set_goes_out_as_lowercase_u_escapes(code_point: int) -> None:
    assert encode_string(chr(code_point)) == f'"\\u{code_point:04x}"'


def test_u200c_example() -> None:
    assert encode_string("a\u200cb") == '"a\\u200cb"'


@pytest.mark.parametrize(
    "char",
    ["\u200b", "\u2010", "\u2027", "\u2030", "\u205f", "\u2070", "\uffef", "\ue000", "\u00e9", "\x7f", "\U0001f600"],
)
def test_characters_outside_the_escape_set_go_out_verbatim(char: str) -> None:
    # Non-Latin text is not inflated (escaping.py docstring): one character stays one character.
    assert encode_string(char) == f'"{char}"'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", '""'),
        ("x", '"x"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("line\nbreak\r\ttab", '"line\\nbreak\\r\\ttab"'),
        ("</script>", '"</script>"'),
    ],
)
def test_encode_string_examples(text: str, expected: str) -> None:
    assert encode_string(text) == expected


def test_sockjs_protocol_xhr_server_encodes() -> None:
    # Suite JSONEncoding.test_xhr_server_encodes: every escapable character above U+00FF comes
    # back as exactly its \uXXXX form.
    server_set = re.compile("[\x00-\x1f\u200c-\u200f\u2028-\u202f\u2060-\u206f\ufff0-\uffff]")
    chars = [chr(i) for i in range(255, 65536) if server_set.match(chr(i))]
    expected = '"' + "".join(f"\\u{ord(c):04x}" for c in chars) + '"'
    assert encode_string("".join(chars)) == expected


def test_astral_character_and_surrogate_pair_look_the_same_to_a_client() -> None:
    # A pair of separate surrogate code points is escaped; a JSON reader joins the pair into
    # the astral character, as JavaScript would (both are the same UTF-16 units).
    assert encode_string("\ud83d\ude00") == '"\\ud83d\\ude00"'
    assert json.loads(encode_string("\ud83d\ude00")) == "\U0001f600"


# -- encode_string: properties ---------------------------------------------------------------


@no_deadline
@given(pairless_text)
def test_encode_string_round_trips(text: str) -> None:
    assert json.loads(encode_string(text)) == text


@no_deadline
@given(any_text)
def test_encode_string_round_trips_as_utf16_units(text: str) -> None:
    assert utf16_units(json.loads(encode_string(text))) == utf16_units(text)


@pytest.mark.parametrize("code_point", range(128))
def test_encode_ascii_is_encode_string_for_every_ascii_character(code_point: int) -> None:
    char = chr(code_point)
    for text in (char, f"a{char}b"):
        encoded = encode_ascii(text)
        assert encoded == encode_string(text)
        assert json.loads(encoded) == text
        assert SERVER_ESCAPED.search(encoded) is None  # control characters go out escaped
        assert encoded.isascii()


@given(st.text(alphabet=st.characters(max_codepoint=0x7F)))
def test_encode_ascii_is_encode_string_for_ascii_text(text: str) -> None:
    assert text.isascii()
    assert encode_ascii(text) == encode_string(text)
    assert json.loads(encode_ascii(text)) == text


@no_deadline
@given(any_text)
def test_no_escape_set_character_appears_raw(text: str) -> None:
    encoded = encode_string(text)
    assert [c for c in encoded if in_server_set(c)] == []
    assert SERVER_ESCAPED.search(encoded) is None
    encoded.encode("utf-8")  # no surrogate left: the frame can travel as UTF-8


def test_server_escaped_pattern_matches_the_protocol_ranges() -> None:
    # The exported pattern is the documented set: every code point, matched or not.
    mismatches = [i for i in range(0x110000) if bool(SERVER_ESCAPED.fullmatch(chr(i))) != in_server_set(chr(i))]
    assert mismatches == []


# -- script_literal ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("o", '"o"'),
        ('a["x"]', '"a[\\"x\\"]"'),
        ('c[3000,"Go away!"]', '"c[3000,\\"Go away!\\"]"'),
        ('a["</script>"]', '"a[\\"\\u003c/script\\u003e\\"]"'),
        ("<!-- & -->", '"\\u003c!-- \\u0026 --\\u003e"'),
        ("\u2028\u2029", '"\\u2028\\u2029"'),
    ],
)
def test_script_literal_examples(frame: str, expected: str) -> None:
    assert script_literal(frame) == expected


@no_deadline
@given(any_text)
def test_script_literal_is_safe_inside_a_script_block(frame: str) -> None:
    literal = script_literal(frame)
    assert not set(literal) & set("<>&\u2028\u2029")
    assert SERVER_ESCAPED.search(literal) is None
    assert utf16_units(json.loads(literal)) == utf16_units(frame)


@no_deadline
@given(pairless_text)
def test_script_literal_round_trips(frame: str) -> None:
    assert json.loads(script_literal(frame)) == frame


# -- event_stream_data -------------------------------------------------------------------------

_HEX2 = re.compile("[0-9A-Fa-f]{2}")
_DECODE_URI_RESERVED = ";/?:@&=+$,#"


def decode_uri(data: str) -> str:
    """What the client's ``decodeURI`` makes of ``data`` (single-byte escapes only).

    Raises ``ValueError`` where JavaScript throws ``URIError`` (a ``%`` not followed by two hex
    digits) and for multi-byte sequences, which the server never produces.
    """
    out: list[str] = []
    i = 0
    while i < len(data):
        if data[i] != "%":
            out.append(data[i])
            i += 1
            continue
        digits = data[i + 1 : i + 3]
        if not _HEX2.fullmatch(digits):
            raise ValueError(f"URIError at {i}")
        byte = int(digits, 16)
        if byte >= 0x80:
            raise ValueError(f"multi-byte escape at {i}")
        # decodeURI leaves the escapes of reserved characters alone.
        out.append(data[i : i + 3] if chr(byte) in _DECODE_URI_RESERVED else chr(byte))
        i += 3
    return "".join(out)


def test_decode_uri_helper_rejects_bare_percent() -> None:
    # The helper must be able to tell escaped from unescaped output, or the property is empty.
    with pytest.raises(ValueError, match="URIError"):
        decode_uri("100%")
    with pytest.raises(ValueError, match="multi-byte"):
        decode_uri("%C3%A9")
    assert decode_uri("%41%23") == "A%23"


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("o", "o"),
        ("%", "%25"),
        ("\r", "%0D"),
        ("\n", "%0A"),
        ("\x00", "%00"),
        ('a["%22"]', 'a["%2522"]'),
        ('a["50%\\r\\n"]', 'a["50%25\\r\\n"]'),
        ("\u2028\t", "\u2028\t"),
    ],
)
def test_event_stream_data_examples(frame: str, expected: str) -> None:
    assert event_stream_data(frame) == expected


@no_deadline
@given(any_text)
def test_event_stream_data_has_no_line_breaks_and_decodes_back(frame: str) -> None:
    data = event_stream_data(frame)
    assert not set(data) & {"\r", "\n", "\x00"}
    assert decode_uri(data) == frame


# -- decode_messages ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("[]", []),
        ('["x"]', ["x"]),
        ('["a","b"]', ["a", "b"]),
        ('  [ "a" , "b" ]  ', ["a", "b"]),
        ('["\\ud800"]', ["\ud800"]),
        ('["\\u200c\\ufffe"]', ["\u200c\ufffe"]),
    ],
)
def test_decode_messages_accepts_arrays_of_strings(payload: str, expected: list[str]) -> None:
    assert decode_messages(payload) == expected


@pytest.mark.parametrize(
    ("payload", "body"),
    [
        ("", PAYLOAD_EXPECTED),
        ('"x"', PAYLOAD_EXPECTED),
        ("{}", PAYLOAD_EXPECTED),
        ('{"a":"b"}', PAYLOAD_EXPECTED),
        ("null", PAYLOAD_EXPECTED),
        ("1", PAYLOAD_EXPECTED),
        ("[1]", PAYLOAD_EXPECTED),
        ('["a",1]', PAYLOAD_EXPECTED),
        ('["a",null]', PAYLOAD_EXPECTED),
        ('[["a"]]', PAYLOAD_EXPECTED),
        ("x", BROKEN_JSON),
        ("[x]", BROKEN_JSON),
        ('["a"', BROKEN_JSON),
        ("['a']", BROKEN_JSON),
        (" ", BROKEN_JSON),
        ("[" * 100_000, BROKEN_JSON),
        ("[" * 100_000 + "]" * 100_000, BROKEN_JSON),
        ('{"a":' * 100_000 + "1" + "}" * 100_000, BROKEN_JSON),
        # Raw control characters, in the one-message shape too: JSON escapes them.
        ('["a\x01b"]', BROKEN_JSON),
        ('["\n"]', BROKEN_JSON),
        ('["\x00"]', BROKEN_JSON),
        ('["a\\"]', BROKEN_JSON),
    ],
)
def test_decode_messages_errors(payload: str, body: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_messages(payload)
    assert info.value.body == body
    assert info.value.status == 500
    assert str(info.value) == body


def test_error_bodies_are_the_protocol_strings() -> None:
    assert PAYLOAD_EXPECTED == "Payload expected."
    assert BROKEN_JSON == "Broken JSON encoding."


def test_sockjs_protocol_xhr_server_decodes() -> None:
    # Suite JSONEncoding.test_xhr_server_decodes: the client escapes these; the decoded values
    # must be the characters themselves.
    client_set = re.compile(
        '[\\"\x00-\x1f\x7f-\x9f\u00ad\u0600-\u0604\u070f\u17b4\u17b5\u2000-\u20ff\ufeff\ufff0-\uffff]'
    )
    chars = "".join(chr(i) for i in range(65536) if client_set.match(chr(i)))
    payload = '["' + "".join(f"\\u{ord(c):04x}" for c in chars) + '"]'
    assert decode_messages(payload) == [chars]


@no_deadline
@given(st.lists(pairless_text))
def test_decode_messages_reads_what_encode_string_writes(messages: list[str]) -> None:
    payload = "[" + ",".join(encode_string(m) for m in messages) + "]"
    assert decode_messages(payload) == messages


@no_deadline
@given(st.lists(any_text))
def test_decode_messages_reads_standard_json(messages: list[str]) -> None:
    decoded = decode_messages(json.dumps(messages))
    assert [utf16_units(m) for m in decoded] == [utf16_units(m) for m in messages]
    if not any(has_surrogate_pair(m) for m in messages):
        assert decoded == messages


@no_deadline
@given(any_text)
def test_decode_messages_raises_only_the_documented_error(payload: str) -> None:
    try:
        result = decode_messages(payload)
    except RemoteProtocolError as error:
        assert error.body in (PAYLOAD_EXPECTED, BROKEN_JSON)
    else:
        assert isinstance(result, list)
        assert all(isinstance(m, str) for m in result)


@no_deadline
@given(any_text)
def test_decode_messages_reads_one_unescaped_message_as_json_does(message: str) -> None:
    """The one-message payload a client writes without escapes (decoded without the JSON parser)
    decodes as JSON decodes it, whatever its characters."""
    payload = json.dumps([message], ensure_ascii=False)
    expected = json.loads(payload)
    assert decode_messages(payload) == expected
    # Written without any escape: a raw control character is not JSON.
    raw = '["' + message.replace("\\", "").replace('"', "") + '"]'
    try:
        expected = json.loads(raw)
    except ValueError:
        with pytest.raises(RemoteProtocolError):
            decode_messages(raw)
    else:
        assert decode_messages(raw) == expected


@no_deadline
@given(any_text)
def test_one_plain_message_is_what_decode_messages_decodes(text: str) -> None:
    """Where the hot path takes a payload's one message from the match, it is the message the
    decoder returns, whatever the payload; where it does not match, the decoder decides."""
    for payload in (text, '["' + text + '"]'):
        plain = one_plain_message(payload)
        if plain is not None:
            assert decode_messages(payload) == [plain.group(1)]


@pytest.mark.parametrize(
    ("payload", "matches"),
    [
        ('["hello"]', True),
        ('[""]', True),
        (r'["caf\u00e9"]', False),  # an escape: the decoder's
        ('["café"]', True),
        ('["a","b"]', False),
        ('["a"] ', False),
        ("[]", False),
        ("", False),
        ('"a"', False),
    ],
)
def test_one_plain_message_matches_only_one_unescaped_message(payload: str, matches: bool) -> None:
    assert (one_plain_message(payload) is not None) is matches

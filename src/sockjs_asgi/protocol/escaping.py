"""JSON encoding with the SockJS escape set.

The protocol (PROTOCOL.md section 4) requires a server to ``\\u``-escape some characters
that are legal in JSON but that browsers mangle or that end a JavaScript string literal:
control characters, U+200C-U+200F, U+2028-U+202F, U+2060-U+206F, U+FFF0-U+FFFF and every
surrogate (a lone surrogate cannot travel as UTF-8).  Everything else goes out verbatim, so
non-Latin text is not inflated six times as it would be with ``ensure_ascii``.

Two further helpers serve the transports whose frames are executed or parsed by the browser:
``script_literal`` for htmlfile and jsonp (the frame becomes a JavaScript string literal that
must not be able to close the ``<script>`` element) and ``event_stream_data`` for eventsource
(the client runs ``decodeURI`` on each payload, and CR/LF would end the event).
"""

from __future__ import annotations

import json
import re

from .errors import RemoteProtocolError

__all__ = [
    "BROKEN_JSON",
    "PAYLOAD_EXPECTED",
    "SERVER_ESCAPED",
    "decode_messages",
    "encode_ascii",
    "encode_string",
    "event_stream_data",
    "one_plain_message",
    "script_literal",
    "utf8_length",
]

#: Characters the server must send as ``\\uXXXX`` inside JSON strings.  Control characters are
#: already escaped by :func:`json.dumps`; the rest are added by ``_escape``.
SERVER_ESCAPED = re.compile("[\x00-\x1f\u200c-\u200f\u2028-\u202f\u2060-\u206f\ufff0-\uffff\ud800-\udfff]")

_AFTER_DUMPS = re.compile("[\u200c-\u200f\u2028-\u202f\u2060-\u206f\ufff0-\uffff\ud800-\udfff]")
# In a frame executed as a script, "<", ">" and "&" are escaped too, so that no message can
# write "</script>" or "<!--" into an htmlfile page (PROTOCOL.md 5.5, recommendation).
_IN_SCRIPT = re.compile("[<>&\u2028\u2029]")
_EVENT_STREAM = re.compile("[%\r\n\x00]")

# What ``json.dumps(text, ensure_ascii=False)`` does for a str, without the encoder's Python
# method around it (this runs for every message sent).
_dumps = json.encoder.encode_basestring

#: :func:`encode_string` for text that is ASCII (``text.isascii()``), where only control
#: characters need escaping and JSON escapes them itself: for a hot path that has checked.
encode_ascii = _dumps


def _unicode_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _percent_escape(match: re.Match[str]) -> str:
    return f"%{ord(match.group()):02X}"


def encode_string(text: str) -> str:
    """Return ``text`` as a JSON string literal, quotes included, with the escape set applied."""
    if text.isascii():
        # Only control characters need escaping in ASCII, and json.dumps does that itself.
        return _dumps(text)
    return _AFTER_DUMPS.sub(_unicode_escape, _dumps(text))


def utf8_length(text: str) -> int:
    """The length of ``text`` in UTF-8, without encoding it when it is ASCII (the usual case)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def script_literal(frame: str) -> str:
    """Return ``frame`` as a JavaScript string literal that is safe inside a ``<script>`` block."""
    return _IN_SCRIPT.sub(_unicode_escape, encode_string(frame))


def event_stream_data(frame: str) -> str:
    """Percent-escape ``%``, CR, LF and NUL, which the client undoes with ``decodeURI``."""
    return _EVENT_STREAM.sub(_percent_escape, frame)


PAYLOAD_EXPECTED = "Payload expected."
BROKEN_JSON = "Broken JSON encoding."


# The usual payload: one message with nothing escaped (no quote, backslash or control character,
# which JSON would have escaped or refused), whose decoding is the text between the quotes.
_ONE_PLAIN_MESSAGE = re.compile(r'\["([^"\\\x00-\x1f]*)"\]')

#: The usual payload's match, for a hot path that wants its one message without a list:
#: ``match.group(1)`` is what :func:`decode_messages` would return as its only item, and
#: ``None`` means "decode it with :func:`decode_messages`".
one_plain_message = _ONE_PLAIN_MESSAGE.fullmatch


def decode_messages(payload: str) -> list[str]:
    """Decode a client payload: a JSON array of strings.

    Raises :class:`RemoteProtocolError` with the body the protocol prescribes: ``Payload
    expected.`` for an empty payload or JSON that is not an array of strings, ``Broken JSON
    encoding.`` for text that is not JSON (PROTOCOL.md 5.7).  Lone surrogates are kept, as the
    protocol allows any Unicode in a message.
    """
    plain = one_plain_message(payload)
    if plain is not None:
        return [plain.group(1)]
    if not payload:
        raise RemoteProtocolError(PAYLOAD_EXPECTED)
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise RemoteProtocolError(BROKEN_JSON) from None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RemoteProtocolError(PAYLOAD_EXPECTED)
    return value

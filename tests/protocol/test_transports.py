"""The transport table (PROTOCOL.md section 5): rows, wire wrapping, callbacks, enabling."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockjs_asgi.protocol import frames
from sockjs_asgi.protocol.errors import RemoteProtocolError
from sockjs_asgi.protocol.transports import (
    RECEIVERS,
    TRANSPORTS,
    Kind,
    enabled_transports,
    htmlfile_prelude,
    validate_callback,
)

from .strategies import any_text, no_deadline, utf16_units

JAVASCRIPT = "application/javascript; charset=UTF-8"
TEXT = "text/plain; charset=UTF-8"

# -- the table ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "methods", "content_type", "has_cors", "needs_callback"),
    [
        ("websocket", Kind.WEBSOCKET, ("GET",), None, False, False),
        ("xhr", Kind.POLLING, ("POST", "OPTIONS"), JAVASCRIPT, True, False),
        ("xhr_streaming", Kind.STREAMING, ("POST", "OPTIONS"), JAVASCRIPT, True, False),
        ("xhr_send", Kind.SEND, ("POST", "OPTIONS"), TEXT, True, False),
        ("eventsource", Kind.STREAMING, ("GET",), "text/event-stream", True, False),
        ("htmlfile", Kind.STREAMING, ("GET",), "text/html; charset=UTF-8", False, True),
        ("jsonp", Kind.POLLING, ("GET",), JAVASCRIPT, False, True),
        ("jsonp_send", Kind.SEND, ("POST",), TEXT, False, False),
    ],
)
def test_table_rows(
    name: str, kind: Kind, methods: tuple[str, ...], content_type: str | None, has_cors: bool, needs_callback: bool
) -> None:
    row = TRANSPORTS[name]
    assert (row.name, row.kind, row.methods, row.content_type) == (name, kind, methods, content_type)
    assert (row.has_cors, row.needs_callback) == (has_cors, needs_callback)
    assert row.is_receiver is (kind is not Kind.SEND)


def test_table_has_exactly_the_protocol_transports() -> None:
    assert sorted(TRANSPORTS) == sorted(
        ["websocket", "xhr", "xhr_streaming", "xhr_send", "eventsource", "htmlfile", "jsonp", "jsonp_send"]
    )
    assert sorted(RECEIVERS) == sorted(name for name, row in TRANSPORTS.items() if row.is_receiver)


def test_jsonp_sends_nosniff() -> None:
    assert TRANSPORTS["jsonp"].extra_headers == (("x-content-type-options", "nosniff"),)
    assert [name for name, row in TRANSPORTS.items() if row.extra_headers] == ["jsonp"]


@pytest.mark.parametrize(
    ("name", "prelude"),
    [
        ("xhr_streaming", "h" * 2048 + "\n"),
        ("eventsource", "\r\n"),
        ("xhr", ""),
        ("jsonp", ""),
        ("websocket", ""),
        ("htmlfile", ""),  # its prelude depends on the callback: htmlfile_prelude()
    ],
)
def test_preludes(name: str, prelude: str) -> None:
    assert TRANSPORTS[name].prelude == prelude


def test_xhr_streaming_prelude_is_2049_bytes() -> None:
    assert len(TRANSPORTS["xhr_streaming"].prelude.encode()) == 2049


# -- frames on the wire ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "frame", "wire"),
    [
        ("websocket", "o", "o"),
        ("websocket", 'a["x"]', 'a["x"]'),
        ("xhr", "o", "o\n"),
        ("xhr", "h", "h\n"),
        ("xhr", 'a["x"]', 'a["x"]\n'),
        ("xhr_streaming", 'c[3000,"Go away!"]', 'c[3000,"Go away!"]\n'),
        ("eventsource", "o", "data: o\r\n\r\n"),
        ("eventsource", 'a["x"]', 'data: a["x"]\r\n\r\n'),
        ("eventsource", 'a["%\\r\\n"]', 'data: a["%25\\r\\n"]\r\n\r\n'),
        ("htmlfile", "o", '<script>\np("o");\n</script>\r\n'),
        ("htmlfile", 'a["x"]', '<script>\np("a[\\"x\\"]");\n</script>\r\n'),
        ("htmlfile", 'a["</script>"]', '<script>\np("a[\\"\\u003c/script\\u003e\\"]");\n</script>\r\n'),
        ("jsonp", "o", '/**/cb("o");\r\n'),
        ("jsonp", 'a["x"]', '/**/cb("a[\\"x\\"]");\r\n'),
        ("jsonp", frames.GO_AWAY, '/**/cb("c[3000,\\"Go away!\\"]");\r\n'),
    ],
)
def test_wrap(name: str, frame: str, wire: str) -> None:
    assert TRANSPORTS[name].wrap(frame, "cb") == wire


def test_jsonp_uses_the_callback() -> None:
    assert TRANSPORTS["jsonp"].wrap("o", "_jp.abc123") == '/**/_jp.abc123("o");\r\n'


@no_deadline
@given(any_text)
def test_eventsource_frame_is_one_event(frame: str) -> None:
    wire = TRANSPORTS["eventsource"].wrap(frame, "")
    assert wire.startswith("data: ")
    assert wire.endswith("\r\n\r\n")
    payload = wire[len("data: ") : -len("\r\n\r\n")]
    assert not set(payload) & {"\r", "\n", "\x00"}


@no_deadline
@given(any_text)
def test_htmlfile_frame_cannot_leave_its_script_block(frame: str) -> None:
    wire = TRANSPORTS["htmlfile"].wrap(frame, "")
    prefix, suffix = "<script>\np(", ");\n</script>\r\n"
    assert wire.startswith(prefix) and wire.endswith(suffix)
    literal = wire[len(prefix) : -len(suffix)]
    assert "<" not in literal
    assert utf16_units(json.loads(literal)) == utf16_units(frame)


@no_deadline
@given(any_text)
def test_jsonp_frame_is_one_call(frame: str) -> None:
    wire = TRANSPORTS["jsonp"].wrap(frame, "cb")
    prefix, suffix = "/**/cb(", ");\r\n"
    assert wire.startswith(prefix) and wire.endswith(suffix)
    literal = wire[len(prefix) : -len(suffix)]
    assert not set(literal) & set("<>&\u2028\u2029")
    assert utf16_units(json.loads(literal)) == utf16_units(frame)


# -- callbacks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("callback", [None, ""])
def test_missing_callback(callback: str | None) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        validate_callback(callback)
    assert info.value.body == '"callback" parameter required'
    assert info.value.status == 500


@pytest.mark.parametrize(
    "callback", ["%20", " ", "*", "abc(", "abc%28", "a;b", "a\nb", "abc\n", "a/b", "é", "a" * 33, "_jp." + "x" * 29]
)
def test_invalid_callback(callback: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        validate_callback(callback)
    assert info.value.body == 'invalid "callback" parameter'
    assert info.value.status == 500


@pytest.mark.parametrize("callback", ["_jp.abc123", "callback", "a", "A-Z_0.9", "a" * 32, "_jp." + "x" * 28])
def test_valid_callback(callback: str) -> None:
    assert validate_callback(callback) == callback


# -- htmlfile prelude --------------------------------------------------------------------------

HTMLFILE_HEAD = """<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.CB;
    c.start();
    function p(d) {c.message(d);};
    window.onload = function() {c.stop();};
  </script>"""


@pytest.mark.parametrize("callback", ["callback", "_jp.abc123", "a", "a" * 32])
def test_htmlfile_prelude(callback: str) -> None:
    # Suite HtmlFile.test_transport: stripped first chunk equals the head; chunk > 1024 bytes.
    prelude = htmlfile_prelude(callback)
    assert prelude.strip() == HTMLFILE_HEAD.replace("CB", callback)
    assert len(prelude.encode()) > 1024
    assert prelude.endswith("\r\n\r\n")


@no_deadline
@given(st.from_regex(r"[A-Za-z0-9_.\-]{1,32}", fullmatch=True))
def test_htmlfile_prelude_for_any_valid_callback(callback: str) -> None:
    prelude = htmlfile_prelude(validate_callback(callback))
    assert len(prelude.encode()) > 1024
    assert f"var c = parent.{callback};\n" in prelude


# -- enabling and disabling --------------------------------------------------------------------


def test_nothing_disabled() -> None:
    assert enabled_transports(frozenset()) == TRANSPORTS


def test_disabling_jsonp_removes_jsonp_send() -> None:
    enabled = enabled_transports(frozenset({"jsonp"}))
    assert sorted(enabled) == sorted(set(TRANSPORTS) - {"jsonp", "jsonp_send"})


def test_disabling_every_http_receiver_removes_xhr_send() -> None:
    enabled = enabled_transports(frozenset({"xhr", "xhr_streaming", "eventsource", "htmlfile"}))
    assert sorted(enabled) == sorted(["websocket", "jsonp", "jsonp_send"])


@pytest.mark.parametrize("kept", ["xhr", "xhr_streaming", "eventsource", "htmlfile"])
def test_xhr_send_stays_while_one_http_receiver_is_left(kept: str) -> None:
    disabled = frozenset({"xhr", "xhr_streaming", "eventsource", "htmlfile"} - {kept})
    enabled = enabled_transports(disabled)
    assert "xhr_send" in enabled
    assert kept in enabled
    assert not disabled & set(enabled)


def test_disabling_websocket_keeps_the_rest() -> None:
    assert sorted(enabled_transports(frozenset({"websocket"}))) == sorted(set(TRANSPORTS) - {"websocket"})


def test_disabling_everything() -> None:
    assert enabled_transports(frozenset(RECEIVERS)) == {}


@pytest.mark.parametrize("name", ["xhr_send", "jsonp_send", "bogus", "XHR", "xhr-polling", ""])
def test_unknown_names_raise(name: str) -> None:
    with pytest.raises(ValueError, match="unknown transports"):
        enabled_transports(frozenset({"xhr", name}))


def test_enabled_transports_does_not_touch_the_table() -> None:
    enabled_transports(frozenset(RECEIVERS))
    assert len(TRANSPORTS) == 8

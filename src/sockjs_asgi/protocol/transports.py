"""The transport table (PROTOCOL.md section 5): one row of data per transport.

Transports differ only in data: which methods reach them, what they answer with, how a frame is
wrapped on the wire, whether the response streams, and whether a ``c`` callback is required.
The I/O side reads a row and runs one generic loop; nothing here is subclassed.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass

from .errors import RemoteProtocolError
from .escaping import event_stream_data, script_literal

__all__ = [
    "RECEIVERS",
    "TRANSPORTS",
    "Kind",
    "Transport",
    "enabled_transports",
    "htmlfile_prelude",
    "validate_callback",
]


class Kind(enum.Enum):
    """What a transport endpoint does."""

    #: Answers with one frame per response (xhr, jsonp).
    POLLING = "polling"
    #: Keeps the response open and writes frames as they come (xhr_streaming, ...).
    STREAMING = "streaming"
    #: Delivers messages from the client (xhr_send, jsonp_send).
    SEND = "send"
    #: The SockJS websocket transport.
    WEBSOCKET = "websocket"


@dataclass(frozen=True)
class Transport:
    """One row of the table."""

    #: The URL suffix, also the name used by ``disabled_transports``.
    name: str
    kind: Kind
    #: Methods routed to the transport; OPTIONS means it answers CORS preflights.
    methods: tuple[str, ...]
    content_type: str | None = None
    #: Text written once before any frame, not counted in the response limit.
    prelude: str = ""
    #: Turns a frame into the text written on the wire; the second argument is the callback.
    wrap: Callable[[str, str], str] = lambda frame, callback: frame
    #: Whether the request needs a valid ``c`` query parameter.
    needs_callback: bool = False
    #: Whether responses carry the CORS headers (PROTOCOL.md section 2).
    has_cors: bool = False
    #: Extra response headers.
    extra_headers: tuple[tuple[str, str], ...] = ()

    @property
    def is_receiver(self) -> bool:
        """Whether this transport carries frames to the client."""
        return self.kind is not Kind.SEND


def _line(frame: str, callback: str) -> str:
    return frame + "\n"


def _event(frame: str, callback: str) -> str:
    return "data: " + event_stream_data(frame) + "\r\n\r\n"


def _script(frame: str, callback: str) -> str:
    return "<script>\np(" + script_literal(frame) + ");\n</script>\r\n"


def _jsonp(frame: str, callback: str) -> str:
    # The /**/ prefix and nosniff guard against the Flash JSONP exploit (PROTOCOL.md 5.6).
    return "/**/" + callback + "(" + script_literal(frame) + ");\r\n"


_JAVASCRIPT = "application/javascript; charset=UTF-8"
_TEXT = "text/plain; charset=UTF-8"

TRANSPORTS: dict[str, Transport] = {
    t.name: t
    for t in (
        Transport("websocket", Kind.WEBSOCKET, ("GET",)),
        Transport("xhr", Kind.POLLING, ("POST", "OPTIONS"), _JAVASCRIPT, wrap=_line, has_cors=True),
        Transport(
            "xhr_streaming",
            Kind.STREAMING,
            ("POST", "OPTIONS"),
            _JAVASCRIPT,
            # 2048 "h" then a newline: browsers buffer the start of a response (PROTOCOL.md 5.1).
            prelude="h" * 2048 + "\n",
            wrap=_line,
            has_cors=True,
        ),
        Transport("xhr_send", Kind.SEND, ("POST", "OPTIONS"), _TEXT, has_cors=True),
        Transport(
            "eventsource",
            Kind.STREAMING,
            ("GET",),
            "text/event-stream",
            prelude="\r\n",
            wrap=_event,
            has_cors=True,
        ),
        Transport(
            "htmlfile",
            Kind.STREAMING,
            ("GET",),
            "text/html; charset=UTF-8",
            wrap=_script,
            needs_callback=True,
        ),
        Transport(
            "jsonp",
            Kind.POLLING,
            ("GET",),
            _JAVASCRIPT,
            wrap=_jsonp,
            needs_callback=True,
            extra_headers=(("x-content-type-options", "nosniff"),),
        ),
        Transport("jsonp_send", Kind.SEND, ("POST",), _TEXT),
    )
}

#: Names accepted by ``disabled_transports``: the receiving transports.
RECEIVERS = ("websocket", "xhr", "xhr_streaming", "eventsource", "htmlfile", "jsonp")


def enabled_transports(disabled: frozenset[str]) -> dict[str, Transport]:
    """The rows left once ``disabled`` receivers are removed.

    A send endpoint stays while a receiver that uses it is enabled: ``jsonp_send`` with
    ``jsonp``, ``xhr_send`` with any of the others that work over HTTP.
    """
    unknown = disabled - set(RECEIVERS)
    if unknown:
        raise ValueError(f"unknown transports {sorted(unknown)}; choose among {list(RECEIVERS)}")
    enabled = {name: t for name, t in TRANSPORTS.items() if name not in disabled}
    if "jsonp" in disabled:
        del enabled["jsonp_send"]
    if not {"xhr", "xhr_streaming", "eventsource", "htmlfile"} - disabled:
        del enabled["xhr_send"]
    return enabled


_CALLBACK = re.compile(r"[A-Za-z0-9_.\-]{1,32}")


def validate_callback(callback: str | None) -> str:
    """Check the ``c`` parameter of htmlfile and jsonp (PROTOCOL.md 5.5).

    Real clients send ``_jp.a`` and six characters; anything outside ``[A-Za-z0-9_.-]`` or
    longer than 32 characters could inject script and is refused.
    """
    if not callback:
        raise RemoteProtocolError('"callback" parameter required')
    if _CALLBACK.fullmatch(callback) is None:
        raise RemoteProtocolError('invalid "callback" parameter')
    return callback


_HTMLFILE_HEAD = """<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.{callback};
    c.start();
    function p(d) {{c.message(d);}};
    window.onload = function() {{c.stop();}};
  </script>
"""


def htmlfile_prelude(callback: str) -> str:
    """The htmlfile page head, padded past 1 KiB so that browsers start rendering it."""
    head = _HTMLFILE_HEAD.format(callback=callback)
    return head + " " * max(0, 1024 - len(head)) + "\r\n\r\n"

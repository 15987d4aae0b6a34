"""What every transport must do in a real browser, shared by the uvicorn and hypercorn runs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from sockjs_asgi import SockJSApp

from .harness import Harness
from .messages import BURST, LARGE, WIDE
from .services import DISCONNECT_DELAY, HEARTBEAT_DELAY, Record, TestServices

__all__ = [
    "TRANSPORTS",
    "check_burst",
    "check_client_close",
    "check_heartbeat",
    "check_large_message",
    "check_messages",
    "check_server_close",
]

#: sockjs-client's names, in its own order of preference (PROTOCOL.md 11 item 2), without the
#: xdr-* transports, which exist only in old Internet Explorer.
TRANSPORTS = [
    "websocket",
    "xhr-streaming",
    "eventsource",
    "iframe-eventsource",
    "htmlfile",
    "iframe-htmlfile",
    "xhr-polling",
    "iframe-xhr-polling",
    "jsonp-polling",
]

#: The server's name for each (``Connection.transport``, a URL suffix): an iframe transport is
#: the same request made from the iframe page.
SERVER_NAMES = {
    "websocket": "websocket",
    "xhr-streaming": "xhr_streaming",
    "eventsource": "eventsource",
    "iframe-eventsource": "eventsource",
    "htmlfile": "htmlfile",
    "iframe-htmlfile": "htmlfile",
    "xhr-polling": "xhr",
    "iframe-xhr-polling": "xhr",
    "jsonp-polling": "jsonp",
}

CLOSE_CODE = 4321
CLOSE_REASON = 'custom reason: żółć 😀 </script> <!-- "quoted" \\ %22 \u2028 &amp;'

#: Seconds the server may take to notice a client's close: an aborted request is noticed at
#: once, but a long poll the browser does not abort (a removed jsonp <script>) lasts until its
#: heartbeat, and the session then expires after the disconnect delay.
SERVER_NOTICE_TIMEOUT = HEARTBEAT_DELAY + DISCONNECT_DELAY + 10.0

#: How the server's side of a client-closed session ends (PROTOCOL.md 6, 7.4 and 7.6): a
#: websocket ends with the code the ASGI server reports for a close without a code (uvicorn
#: 1005, hypercorn 1006); an HTTP session either sees its request aborted (1002) or, when the
#: browser leaves the request running (jsonp), expires after the disconnect delay (1006).
CLIENT_CLOSE_CODES = {"websocket": {1000, 1005, 1006}}
HTTP_CLIENT_CLOSE_CODES = {1002, 1006}


def wait_until(predicate: Callable[[], bool], timeout: float, message: str) -> None:
    """Poll server-side state, which lives in another thread, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.02)


def _ended(record: Record, service: SockJSApp, what: str) -> None:
    """Assert the server ended the session: the handler saw the end, and the connection left
    the service's live set."""
    assert record.ended.wait(SERVER_NOTICE_TIMEOUT), (
        f"{what}: after {SERVER_NOTICE_TIMEOUT} s the server still runs the session"
        f" (connection closed: {record.connection.is_closed}, code {record.connection.close_code})"
    )
    wait_until(
        lambda: record.connection not in service.connections,
        5.0,
        f"{what}: the handler returned but the connection is still in app.connections",
    )


def check_messages(harness: Harness, transport: str) -> None:
    opened = harness.open("/echo", transport)
    harness.round_trip(opened, WIDE)
    harness.close(opened)


def check_large_message(harness: Harness, transport: str) -> None:
    opened = harness.open("/echo", transport)
    harness.round_trip(opened, ["before", LARGE, "after"])
    harness.close(opened)


def check_burst(harness: Harness, transport: str) -> None:
    opened = harness.open("/echo", transport)
    harness.round_trip(opened, BURST)
    harness.close(opened)


def check_heartbeat(harness: Harness, transport: str) -> None:
    """An idle connection gets heartbeat frames (PROTOCOL.md 7.4); a polling transport gets
    one as the answer to an idle poll."""
    opened = harness.open("/echo", transport)
    seen = harness.wait_heartbeat(opened, int((HEARTBEAT_DELAY + 5.0) * 1000))
    assert seen["heartbeats"] >= 1, f"{transport}: no heartbeat within {HEARTBEAT_DELAY + 5.0} s: {seen}"
    assert seen["closed"] is None and seen["messages"] == 0, f"{transport}: {seen}"
    harness.close(opened)


def check_server_close(harness: Harness, services: TestServices, transport: str) -> None:
    """The application closes with its own code and reason; a message queued just before the
    close arrives first (PROTOCOL.md 7.1, CLOSING)."""
    opened = harness.open("/close", transport)
    record = services.recorder.wait(opened.token, 5.0)
    assert record.transport == SERVER_NAMES[transport]
    harness.send(opened, json.dumps({"code": CLOSE_CODE, "reason": CLOSE_REASON}))
    closed, messages = harness.wait_closed(opened)
    assert messages == ["bye"], f"{transport}: messages before the close: {messages!r}, then {closed!r}"
    assert closed == {"code": CLOSE_CODE, "reason": CLOSE_REASON, "wasClean": True}, (
        f"{transport}: close event {closed!r}\n{harness.describe()}"
    )
    _ended(record, services.close, f"{transport} server close")
    assert (record.close_code, record.close_reason) == (CLOSE_CODE, CLOSE_REASON)


def check_client_close(harness: Harness, services: TestServices, transport: str) -> None:
    """The client closes; the server ends the session (PROTOCOL.md 11 item 11)."""
    opened = harness.open("/echo", transport)
    record = services.recorder.wait(opened.token, 5.0)
    assert record.transport == SERVER_NAMES[transport]
    harness.round_trip(opened, ["ping"])
    closed = harness.close(opened)
    assert closed == {"code": 1000, "reason": "Normal closure", "wasClean": True}, f"{transport}: {closed!r}"
    _ended(record, services.echo, f"{transport} client close")
    expected = CLIENT_CLOSE_CODES.get(transport, HTTP_CLIENT_CLOSE_CODES)
    assert record.close_code in expected, (
        f"{transport}: the server closed the session with {record.close_code} {record.close_reason!r},"
        f" expected one of {sorted(expected)}"
    )
    assert record.received == 1

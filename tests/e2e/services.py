"""The ASGI application the browser tests talk to.

One application serves the test page, the sockjs-client script and the SockJS services:

* ``/echo``: sends every message back.
* ``/close``: waits for one command ``{"code": ..., "reason": ...}``, sends ``"bye"``, then
  closes the session with that code and reason (a server-initiated close).

Both record each connection under the ``token`` query parameter of the SockJS URL (the client
carries the URL's query string on every request), so a test can wait for the server to see the
end of its own session, whatever earlier tests left behind.  Records are read from the test's
thread while the server runs in another, hence the lock and the :class:`threading.Event`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from sockjs_asgi import Broker, Connection, Handler, SockJSApp, SockJSRouter

__all__ = ["STATIC", "Record", "Recorder", "TestServices", "build_app"]

STATIC = Path(__file__).parent / "static"

#: Short delays keep the tests fast: an idle poll returns ``h`` after HEARTBEAT_DELAY, and a
#: session without a receiver expires after DISCONNECT_DELAY (PROTOCOL.md 7.4).
HEARTBEAT_DELAY = 1.0
DISCONNECT_DELAY = 1.0
#: Small enough that streaming transports reconnect many times during a test (PROTOCOL.md 7.5).
RESPONSE_LIMIT = 4096


@dataclass
class Record:
    """What the server saw of one connection."""

    connection: Connection
    transport: str
    received: int = 0
    close_code: int | None = None
    close_reason: str | None = None
    ended: threading.Event = field(default_factory=threading.Event)


class Recorder:
    """Records by token, shared between the server's thread and the test's."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._records: dict[str, Record] = {}

    def opened(self, conn: Connection) -> Record | None:
        token = conn.request.query_params.get("token")
        if token is None:
            return None
        record = Record(conn, conn.transport)
        with self._lock:
            self._records[token] = record
            self._lock.notify_all()
        return record

    def wait(self, token: str, timeout: float) -> Record:
        """The record of ``token``, waiting up to ``timeout`` seconds for the server to open it."""
        with self._lock:
            if not self._lock.wait_for(lambda: token in self._records, timeout):
                raise AssertionError(f"the server never opened a session for token {token!r}")
            return self._records[token]


@dataclass
class TestServices:
    """The SockJS services of one application instance, for the test to inspect."""

    __test__ = False  # not a test class, whatever its name

    echo: SockJSApp
    close: SockJSApp
    recorder: Recorder


def build_app(
    client_js: Path,
    *,
    allowed_origins: list[str] | None = None,
    max_sessions: int | None = None,
    broker: Callable[[str], Broker] | None = None,
) -> tuple[ASGIApp, TestServices]:
    """A fresh application (each server needs its own: sessions belong to one event loop);
    ``allowed_origins`` and ``max_sessions`` go to both services, and ``broker(name)``, if
    given, makes each service's broker."""
    recorder = Recorder()

    async def echo(conn: Connection) -> None:
        record = recorder.opened(conn)
        try:
            async for message in conn:
                if record is not None:
                    record.received += 1
                await conn.send(message)
        finally:
            if record is not None:
                record.close_code, record.close_reason = conn.close_code, conn.close_reason
                record.ended.set()

    async def close(conn: Connection) -> None:
        record = recorder.opened(conn)
        try:
            command = json.loads(await conn.receive())
            await conn.send("bye")
            await conn.close(int(command["code"]), str(command["reason"]))
        finally:
            if record is not None:
                record.close_code, record.close_reason = conn.close_code, conn.close_reason
                record.ended.set()

    # sockjs_url is relative, so the iframe page loads the client from its own origin.
    def service(handler: Handler) -> SockJSApp:
        return SockJSApp(
            handler,
            sockjs_url="/sockjs.min.js",
            heartbeat_delay=HEARTBEAT_DELAY,
            disconnect_delay=DISCONNECT_DELAY,
            response_limit=RESPONSE_LIMIT,
            allowed_origins=allowed_origins,
            max_sessions=max_sessions,
            broker=broker(handler.__name__) if broker is not None else None,
        )

    services = TestServices(service(echo), service(close), recorder)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-store"})

    async def harness(request: Request) -> Response:
        return FileResponse(STATIC / "harness.js", headers={"cache-control": "no-store"})

    async def client(request: Request) -> Response:
        return FileResponse(client_js, media_type="application/javascript")

    site = Starlette(
        routes=[
            Route("/", page),
            Route("/harness.js", harness),
            Route("/sockjs.min.js", client),
        ]
    )
    app = SockJSRouter({"/echo": services.echo, "/close": services.close}, app=site)
    return app, services

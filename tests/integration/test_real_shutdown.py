"""What a SockJS client sees when a real server shuts down without a termination signal.

When a server is stopped by a signal, ``SockJSApp.run()`` closes every session first (see
``test_signal_shutdown.py``).  These servers run in a thread and are stopped from the test, as
an embedding program would stop them, so no signal arrives: then uvicorn and hypercorn send the
ASGI ``lifespan.shutdown`` only after they have waited for the open connections (uvicorn:
``timeout_graceful_shutdown``; hypercorn: ``graceful_timeout``) and cancelled whatever still
runs.  A SockJS streaming response never ends on its own, so it is the server that cuts it: the
client sees an incomplete response and no close frame, and ``run()`` shuts down only sessions
that have no request left.  An embedding program avoids this by calling
``SockJSApp.close_all()`` before it stops the server.  These tests pin the servers' order down,
so that they fail (and can be turned around) if a server starts telling applications earlier.
"""

from __future__ import annotations

import logging
import threading
from contextlib import AbstractContextManager

import httpx
import pytest

from sockjs_asgi import Connection, SockJSApp

from ._threaded_servers import Running, run_hypercorn, run_uvicorn

GRACE = 1
TIMEOUT = 10.0

SERVERS = ["uvicorn-h11-wsproto", "hypercorn-asyncio", "hypercorn-trio"]


async def echo(conn: Connection) -> None:
    async for message in conn:
        await conn.send(message)


def start(name: str, app: SockJSApp) -> AbstractContextManager[Running]:
    if name.startswith("uvicorn"):
        return run_uvicorn(app, http="h11", ws="wsproto", graceful=GRACE)
    return run_hypercorn(app, worker=name.partition("-")[2], graceful=GRACE)


def unexpected_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log records at WARNING or above other than the servers reporting the request they cancelled."""
    loud = []
    for record in caplog.records:
        if record.levelno < logging.WARNING:
            continue
        error = record.exc_info[1] if record.exc_info else None
        cancelled = error is not None and type(error).__name__ in ("CancelledError", "Cancelled")
        if not cancelled and "graceful" not in record.getMessage().lower():
            loud.append(f"{record.name}: {record.getMessage()}")
    return loud


@pytest.mark.parametrize("name", SERVERS)
def test_shutdown_with_an_open_stream(name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    app = SockJSApp(echo)
    received: list[bytes] = []
    outcome: list[str] = []
    attached = threading.Event()

    def receive(server: Running) -> None:
        try:
            with (
                httpx.Client(timeout=TIMEOUT) as client,
                client.stream("POST", server.http + "/000/open/xhr_streaming") as response,
            ):
                for chunk in response.iter_raw():
                    received.append(chunk)
                    if b"o\n" in b"".join(received):
                        attached.set()
            outcome.append("ended")
        except httpx.HTTPError as exc:
            outcome.append(type(exc).__name__)
        finally:
            attached.set()

    reader: threading.Thread | None = None
    with start(name, app) as server:
        reader = threading.Thread(target=receive, args=(server,), daemon=True)
        reader.start()
        assert attached.wait(TIMEOUT)
    # Leaving the block stopped the server (within SHUTDOWN_TIMEOUT, or the helper fails).
    reader.join(TIMEOUT)
    assert not reader.is_alive()
    body = b"".join(received)
    assert body.startswith(b"h" * 2048 + b"\no\n")
    # The server waited for its grace period, then cut the response: no close frame arrived.
    assert b"c[" not in body
    assert outcome == ["RemoteProtocolError"]
    assert unexpected_records(caplog) == []


@pytest.mark.parametrize("name", SERVERS)
def test_shutdown_with_an_idle_session_closes_it(name: str) -> None:
    """A session with no request open does get the shutdown: its handler sees the close."""
    closed: list[tuple[int | None, str | None]] = []
    done = threading.Event()

    async def handler(conn: Connection) -> None:
        async for _ in conn:
            pass
        closed.append((conn.close_code, conn.close_reason))
        done.set()

    app = SockJSApp(handler)
    with start(name, app) as server, httpx.Client(base_url=server.http, timeout=TIMEOUT) as client:
        assert client.post("/000/idle/xhr").content == b"o\n"
    assert done.wait(TIMEOUT)
    assert closed == [(1001, "Server shutting down")]

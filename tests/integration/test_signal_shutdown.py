"""A server stopped with Ctrl-C or SIGTERM closes every SockJS session first.

``SockJSApp.run()`` wraps the termination signal handlers of the process it runs in (see
``sockjs_asgi._signals``), so that streams end with a close frame as soon as shutdown begins
instead of keeping the server waiting: left alone, uvicorn waits for an open stream without
limit and hypercorn cuts it after its grace period.  hypercorn's default worker process never
sees the signal (its parent does), so it runs here without workers (``-w 0``).
"""

from __future__ import annotations

import signal
import subprocess

import httpx
import pytest
from websockets.sync.client import connect

from ._serve_matrix import TIMEOUT, RunningServer, Server, serve, session_url

SERVERS = [
    Server("uvicorn", ("--http", "h11")),
    Server("uvicorn", ("--http", "httptools", "--ws", "websockets-sansio")),
    Server("hypercorn", ("--workers", "0")),
]
SHUTDOWN = b'c[1001,"Server shutting down"]'


def stop(running: RunningServer) -> int:
    """Send SIGINT and return the exit status, which must come within TIMEOUT seconds."""
    running.process.send_signal(signal.SIGINT)
    try:
        return running.process.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{running.server.id} still running {TIMEOUT} s after SIGINT:\n{running.log()}")


@pytest.mark.parametrize("server", SERVERS, ids=lambda server: server.id)
def test_sigint_closes_streams_and_websockets_with_a_close_frame(server: Server) -> None:
    with serve(server, "examples.echo:app", ready_path="/info") as running, httpx.Client(timeout=TIMEOUT) as client:
        base = session_url(running.base_url)
        with connect(session_url(running.ws_url) + "/websocket", open_timeout=TIMEOUT) as socket:
            assert socket.recv(TIMEOUT) == "o"
            with client.stream("POST", base + "/xhr_streaming") as response:
                chunks = response.iter_raw()
                assert next(chunks).startswith(b"hhhh")
                assert next(chunks) == b"o\n"
                status = stop(running)
                rest = b"".join(chunks)  # ends: the response is complete
            assert rest == SHUTDOWN + b"\n"
            assert socket.recv(TIMEOUT) == SHUTDOWN.decode()
        assert status == 0
        assert running.errors() == []

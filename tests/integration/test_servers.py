"""Every transport through every ASGI server we support, each running in its own process.

The application is a plain echo :class:`~sockjs_asgi.SockJSApp` at the root
(``tests/integration/_matrix_app.py``), which refuses requests carrying ``?refuse``.  Each
server configuration is started once for the module and serves all of its tests:

* uvicorn over each websocket implementation (websockets, websockets-sansio, wsproto) and
  each HTTP parser (h11, httptools);
* hypercorn with its asyncio and its trio worker (our I/O runs on trio there);
* granian's ASGI interface;
* daphne, which runs no ASGI lifespan: sessions' handlers then run in the request that
  opened them (see "Lifespan" in the README).

After each test the server's output must hold no traceback and no error line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.integration._serve_matrix import (
    DAPHNE,
    GRANIAN,
    HYPERCORN,
    TIMEOUT,
    UVICORN,
    RunningServer,
    Server,
    eventsource_echo,
    raw_websocket_echo,
    serve,
    session_url,
    websocket_echo,
    websocket_refusal,
    xhr_polling_echo,
    xhr_streaming_echo,
)

SERVERS = [*UVICORN, *HYPERCORN, GRANIAN, DAPHNE]


@pytest.fixture(scope="module", params=SERVERS, ids=[server.id for server in SERVERS])
def running(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    server: Server = request.param
    with serve(server, "tests.integration._matrix_app:app", ready_path="/info") as running:
        yield running


@pytest.fixture(autouse=True)
def server_log_is_clean(running: RunningServer) -> Iterator[None]:
    start = running.log_size()
    yield
    assert running.errors(since=start) == [], running.log(start)


@pytest.fixture
def client(running: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running.base_url, timeout=TIMEOUT) as client:
        yield client


def test_info(client: httpx.Client) -> None:
    response = client.get("/info")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    info = response.json()
    assert info["websocket"] is True
    assert info["cookie_needed"] is False


def test_websocket(running: RunningServer) -> None:
    websocket_echo(session_url(running.ws_url) + "/websocket")


def test_raw_websocket(running: RunningServer) -> None:
    raw_websocket_echo(running.ws_url + "/websocket")


def test_xhr_streaming(running: RunningServer, client: httpx.Client) -> None:
    xhr_streaming_echo(client, session_url(running.base_url))


def test_xhr_polling(running: RunningServer, client: httpx.Client) -> None:
    xhr_polling_echo(client, session_url(running.base_url))


def test_eventsource(running: RunningServer, client: httpx.Client) -> None:
    eventsource_echo(client, session_url(running.base_url))


def test_refused_xhr_opens_no_session(running: RunningServer, client: httpx.Client) -> None:
    session = session_url(running.base_url)
    refused = client.post(session + "/xhr", params={"refuse": ""})
    assert refused.status_code == 403
    assert "o" not in refused.text.splitlines()  # no open frame
    assert client.post(session + "/xhr_send", content=json.dumps(["hi"])).status_code == 404


def test_refused_websocket(running: RunningServer) -> None:
    refusal = websocket_refusal(session_url(running.ws_url) + "/websocket?refuse")
    if running.server.denial_response:
        # uvicorn, hypercorn and granian offer the denial-response extension: the client gets
        # our own response.  (granian adds its upgrade headers to that 403, which clients
        # ignore on a status other than 101.)
        assert refusal == (403, b"Forbidden")
    else:
        # daphne does not: the app closes the socket before accepting it, which the ASGI
        # specification has the server answer with 403, and which daphne sends without a body.
        assert refusal is not None
        assert refusal[0] == 403


def test_unknown_websocket_url(running: RunningServer) -> None:
    refusal = websocket_refusal(running.ws_url + "/no/such/endpoint")
    assert refusal is not None
    # Without the denial-response extension (daphne) a close before accept is all an app can
    # say, and the server turns every such close into 403: the 404 is lost.
    assert refusal[0] == (404 if running.server.denial_response else 403)

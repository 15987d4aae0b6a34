"""The framework examples (``examples/*_app.py``), each served by uvicorn and by hypercorn.

Each server starts the three examples once for the module.  Every example serves the echo
service at ``/sockjs/echo`` next to its framework's own routes; the FastAPI one lets in only
requests carrying its token, in the query string or in a cookie.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
import pytest
from examples.fastapi_app import TOKEN

from tests.integration._serve_matrix import (
    HYPERCORN,
    TIMEOUT,
    RunningServer,
    Server,
    serve,
    session_url,
    websocket_echo,
    websocket_refusal,
    xhr_polling_echo,
)

SERVICE = "/sockjs/echo"

#: What "uvicorn app" and "hypercorn app" run: uvicorn's automatic choice of implementations
#: (httptools and websockets-sansio here) and hypercorn's asyncio worker.
SERVERS = [Server("uvicorn"), HYPERCORN[0]]


@dataclass(frozen=True)
class Example:
    """An example application and what a client needs to be let in."""

    name: str
    #: Query parameters that open a session (the FastAPI example's token).
    params: dict[str, str]

    @property
    def app(self) -> str:
        return f"examples.{self.name}_app:app"

    @property
    def query(self) -> str:
        return "?" + str(httpx.QueryParams(self.params)) if self.params else ""


EXAMPLES = [Example("starlette", {}), Example("fastapi", {"token": TOKEN}), Example("quart", {})]


@pytest.fixture(scope="module", params=SERVERS, ids=[server.id for server in SERVERS])
def servers(request: pytest.FixtureRequest) -> Iterator[dict[str, RunningServer]]:
    """Every example, running under one server."""
    server: Server = request.param
    with ExitStack() as stack:
        yield {
            example.name: stack.enter_context(serve(server, example.app, ready_path=SERVICE + "/info"))
            for example in EXAMPLES
        }


@pytest.fixture(autouse=True)
def server_logs_are_clean(servers: dict[str, RunningServer]) -> Iterator[None]:
    starts = {name: running.log_size() for name, running in servers.items()}
    yield
    for name, running in servers.items():
        assert running.errors(since=starts[name]) == [], running.log(starts[name])


@pytest.fixture
def fastapi(servers: dict[str, RunningServer]) -> RunningServer:
    return servers["fastapi"]


def client(
    running: RunningServer, *, params: dict[str, str] | None = None, cookies: dict[str, str] | None = None
) -> httpx.Client:
    return httpx.Client(base_url=running.base_url, timeout=TIMEOUT, params=params, cookies=cookies)


# -- every example ----------------------------------------------------------------------------

each_example = pytest.mark.parametrize("example", EXAMPLES, ids=[example.name for example in EXAMPLES])


@each_example
def test_info(servers: dict[str, RunningServer], example: Example) -> None:
    with client(servers[example.name]) as http:
        response = http.get(SERVICE + "/info")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    assert response.json()["websocket"] is True


@each_example
def test_websocket_echo(servers: dict[str, RunningServer], example: Example) -> None:
    websocket_echo(session_url(servers[example.name].ws_url + SERVICE) + "/websocket" + example.query)


@each_example
def test_xhr_polling_echo(servers: dict[str, RunningServer], example: Example) -> None:
    running = servers[example.name]
    with client(running, params=example.params) as http:
        xhr_polling_echo(http, session_url(running.base_url + SERVICE))


# -- the frameworks' own routes ---------------------------------------------------------------


def test_starlette_route(servers: dict[str, RunningServer]) -> None:
    with client(servers["starlette"]) as http:
        response = http.get("/")
    assert response.status_code == 200
    assert response.text.startswith("Hello from Starlette")


def test_fastapi_route(fastapi: RunningServer) -> None:
    with client(fastapi) as http:
        response = http.get("/")
    assert response.status_code == 200
    assert response.json()["sockjs"] == SERVICE


def test_quart_routes_and_lifespan(servers: dict[str, RunningServer]) -> None:
    with client(servers["quart"]) as http:
        index = http.get("/")
        # 200 only once Quart's before_serving ran: SockJSRouter passes the lifespan on.
        health = http.get("/health")
        missing = http.get("/sockjs/echoes")  # not below the service's prefix: Quart's 404
    assert index.status_code == 200
    assert index.text.startswith("Hello from Quart")
    assert (health.status_code, health.text) == (200, "ready")
    assert missing.status_code == 404
    assert "Not Found" in missing.text  # Quart's page, not the service's


# -- FastAPI's authorization ------------------------------------------------------------------


def test_fastapi_token_in_a_cookie(fastapi: RunningServer) -> None:
    with client(fastapi, cookies={"token": TOKEN}) as http:
        xhr_polling_echo(http, session_url(fastapi.base_url + SERVICE))
    websocket_echo(session_url(fastapi.ws_url + SERVICE) + "/websocket", headers={"Cookie": f"token={TOKEN}"})


@pytest.mark.parametrize(
    "params", [{}, {"token": "wrong"}, {"token": "sans-d\u00e9tour"}], ids=["none", "wrong", "non-ascii"]
)
def test_fastapi_refuses_xhr_without_the_token(fastapi: RunningServer, params: dict[str, str]) -> None:
    session = session_url(fastapi.base_url + SERVICE)
    with client(fastapi, params=params) as http:
        refused = http.post(session + "/xhr")
        assert refused.status_code == 403
        assert "o" not in refused.text.splitlines()  # no open frame
        # No session was created: there is nothing to send to.
        assert http.post(session + "/xhr_send", content=json.dumps(["hi"])).status_code == 404
        assert http.post(session + "/xhr_streaming").status_code == 403


def test_fastapi_refuses_websocket_without_the_token(fastapi: RunningServer) -> None:
    # uvicorn and hypercorn both offer the denial-response extension, so the refusal is our
    # own 403 response and the socket never opens (no "o" frame can arrive).
    url = session_url(fastapi.ws_url + SERVICE) + "/websocket"
    assert websocket_refusal(url) == (403, b"Forbidden")
    assert websocket_refusal(url + "?token=wrong", headers={"Cookie": "token=wrong"}) == (403, b"Forbidden")

"""The service under a prefix: root_path, Starlette's Mount, SockJSRouter (PROTOCOL.md 1)."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.websockets import WebSocket as StarletteWebSocket

import sockjs_asgi
from sockjs_asgi import SockJSApp, SockJSRouter
from sockjs_asgi.testing import TestClient, WebSocketDenied

from .support import (
    GO_AWAY,
    TIMEOUT,
    XHR_STREAMING_PRELUDE,
    Lifespan,
    Receive,
    Recorder,
    Scope,
    Send,
    echo,
    go_away,
    read_all,
)

pytestmark = pytest.mark.anyio


def with_root_path(app: Any, root_path: str, *, strip: bool = False) -> Any:
    """An ASGI host that serves ``app`` under ``root_path``.

    By the ASGI convention ``path`` keeps the prefix; with ``strip`` the host removes it from
    ``path`` as some older hosts do.
    """

    async def host(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            scope = dict(scope, root_path=root_path)
            if strip:
                assert scope["path"].startswith(root_path)
                scope["path"] = scope["path"][len(root_path) :]
        await app(scope, receive, send)

    return host


async def exercise(client: TestClient, prefix: str) -> None:
    """Every kind of endpoint of an echo service at ``prefix``."""
    for path in (prefix, prefix + "/"):
        response = await client.request("GET", path)
        assert (response.status, response.body) == (200, b"Welcome to SockJS!\n"), path
    assert (await client.request("GET", prefix + "/a")).status == 404
    assert (await client.request("GET", prefix + "/info")).status == 200
    assert (await client.request("GET", prefix + "/iframe.html")).status == 200
    url = prefix + "/000/mounted"
    assert (await client.request("POST", url + "/xhr")).body == b"o\n"
    assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 204
    assert (await client.request("POST", url + "/xhr")).body == b'a["x"]\n'
    async with client.stream("POST", prefix + "/000/streamed/xhr_streaming") as response:
        assert await response.read() == XHR_STREAMING_PRELUDE
        assert await response.read() == b"o\n"
    async with client.websocket(prefix + "/000/ws/websocket") as socket:
        assert await socket.receive_text() == "o"
        await socket.send_text('["y"]')
        assert await socket.receive_text() == 'a["y"]'
    async with client.websocket(prefix + "/websocket") as raw:
        await raw.send_text("z")
        assert await raw.receive_text() == "z"
    async with client.connect(prefix, transport="xhr_streaming") as session:
        await session.send("via connect")
        assert await session.receive() == "via connect"


@pytest.mark.parametrize("prefix", ["/echo", "/a/b/c/echo"])
async def test_root_path_convention(prefix: str) -> None:
    app = SockJSApp(echo)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(with_root_path(app, prefix)) as client:
            await exercise(client, prefix)


async def test_root_path_with_stripped_path() -> None:
    app = SockJSApp(echo)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(with_root_path(app, "/echo", strip=True)) as client:
            await exercise(client, "/echo")


async def test_at_the_root_without_root_path() -> None:
    app = SockJSApp(echo)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(app) as client:
            assert (await client.request("GET", "")).body == b"Welcome to SockJS!\n"
            assert (await client.request("GET", "/")).body == b"Welcome to SockJS!\n"
            assert (await client.request("POST", "/000/s/xhr")).body == b"o\n"


async def test_prefix_is_not_part_of_the_session_routes() -> None:
    """The prefix itself may look like a session path; only what is below it is routed."""
    app = SockJSApp(echo)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(with_root_path(app, "/000/s")) as client:
            assert (await client.request("GET", "/000/s")).body == b"Welcome to SockJS!\n"
            assert (await client.request("POST", "/000/s/000/t/xhr")).body == b"o\n"


async def test_starlette_mount() -> None:
    echo_service = SockJSApp(echo)
    close_service = SockJSApp(go_away)

    async def homepage(request: object) -> PlainTextResponse:
        return PlainTextResponse("home")

    app = Starlette(
        routes=[
            Route("/", homepage),
            Mount("/echo", app=echo_service),
            Mount("/deep", routes=[Mount("/close", app=close_service)]),
        ],
        lifespan=sockjs_asgi.lifespan(echo_service, close_service),
    )
    with anyio.fail_after(TIMEOUT):
        async with TestClient(app) as client:
            assert (await client.request("GET", "/")).body == b"home"
            # Starlette's Mount matches "/echo/..." only; "/echo" itself is Starlette's to answer.
            for path in ("/echo/", "/echo/info", "/echo/iframe.html"):
                assert (await client.request("GET", path)).status == 200, path
            assert (await client.request("GET", "/echo/a")).status == 404
            url = "/echo/000/mounted"
            assert (await client.request("POST", url + "/xhr")).body == b"o\n"
            assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 204
            assert (await client.request("POST", url + "/xhr")).body == b'a["x"]\n'
            async with client.websocket("/echo/000/ws/websocket") as socket:
                assert await socket.receive_text() == "o"
                await socket.send_text('["y"]')
                assert await socket.receive_text() == 'a["y"]'
            async with client.connect("/echo", transport="xhr") as session:
                await session.send("polled")
                assert await session.receive() == "polled"
            url = "/deep/close/000/closing"
            assert (await client.request("POST", url + "/xhr")).body == b"o\n"
            assert (await client.request("POST", url + "/xhr")).text == GO_AWAY + "\n"


async def test_starlette_lifespan_runs_the_services() -> None:
    """With the services' lifespan, shutdown closes their sessions."""
    recorder = Recorder()
    service = SockJSApp(recorder)
    app = Starlette(routes=[Mount("/echo", app=service)], lifespan=service.lifespan)
    lifespan = Lifespan(app)
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group, TestClient(app, lifespan=False) as client:
            task_group.start_soon(lifespan.run)
            await lifespan.startup()
            async with client.stream("POST", "/echo/000/s/xhr_streaming") as response:
                assert await response.read() == XHR_STREAMING_PRELUDE
                assert await response.read() == b"o\n"
                task_group.start_soon(lifespan.shutdown)
                assert await read_all(response) == [b'c[1001,"Server shutting down"]\n']
            await lifespan.done.wait()
            assert recorder.cancelled == 0


# -- SockJSRouter ------------------------------------------------------------------------


async def fallback_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A plain ASGI application behind the router."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    elif scope["type"] == "http":
        body = f"fallback {scope['path']}".encode()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]}
        )
        await send({"type": "http.response.body", "body": body})
    else:
        websocket = StarletteWebSocket(scope, receive, send)
        await websocket.accept()
        await websocket.send_text("fallback")
        await websocket.close()


def services() -> dict[str, SockJSApp]:
    return {
        "/echo": SockJSApp(echo),
        "/close": SockJSApp(go_away),
        "/a": SockJSApp(echo),
        "/a/b": SockJSApp(echo, cookie_needed=True),
    }


async def test_router_routes_each_prefix() -> None:
    router = SockJSRouter(services(), fallback_app)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(router) as client:
            await exercise(client, "/echo")
            url = "/close/000/s"
            assert (await client.request("POST", url + "/xhr")).body == b"o\n"
            assert (await client.request("POST", url + "/xhr")).text == GO_AWAY + "\n"
            # Longest prefix first.
            assert json.loads((await client.request("GET", "/a/b/info")).body)["cookie_needed"] is True
            assert json.loads((await client.request("GET", "/a/info")).body)["cookie_needed"] is False
            assert (await client.request("GET", "/a/b")).text == "Welcome to SockJS!\n"  # /a/b's greeting
            assert (await client.request("GET", "/a/bc/info")).status == 404  # /a's, which has no /bc/info
            # A prefix only matches whole segments.
            for path in ("/echoes", "/echo.html", "/ab/info", "/", "/other/000/s/xhr"):
                response = await client.request("GET", path)
                assert response.text == f"fallback {path}", path
            async with client.websocket("/elsewhere") as socket:
                assert await socket.receive_text() == "fallback"


async def test_router_without_fallback() -> None:
    router = SockJSRouter(services())
    with anyio.fail_after(TIMEOUT):
        async with TestClient(router) as client:
            assert (await client.request("GET", "/echo")).status == 200
            assert (await client.request("GET", "/")).status == 404
            assert (await client.request("GET", "/echoes")).status == 404
            with pytest.raises(WebSocketDenied):
                async with client.websocket("/nowhere") as socket:
                    assert await socket.receive_text() is None


async def test_router_under_a_root_path() -> None:
    router = SockJSRouter(services(), fallback_app)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(with_root_path(router, "/api")) as client:
            await exercise(client, "/api/echo")
            assert (await client.request("GET", "/api/nothing")).text == "fallback /api/nothing"


async def test_router_lifespan_runs_every_service() -> None:
    recorders = {"/one": Recorder(), "/two": Recorder()}
    router = SockJSRouter({prefix: SockJSApp(recorder) for prefix, recorder in recorders.items()}, fallback_app)
    lifespan = Lifespan(router)
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group, TestClient(router, lifespan=False) as client:
            task_group.start_soon(lifespan.run)
            await lifespan.startup()
            async with (
                client.stream("POST", "/one/000/s/xhr_streaming") as one,
                client.stream("POST", "/two/000/s/xhr_streaming") as two,
            ):
                for response in (one, two):
                    assert await response.read() == XHR_STREAMING_PRELUDE
                    assert await response.read() == b"o\n"
                task_group.start_soon(lifespan.shutdown)
                for response in (one, two):
                    assert await read_all(response) == [b'c[1001,"Server shutting down"]\n']
            await lifespan.done.wait()
            assert all(recorder.cancelled == 0 for recorder in recorders.values())


@pytest.mark.parametrize("prefix", ["echo", "/echo/", "", "/"])
async def test_router_refuses_bad_prefixes(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        SockJSRouter({prefix: SockJSApp(echo)})


async def test_router_reports_shutdown_complete_after_its_services() -> None:
    """Starlette answers the lifespan itself; its "shutdown complete" must wait for the SockJS
    services, or the server stops (and cancels them) while they still close their sessions."""
    recorder = Recorder()
    router = SockJSRouter({"/echo": SockJSApp(recorder)}, Starlette())
    lifespan = Lifespan(router)
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group, TestClient(router, lifespan=False) as client:
            task_group.start_soon(lifespan.run)
            await lifespan.startup()
            assert (await client.request("POST", "/echo/000/s/xhr")).body == b"o\n"
            await recorder.opened.wait()
            await lifespan.shutdown()
            assert recorder.finished.is_set()
            assert recorder.connections[0].close_code == 1001

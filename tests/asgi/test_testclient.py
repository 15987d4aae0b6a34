"""sockjs_asgi.testing, the in-process client that the other tests rely on."""

from __future__ import annotations

import gc
import warnings

import anyio
import pytest

from sockjs_asgi.testing import TestClient

from .support import LEAKED_STREAM, TIMEOUT, Receive, Recorder, Scope, Send, echo, go_away, serving

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("transport", ["websocket", "xhr", "xhr_streaming"])
async def test_connect_round_trip(transport: str) -> None:
    recorder = Recorder(echo=True)
    async with serving(recorder) as client, client.connect("", transport=transport) as session:
        await session.send("a", "b")
        assert [await session.receive(), await session.receive()] == ["a", "b"]
        assert recorder.connections[0].transport == transport


@pytest.mark.parametrize("transport", ["websocket", "xhr", "xhr_streaming"])
async def test_connect_sees_the_close_frame(transport: str) -> None:
    async with serving(go_away) as client, client.connect("", transport=transport) as session:
        assert await session.receive() is None
        assert (session.close_code, session.close_reason) == (3000, "Go away!")


@pytest.mark.parametrize("transport", ["websocket", "xhr", "xhr_streaming"])
async def test_connect_keeps_the_query_after_the_session_path(transport: str) -> None:
    recorder = Recorder(echo=True)
    async with serving(recorder) as client, client.connect("/?token=x&b=2", transport=transport) as session:
        await session.send("a")
        assert await session.receive() == "a"
        request = recorder.connections[0].request
        assert request.url.path.endswith("/" + transport)
        assert dict(request.query_params) == {"token": "x", "b": "2"}


async def test_connect_refuses_other_transports() -> None:
    async with serving(echo) as client:
        with pytest.raises(ValueError, match="eventsource"):
            async with client.connect("", transport="eventsource"):
                pass


async def test_stream_reads_chunks_as_sent() -> None:
    async with serving(echo) as client, client.stream("GET", "/000/s/eventsource") as response:
        assert await response.read() == b"\r\n"
        assert await response.read() == b"data: o\r\n\r\n"


async def test_test_client_closes_its_streams() -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", LEAKED_STREAM, ResourceWarning)
        gc.collect()  # what earlier tests left behind
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        async with serving(echo) as client:
            await client.request("GET", "/info")
            async with client.stream("POST", "/000/s/xhr_streaming") as response:
                await response.read()
            async with client.websocket("/websocket") as socket:
                await socket.send_text("x")
                assert await socket.receive_text() == "x"
        del client, response, socket
        gc.collect()
    leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaked == []


async def test_cancelled_request_disconnects() -> None:
    disconnected = anyio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        assert (await receive())["type"] == "http.request"
        if (await receive())["type"] == "http.disconnect":
            disconnected.set()

    with anyio.fail_after(TIMEOUT):
        async with TestClient(app, lifespan=False) as client:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(client.request, "GET", "/")
                await anyio.wait_all_tasks_blocked()
                task_group.cancel_scope.cancel()
            with anyio.fail_after(2):
                await disconnected.wait()

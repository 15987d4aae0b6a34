"""Across connections: app.connections, rooms, broadcast and metrics (README "Across connections")."""

from __future__ import annotations

import anyio
import pytest

from sockjs_asgi import Connection, SockJSApp
from sockjs_asgi.testing import TestClient

from .support import TIMEOUT, XHR_STREAMING_PRELUDE, Recorder, messages_of, read_all, session_url

pytestmark = pytest.mark.anyio


class Rooms(Recorder):
    """Joins the room named by the ``room`` query parameter, if any."""

    async def __call__(self, conn: Connection) -> None:
        room = conn.request.query_params.get("room")
        if room:
            conn.join(room)
        await super().__call__(conn)


async def test_broadcast_reaches_every_transport() -> None:
    recorder = Recorder()
    app = SockJSApp(recorder)
    with anyio.fail_after(TIMEOUT):
        async with (
            TestClient(app) as client,
            client.websocket(session_url() + "/websocket") as socket,
            client.websocket("/websocket") as raw,
            client.stream("POST", session_url() + "/xhr_streaming") as stream,
        ):
            assert await socket.receive_text() == "o"
            assert await stream.read() == XHR_STREAMING_PRELUDE
            assert await stream.read() == b"o\n"
            polled = session_url()
            assert (await client.request("POST", polled + "/xhr")).body == b"o\n"
            await anyio.wait_all_tasks_blocked()
            assert len(app.connections) == 4
            assert await app.broadcast("hi \u2028") == 4
            assert await socket.receive_text() == 'a["hi \\u2028"]'
            assert await raw.receive_text() == "hi \u2028"
            assert await stream.read() == b'a["hi \\u2028"]\n'
            assert (await client.request("POST", polled + "/xhr")).body == b'a["hi \\u2028"]\n'


async def test_broadcast_to_a_room_to_a_list_and_excluding() -> None:
    recorder = Rooms()
    app = SockJSApp(recorder)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(app) as client:
            urls = {name: session_url() for name in ("a", "b", "c")}
            rooms = {"a": "lobby", "b": "lobby", "c": "kitchen"}
            for name, url in urls.items():
                assert (await client.request("POST", f"{url}/xhr?room={rooms[name]}")).body == b"o\n"
            await anyio.wait_all_tasks_blocked()
            by_room = {room: app.room(room) for room in ("lobby", "kitchen")}
            assert len(by_room["lobby"]) == 2 and len(by_room["kitchen"]) == 1
            (kitchen,) = by_room["kitchen"]
            assert kitchen.rooms == frozenset({"kitchen"})
            lobby = sorted(by_room["lobby"], key=lambda conn: conn.id)
            assert await app.broadcast("to the lobby", room="lobby") == 2
            assert await app.broadcast("not to the first", room="lobby", exclude=lobby[0]) == 1
            assert await app.broadcast("to the kitchen", to=[kitchen]) == 1
            with pytest.raises(TypeError):
                await app.broadcast("both", room="lobby", to=[kitchen])
            received = {
                name: messages_of((await client.request("POST", url + "/xhr")).text) for name, url in urls.items()
            }
            assert received["c"] == ["to the kitchen"]
            assert sorted(received["a"] + received["b"]) == ["not to the first", "to the lobby", "to the lobby"]
            kitchen.leave("kitchen")
            assert app.room("kitchen") == frozenset()
            assert await app.broadcast("nobody", room="kitchen") == 0


async def test_closed_connections_leave_rooms_and_are_skipped() -> None:
    recorder = Rooms()
    app = SockJSApp(recorder, disconnect_delay=0.05)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(app) as client:
            assert (await client.request("POST", session_url() + "/xhr?room=r")).body == b"o\n"
            await recorder.opened.wait()
            assert len(app.room("r")) == 1
            await recorder.finished.wait()  # expired
            await anyio.wait_all_tasks_blocked()
            assert app.room("r") == frozenset()
            assert app.connections == frozenset()
            assert await app.broadcast("late") == 0


async def test_a_receiver_far_behind_is_closed_not_buffered_forever() -> None:
    recorder = Recorder()
    app = SockJSApp(recorder, max_pending_size=10)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(app) as client:
            url = session_url()
            assert (await client.request("POST", url + "/xhr")).body == b"o\n"
            await recorder.opened.wait()
            sent = 0
            while await app.broadcast("0123456789") == 1:
                sent += 1
                assert sent < 100
            conn = recorder.connections[0]
            assert conn.is_closed
            assert conn.close_code == 1013
            # What was queued before the close still arrives, then the close frame.
            assert messages_of((await client.request("POST", url + "/xhr")).text) == ["0123456789"] * sent
            assert (await client.request("POST", url + "/xhr")).text == 'c[1013,"Too far behind"]\n'


async def test_broadcast_never_waits_for_a_slow_client() -> None:
    recorder = Recorder()
    app = SockJSApp(recorder, max_pending_size=1000)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(app) as client:
            assert (await client.request("POST", session_url() + "/xhr")).body == b"o\n"
            await recorder.opened.wait()
            # Far more than max_pending_size, queued without waiting: no checkpoint in between.
            with anyio.CancelScope() as scope:
                scope.cancel()
                for _ in range(3):
                    assert await app.broadcast("x" * 1000) == 1


async def test_metrics() -> None:
    recorder = Recorder(echo=True)
    app = SockJSApp(recorder)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(app) as client:
            async with client.websocket(session_url() + "/websocket") as socket:
                assert await socket.receive_text() == "o"
                await socket.send_text('["h\u00e9"]')
                assert await socket.receive_text() == 'a["h\u00e9"]'
                snapshot = app.metrics.snapshot()
                assert snapshot["sessions_open"] == 1
                assert snapshot['sessions_open{transport="websocket"}'] == 1
            await recorder.finished.wait()
            url = session_url()
            async with client.stream("POST", url + "/xhr_streaming") as stream:
                await stream.read()
                await stream.read()
            await anyio.wait_all_tasks_blocked()
    snapshot = app.metrics.snapshot()
    assert snapshot["sessions_total"] == 2
    assert snapshot['sessions_total{transport="websocket"}'] == 1
    assert snapshot['sessions_total{transport="xhr_streaming"}'] == 1
    assert snapshot["sessions_open"] == 0
    assert snapshot["messages_in_total"] == 1
    assert snapshot["messages_out_total"] == 1
    assert snapshot["bytes_in_total"] == 3  # UTF-8 bytes of "hé"
    text = app.metrics.prometheus(labels={"service": "echo"})
    assert "# TYPE sockjs_sessions_total counter" in text
    assert 'sockjs_sessions_total{service="echo",transport="websocket"} 1' in text
    assert 'sockjs_messages_in_total{service="echo"} 1' in text
    assert text.endswith("\n")


async def test_streaming_receiver_gets_broadcasts_as_chunks() -> None:
    recorder = Recorder()
    app = SockJSApp(recorder, response_limit=40)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(app) as client, client.stream("POST", session_url() + "/xhr_streaming") as stream:
            assert await stream.read() == XHR_STREAMING_PRELUDE
            assert await stream.read() == b"o\n"
            await recorder.opened.wait()
            assert await app.broadcast("a" * 40) == 1
            assert await read_all(stream) == [b'a["' + b"a" * 40 + b'"]\n']


async def test_broadcast_encodes_the_message_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import sockjs_asgi._hub
    from sockjs_asgi.protocol.escaping import encode_string as real

    calls: list[str] = []

    def counting(text: str) -> str:
        calls.append(text)
        return real(text)

    monkeypatch.setattr(sockjs_asgi._hub, "encode_string", counting)
    app = SockJSApp(Recorder())
    with anyio.fail_after(TIMEOUT):
        async with TestClient(app) as client:
            urls = [session_url() for _ in range(5)]
            for url in urls:
                assert (await client.request("POST", url + "/xhr")).body == b"o\n"
            await anyio.wait_all_tasks_blocked()
            assert await app.broadcast("once") == 5
            for url in urls:
                assert (await client.request("POST", url + "/xhr")).body == b'a["once"]\n'
    assert calls == ["once"]


async def test_conn_app_is_the_serving_app_on_every_transport() -> None:
    recorder = Recorder()
    app = SockJSApp(recorder)
    with anyio.fail_after(TIMEOUT):
        async with (
            TestClient(app) as client,
            client.websocket(session_url() + "/websocket") as socket,
            client.websocket("/websocket"),
        ):
            assert await socket.receive_text() == "o"
            assert (await client.request("POST", session_url() + "/xhr")).body == b"o\n"
            await anyio.wait_all_tasks_blocked()
            assert sorted(conn.transport for conn in recorder.connections) == ["raw_websocket", "websocket", "xhr"]
            assert all(conn.app is app for conn in recorder.connections)


async def test_two_instances_of_a_handler_broadcast_each_to_its_own_service() -> None:
    """The chat example's handler broadcasts through conn.app: two services built from it in
    one process keep their rooms apart, with no global to patch."""
    import json

    from examples.chat.app import chat

    first, second = SockJSApp(chat), SockJSApp(chat)
    with anyio.fail_after(TIMEOUT):
        async with (
            TestClient(first) as client_one,
            TestClient(second) as client_two,
            client_one.connect("/?name=ann", transport="websocket") as ann,
            client_two.connect("/?name=bob", transport="xhr_streaming") as bob,
        ):
            assert json.loads(await ann.receive() or "") == {"kind": "joined", "name": "ann", "transport": "websocket"}
            assert json.loads(await bob.receive() or "")["name"] == "bob"
            await ann.send("only for the first service")
            assert json.loads(await ann.receive() or "")["text"] == "only for the first service"
            await bob.send("only for the second")
            assert json.loads(await bob.receive() or "")["text"] == "only for the second"
            await ann.send("again")
            assert json.loads(await ann.receive() or "")["text"] == "again"  # nothing of bob's came first
            assert len(first.connections) == len(second.connections) == 1

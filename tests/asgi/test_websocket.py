"""The SockJS websocket transport and the raw /websocket endpoint (PROTOCOL.md 6)."""

from __future__ import annotations

import anyio
import pytest

from sockjs_asgi import Connection, ConnectionClosed
from sockjs_asgi.testing import WebSocket

from .support import GO_AWAY, TIMEOUT, Recorder, closed_by_another_task, echo, go_away, serving, session_url

pytestmark = pytest.mark.anyio


async def frames_until_closed(socket: WebSocket) -> list[str]:
    frames = []
    with anyio.fail_after(TIMEOUT):
        while (frame := await socket.receive_text()) is not None:
            frames.append(frame)
    return frames


async def test_open_frame_then_messages() -> None:
    """sockjs-protocol Websocket.test_transport."""
    async with serving(echo) as client, client.websocket(session_url() + "/websocket") as socket:
        assert await socket.receive_text() == "o"
        await socket.send_text('["a"]')
        assert await socket.receive_text() == 'a["a"]'
        await socket.send_text('["b"]')
        assert await socket.receive_text() == 'a["b"]'


async def test_several_messages_in_one_websocket_message() -> None:
    recorder = Recorder()
    async with serving(recorder) as client, client.websocket(session_url() + "/websocket") as socket:
        assert await socket.receive_text() == "o"
        await socket.send_text('["a","b","c"]')
        assert await recorder.wait_for(3) == ["a", "b", "c"]


async def test_queued_messages_go_out_in_one_frame() -> None:
    sent = anyio.Event()
    go_on = anyio.Event()

    async def three(conn: Connection) -> None:
        await go_on.wait()
        for message in ("a", "b", "c"):
            await conn.send(message)
        sent.set()
        async for _ in conn:
            pass

    async with serving(three) as client, client.websocket(session_url() + "/websocket") as socket:
        assert await socket.receive_text() == "o"
        go_on.set()
        await sent.wait()
        assert await socket.receive_text() == 'a["a","b","c"]'


async def test_empty_message_and_empty_array_are_ignored() -> None:
    recorder = Recorder(echo=True)
    async with serving(recorder) as client, client.websocket(session_url() + "/websocket") as socket:
        assert await socket.receive_text() == "o"
        await socket.send_text("")
        await socket.send_text("[]")
        await socket.send_text('["x"]')
        assert await socket.receive_text() == 'a["x"]'
        assert recorder.messages == ["x"]
        assert not recorder.finished.is_set()


@pytest.mark.parametrize("text", ['["x', "not json", "[1", '{"a":'])
async def test_broken_json_closes_the_socket(text: str) -> None:
    recorder = Recorder()
    async with serving(recorder) as client, client.websocket(session_url() + "/websocket") as socket:
        assert await socket.receive_text() == "o"
        await socket.send_text(text)
        assert await frames_until_closed(socket) == []  # no c frame, just the close (node)
        assert socket.close_code == 3000
        assert socket.close_reason == "Broken framing."
        await recorder.finished.wait()
        assert recorder.connections[0].is_closed
        assert recorder.messages == []


async def test_close_frame_then_socket_close() -> None:
    async def close(conn: Connection) -> None:
        await conn.close(3001, "bye")

    async with serving(close) as client, client.websocket(session_url() + "/websocket") as socket:
        assert await frames_until_closed(socket) == ["o", 'c[3001,"bye"]']
        assert socket.close_code is not None


async def test_handler_return_closes_with_go_away() -> None:
    async with serving(go_away) as client, client.websocket(session_url() + "/websocket") as socket:
        assert await frames_until_closed(socket) == ["o", GO_AWAY]


async def test_heartbeat() -> None:
    async with serving(echo, heartbeat_delay=0.05) as client, client.websocket(session_url() + "/websocket") as socket:
        assert await socket.receive_text() == "o"
        assert await socket.receive_text() == "h"
        assert await socket.receive_text() == "h"


@pytest.mark.parametrize("lifespan", [True, False], ids=["one-task-for-all", "own-timeout"])
async def test_heartbeat_with_and_without_run(lifespan: bool) -> None:
    """Heartbeats come from one task of ``run()`` for every parked pump, or, with no ``run()``
    active, from each pump's own timeout: about every ``heartbeat_delay`` either way."""
    async with (
        serving(echo, heartbeat_delay=0.05, lifespan=lifespan) as client,
        client.websocket(session_url() + "/websocket") as socket,
    ):
        assert await socket.receive_text() == "o"
        started = anyio.current_time()
        for _ in range(3):
            assert await socket.receive_text() == "h"
        # Three heartbeats take at least three delays, and at most 1.25 delays each (plus
        # scheduling, generously bounded).
        assert 0.15 <= anyio.current_time() - started < 1.0


async def test_websocket_sessions_are_private() -> None:
    """Same session id on two sockets: two independent sessions, unknown to xhr_send."""
    recorder = Recorder(echo=True)
    url = session_url()
    async with (
        serving(recorder) as client,
        client.websocket(url + "/websocket") as one,
        client.websocket(url + "/websocket") as two,
    ):
        assert await one.receive_text() == "o"
        assert await two.receive_text() == "o"
        await one.send_text('["for one"]')
        assert await one.receive_text() == 'a["for one"]'
        await two.send_text('["for two"]')
        assert await two.receive_text() == 'a["for two"]'
        assert len(recorder.connections) == 2
        assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 404
        # An HTTP receiver with the same id opens a third, independent session.
        assert (await client.request("POST", url + "/xhr")).body == b"o\n"
        assert (await client.request("POST", url + "/xhr_send", body=b'["http"]')).status == 204
        assert (await client.request("POST", url + "/xhr")).body == b'a["http"]\n'
        await one.send_text('["again"]')
        assert await one.receive_text() == 'a["again"]'


async def test_session_id_reusable_after_close() -> None:
    url = session_url()
    async with serving(echo) as client:
        for _ in range(2):
            async with client.websocket(url + "/websocket") as socket:
                assert await socket.receive_text() == "o"
                await socket.send_text('["x"]')
                assert await socket.receive_text() == 'a["x"]'
                await socket.close()


async def test_client_close_ends_the_session_at_once() -> None:
    recorder = Recorder()
    async with serving(recorder, disconnect_delay=3600) as client:
        async with client.websocket(session_url() + "/websocket") as socket:
            assert await socket.receive_text() == "o"
            await recorder.opened.wait()
            await socket.close()
        await recorder.finished.wait()  # no disconnect_delay for websockets
        assert recorder.connections[0].is_closed


async def test_connection_attributes() -> None:
    recorder = Recorder()
    session_id = "secret-session-id"
    async with (
        serving(recorder) as client,
        client.websocket(f"/000/{session_id}/websocket?x=1", headers={"X-Token": "t"}) as socket,
    ):
        assert await socket.receive_text() == "o"
        await recorder.opened.wait()
        conn = recorder.connections[0]
        assert conn.transport == "websocket"
        assert conn.request.headers["x-token"] == "t"
        assert conn.request.query_params["x"] == "1"
        assert not conn.is_closed
        assert conn.close_code is None
        # The session id is a secret between client and server (PROTOCOL.md 1).
        assert session_id not in conn.id and session_id not in repr(conn)


async def test_send_after_close_raises() -> None:
    errors: list[BaseException] = []
    done = anyio.Event()

    async def handler(conn: Connection) -> None:
        await conn.close(3002, "closed")
        for attempt in (conn.send("late"), conn.receive()):
            try:
                await attempt
            except ConnectionClosed as exc:
                errors.append(exc)
        done.set()

    async with serving(handler) as client, client.websocket(session_url() + "/websocket") as socket:
        assert await frames_until_closed(socket) == ["o", 'c[3002,"closed"]']
        await done.wait()
        assert len(errors) == 2


async def test_unknown_websocket_path_is_refused() -> None:
    from sockjs_asgi.testing import WebSocketDenied

    async with serving(echo) as client:
        for path in ("/000/s/xhr", "/a/websocket", "/info", "/000/s./websocket"):
            with pytest.raises(WebSocketDenied) as denied:
                async with client.websocket(path):
                    pass
            assert denied.value.status == 404


# -- raw websocket -----------------------------------------------------------------------


async def test_raw_websocket_is_verbatim() -> None:
    """sockjs-protocol RawWebsocket.test_transport: no o, no framing, both ways."""
    recorder = Recorder(echo=True)
    async with serving(recorder) as client, client.websocket("/websocket") as socket:
        for text in ("Hello world!\uffff", '["not", "an array"]', "", 'c[3000,"x"]'):
            await socket.send_text(text)
            assert await socket.receive_text() == text
        assert recorder.messages == ["Hello world!\uffff", '["not", "an array"]', "", 'c[3000,"x"]']
        assert recorder.connections[0].transport == "raw_websocket"


async def test_raw_websocket_application_close_reaches_the_client() -> None:
    """sockjs-protocol RawWebsocket.test_close."""

    async def close(conn: Connection) -> None:
        await conn.close(4002, "Custom reason")

    async with serving(close) as client, client.websocket("/websocket") as socket:
        assert await socket.receive_text() is None
        assert (socket.close_code, socket.close_reason) == (4002, "Custom reason")


async def test_raw_websocket_handler_return_is_go_away() -> None:
    async with serving(go_away) as client, client.websocket("/websocket") as socket:
        assert await socket.receive_text() is None
        assert (socket.close_code, socket.close_reason) == (3000, "Go away!")


async def test_raw_websocket_sends_no_heartbeat() -> None:
    async def slow(conn: Connection) -> None:
        await anyio.sleep(0.2)  # four heartbeat delays
        await conn.send("after")

    async with serving(slow, heartbeat_delay=0.05) as client, client.websocket("/websocket") as socket:
        assert await socket.receive_text() == "after"


async def test_raw_websocket_client_close_ends_the_handler() -> None:
    recorder = Recorder()
    async with serving(recorder) as client:
        async with client.websocket("/websocket?q=1") as socket:
            await socket.send_text("one")
            assert await recorder.wait_for(1) == ["one"]
            await socket.close(1001, "leaving")
        await recorder.finished.wait()
        conn = recorder.connections[0]
        assert conn.is_closed
        assert conn.close_code == 1001


async def test_raw_websocket_send_after_close_raises() -> None:
    errors: list[BaseException] = []
    done = anyio.Event()

    async def handler(conn: Connection) -> None:
        await conn.close(3000, "Go away!")
        try:
            await conn.send("late")
        except ConnectionClosed as exc:
            errors.append(exc)
        done.set()

    async with serving(handler) as client, client.websocket("/websocket") as socket:
        assert await socket.receive_text() is None
        await done.wait()
        assert len(errors) == 1


async def test_receive_ends_when_the_server_closes_a_session_websocket() -> None:
    """A handler waiting for a message sees the loop end when the connection closes, also when
    another task closed it: the wait for the client's next message ends with its answer to the
    close."""
    loop_ended = anyio.Event()
    close_now = anyio.Event()
    handler = closed_by_another_task(close_now, [], loop_ended)

    async with serving(handler) as client, client.websocket(session_url() + "/websocket") as socket:
        assert await socket.receive_text() == "o"
        close_now.set()
        assert await frames_until_closed(socket) == ['c[4000,"bye"]']
        with anyio.fail_after(2):
            await loop_ended.wait()


async def test_receive_ends_when_the_server_closes_a_raw_websocket() -> None:
    loop_ended = anyio.Event()
    close_now = anyio.Event()
    handler = closed_by_another_task(close_now, [], loop_ended)

    async with serving(handler) as client, client.websocket("/websocket") as socket:
        close_now.set()
        assert await socket.receive_text() is None
        assert (socket.close_code, socket.close_reason) == (4000, "bye")
        with anyio.fail_after(2):
            await loop_ended.wait()


@pytest.mark.parametrize("raw", [False, True], ids=["websocket", "raw_websocket"])
async def test_every_way_of_taking_messages_takes_the_next_one(raw: bool) -> None:
    """``receive()``, ``anext(conn)``, ``async for`` over the connection and over ``aiter(conn)``
    take from the same stream, in order; once the client is gone, the iterations end and
    ``receive()`` raises."""
    got: list[str] = []
    ends: list[str] = []
    done = anyio.Event()

    async def handler(conn: Connection) -> None:
        got.append(await conn.receive())
        got.append(await anext(conn))
        async for message in conn:
            got.append(message)
            break
        async for message in aiter(conn):
            got.append(message)
            break
        await conn.send("taken")
        async for message in conn:
            got.append(message)
        try:
            await anext(conn)
        except StopAsyncIteration:
            ends.append("anext")
        try:
            await conn.receive()
        except ConnectionClosed:
            ends.append("receive")
        done.set()

    path = "/websocket" if raw else session_url() + "/websocket"
    async with serving(handler) as client, client.websocket(path) as socket:
        if not raw:
            assert await socket.receive_text() == "o"
        for message in "abcde":
            await socket.send_text(message if raw else f'["{message}"]')
        assert await socket.receive_text() == ("taken" if raw else 'a["taken"]')
        await socket.close()
        with anyio.fail_after(TIMEOUT):
            await done.wait()
    assert got == list("abcde")
    assert ends == ["anext", "receive"]

"""xhr-polling (PROTOCOL.md 5.2, 7): frames, queueing, heartbeats, one receiver, close, expiry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import pytest

from sockjs_asgi import Connection, SockJSApp
from sockjs_asgi.testing import Response, TestClient

from .support import (
    ANOTHER_CONNECTION,
    GO_AWAY,
    JAVASCRIPT,
    NO_CACHE,
    TIMEOUT,
    Recorder,
    echo,
    go_away,
    header,
    http_scope,
    messages_of,
    serving,
    session_url,
)

pytestmark = pytest.mark.anyio


async def poll(client: TestClient, url: str) -> str:
    response = await client.request("POST", url + "/xhr")
    assert response.status == 200
    return response.text


async def test_new_session_gets_open_frame() -> None:
    async with serving(echo) as client:
        response = await client.request("POST", session_url() + "/xhr")
        assert response.status == 200
        assert response.body == b"o\n"
        assert header(response, "content-type") == JAVASCRIPT
        assert header(response, "cache-control") == NO_CACHE
        assert header(response, "expires") is None
        assert header(response, "last-modified") is None
        assert header(response, "access-control-allow-origin") == "*"


async def test_simple_session() -> None:
    """sockjs-protocol Protocol.test_simpleSession, without its sleep."""
    async with serving(echo) as client:
        url = session_url()
        assert await poll(client, url) == "o\n"
        response = await client.request("POST", url + "/xhr_send", body=b'["a"]')
        assert (response.status, response.body) == (204, b"")
        assert await poll(client, url) == 'a["a"]\n'


async def test_open_frame_only_once() -> None:
    async with serving(echo, heartbeat_delay=0.05) as client:
        url = session_url()
        assert await poll(client, url) == "o\n"
        for _ in range(3):
            assert await poll(client, url) == "h\n"


async def test_queued_messages_go_out_in_one_frame() -> None:
    sent = anyio.Event()

    async def three(conn: Connection) -> None:
        for message in ("a", "b", "c"):
            await conn.send(message)
        sent.set()
        async for _ in conn:
            pass

    async with serving(three) as client:
        url = session_url()
        assert await poll(client, url) == "o\n"
        await sent.wait()
        assert await poll(client, url) == 'a["a","b","c"]\n'


async def test_heartbeat_after_heartbeat_delay() -> None:
    async with serving(echo, heartbeat_delay=0.05) as client:
        url = session_url()
        assert await poll(client, url) == "o\n"
        assert await poll(client, url) == "h\n"
        # The session is still usable after a heartbeat.
        assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 204
        assert await poll(client, url) == 'a["x"]\n'


async def test_second_receiver_gets_2010_and_first_is_undisturbed() -> None:
    async with serving(echo) as client:
        url = session_url()
        assert await poll(client, url) == "o\n"
        first: list[Response] = []

        async def waiting_poll() -> None:
            first.append(await client.request("POST", url + "/xhr"))

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(waiting_poll)
            await anyio.wait_all_tasks_blocked()  # the first poll is attached and waiting
            second = await client.request("POST", url + "/xhr")
            assert second.status == 200
            assert second.text == ANOTHER_CONNECTION + "\n"
            assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 204
        assert first[0].text == 'a["x"]\n'
        # 2010 did not close the session.
        assert (await client.request("POST", url + "/xhr_send", body=b'["y"]')).status == 204
        assert await poll(client, url) == 'a["y"]\n'


async def test_close_frame_is_replayed() -> None:
    """sockjs-protocol Protocol.test_closeSession."""
    async with serving(go_away) as client:
        url = session_url()
        assert await poll(client, url) == "o\n"
        assert await poll(client, url) == GO_AWAY + "\n"
        assert await poll(client, url) == GO_AWAY + "\n"


async def test_application_close_code_and_reason_are_replayed() -> None:
    async def close(conn: Connection) -> None:
        await conn.close(4001, 'custom "reason" \u2028')

    async with serving(close) as client:
        url = session_url()
        assert await poll(client, url) == "o\n"
        for _ in range(2):
            assert await poll(client, url) == 'c[4001,"custom \\"reason\\" \\u2028"]\n'


async def test_queued_messages_go_out_before_the_close_frame() -> None:
    async def farewell(conn: Connection) -> None:
        await conn.send("bye")
        await conn.close(3001, "done")

    async with serving(farewell) as client:
        url = session_url()
        assert await poll(client, url) == "o\n"
        assert await poll(client, url) == 'a["bye"]\n'
        assert await poll(client, url) == 'c[3001,"done"]\n'


async def test_expired_session_is_forgotten() -> None:
    recorder = Recorder()
    async with serving(recorder, disconnect_delay=0.05) as client:
        url = session_url()
        assert await poll(client, url) == "o\n"
        await recorder.finished.wait()  # the session expired: the handler's loop ended
        assert recorder.connections[0].is_closed
        assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 404
        # The same id now opens a brand-new session.
        assert await poll(client, url) == "o\n"
        await recorder.opened.wait()
        assert len(recorder.connections) == 2


async def test_session_alive_while_polled_within_disconnect_delay() -> None:
    """A poll that returns a heartbeat restarts the expiry timer: heartbeats shorter than
    disconnect_delay keep the session open however long it is polled."""
    recorder = Recorder()
    async with serving(recorder, heartbeat_delay=0.01, disconnect_delay=0.3) as client:
        url = session_url()
        assert await poll(client, url) == "o\n"
        for _ in range(40):  # at least 0.4 s of polling, longer than disconnect_delay
            assert await poll(client, url) == "h\n"
        assert not recorder.finished.is_set()
        assert (await client.request("POST", url + "/xhr_send", body=b'["still here"]')).status == 204
        assert await recorder.wait_for(1) == ["still here"]


async def test_messages_from_the_application_are_never_lost() -> None:
    """Many sends, several polls: each message exactly once, in order.  A small
    max_pending_size makes send() wait for the client, so the queue is drained by many polls."""
    count = 300

    async def producer(conn: Connection) -> None:
        for number in range(count):
            await conn.send(str(number))
        async for _ in conn:
            pass

    async with serving(producer, max_pending_size=64) as client:
        url = session_url()
        assert await poll(client, url) == "o\n"
        received: list[str] = []
        polls = 0
        with anyio.fail_after(TIMEOUT):
            while len(received) < count:
                received += messages_of(await poll(client, url))
                polls += 1
        assert received == [str(number) for number in range(count)]
        assert polls > 1


async def test_messages_from_the_client_are_never_lost() -> None:
    recorder = Recorder()
    async with serving(recorder, max_incoming_messages=4) as client:
        url = session_url()
        assert await poll(client, url) == "o\n"
        expected: list[str] = []
        for batch in range(30):
            messages = [f"{batch}-{index}" for index in range(batch % 7)]
            expected += messages
            body = ("[" + ",".join(f'"{m}"' for m in messages) + "]").encode()
            assert (await client.request("POST", url + "/xhr_send", body=body)).status == 204
        assert await recorder.wait_for(len(expected)) == expected


async def test_echo_round_trips_interleaved() -> None:
    async with serving(echo) as client:
        url = session_url()
        assert await poll(client, url) == "o\n"
        received: list[str] = []
        for number in range(20):
            assert (await client.request("POST", url + "/xhr_send", body=f'["{number}"]'.encode())).status == 204
            with anyio.fail_after(TIMEOUT):
                while len(received) <= number:
                    received += messages_of(await poll(client, url))
        assert received == [str(number) for number in range(20)]


async def test_unicode_escaping_of_server_frames() -> None:
    """sockjs-protocol JSONEncoding.test_xhr_server_encodes: these characters go out escaped."""
    ranges = [(0x200C, 0x200F), (0x2028, 0x202F), (0x2060, 0x206F), (0xFFF0, 0xFFFF)]
    text = "".join(chr(code) for low, high in ranges for code in range(low, high + 1))
    async with serving(echo) as client:
        url = session_url()
        assert await poll(client, url) == "o\n"
        body = ('["' + text + '"]').encode()
        assert (await client.request("POST", url + "/xhr_send", body=body)).status == 204
        frame = await poll(client, url)
        escaped = "".join(f"\\u{ord(char):04x}" for char in text)
        assert frame == 'a["' + escaped + '"]\n'


async def test_client_escapes_are_decoded() -> None:
    """sockjs-protocol JSONEncoding.test_xhr_server_decodes (values compared, not bytes)."""
    recorder = Recorder()
    async with serving(recorder) as client:
        url = session_url()
        assert await poll(client, url) == "o\n"
        body = b'["\\u0000\\u001f\\"\\\\\\u00ad\\u0600\\ufeff\\ud83d\\ude00\\udc00"]'
        assert (await client.request("POST", url + "/xhr_send", body=body)).status == 204
        assert await recorder.wait_for(1) == ['\x00\x1f"\\\xad\u0600\ufeff\U0001f600\udc00']


async def test_lone_surrogate_goes_out_escaped() -> None:
    async with serving(echo) as client:
        url = session_url()
        assert await poll(client, url) == "o\n"
        assert (await client.request("POST", url + "/xhr_send", body=b'["\\ud800"]')).status == 204
        assert await poll(client, url) == 'a["\\ud800"]\n'


async def test_without_lifespan_the_request_hosts_the_session() -> None:
    recorder = Recorder(echo=True)
    async with serving(recorder, lifespan=False) as client:
        url = session_url()
        assert await poll(client, url) == "o\n"
        assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 204
        assert await poll(client, url) == 'a["x"]\n'


@pytest.mark.parametrize("lifespan", [True, False])
async def test_open_frame_does_not_wait_for_the_handler(lifespan: bool) -> None:
    """PROTOCOL.md 11.3: send "o" before running any slow application code."""
    release = anyio.Event()

    async def slow(conn: Connection) -> None:
        await release.wait()
        async for message in conn:
            await conn.send(message)

    async with serving(slow, lifespan=lifespan) as client:
        url = session_url()
        assert await poll(client, url) == "o\n"
        async with client.websocket(session_url() + "/websocket") as socket:
            assert await socket.receive_text() == "o"
        assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 204
        release.set()
        assert await poll(client, url) == 'a["x"]\n'


async def _poll(app: SockJSApp, path: str, on_last_body: Callable[[], Awaitable[None]] | None = None) -> bytes:
    """One xhr poll driven by hand, so that the next poll can start inside the send of this
    one's last body message, before the application's code after that send has run."""
    scope = http_scope("POST", path, client=("127.0.0.1", 1), server=("127.0.0.1", 2))
    body: list[bytes] = []
    done = anyio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body":
            body.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()
                if on_last_body is not None:
                    await on_last_body()

    await app(scope, receive, send)
    return b"".join(body)


async def test_a_poll_sent_as_soon_as_the_answer_is_out_is_not_refused() -> None:
    """A fast client polls again as soon as it has the previous answer: the receiver must have
    detached by then, or the new poll gets c[2010,...] (seen with a browser under hypercorn)."""
    app = SockJSApp(echo, heartbeat_delay=0.05)
    url = session_url() + "/xhr"
    next_poll: list[bytes] = []

    with anyio.fail_after(TIMEOUT):
        async with app.run(), anyio.create_task_group() as task_group:

            async def poll_again() -> None:
                next_poll.append(await _poll(app, url))

            async def start_next_poll() -> None:
                # Let the next poll run until it waits, before this send returns.
                task_group.start_soon(poll_again)
                await anyio.wait_all_tasks_blocked()

            assert await _poll(app, url) == b"o\n"
            assert await _poll(app, url, on_last_body=start_next_poll) == b"h\n"
    assert next_poll == [b"h\n"]

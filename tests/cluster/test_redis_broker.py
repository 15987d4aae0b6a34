"""RedisBroker against a real redis-server: several apps in this process, each with a broker of
its own on one channel, stand for the processes of a service.

redis-py's asyncio client runs on asyncio only, so these tests run on asyncio, except the ones
that check the clear refusal on trio.  They live here rather than in tests/integration, which
runs after the browser tests, whose session-wide Playwright driver keeps an event loop running
in the main thread.
"""

from __future__ import annotations

import logging
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest
from examples.cluster.launch import Redis, start_on_a_free_port

from sockjs_asgi import Connection, RedisBroker, SockJSApp
from sockjs_asgi._types import Message
from sockjs_asgi.testing import ClientSession, TestClient

TIMEOUT = 10.0

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        shutil.which("redis-server") is None, reason="needs Debian's redis-server (.ci/run installs it)"
    ),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py's asyncio client; see test_refused_on_trio


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Redis]:
    server = Redis("redis", 0, tmp_path / "redis.log")
    start_on_a_free_port(server, server.start)
    try:
        yield server
    finally:
        server.stop()


async def member(conn: Connection) -> None:
    async for message in conn:
        if message.startswith("join:"):
            conn.join(message[5:])
            await conn.send("joined")


def broker(url: str, channel: str = "test", connect_timeout: float = 5.0) -> RedisBroker:
    return RedisBroker(
        url, channel=channel, reconnect_delay=0.05, max_reconnect_delay=0.2, connect_timeout=connect_timeout
    )


@asynccontextmanager
async def instances(url: str, count: int) -> AsyncIterator[list[tuple[SockJSApp, TestClient]]]:
    async with AsyncExitStack() as stack:
        pairs = []
        for _ in range(count):
            app = SockJSApp(member, broker=broker(url))
            pairs.append((app, await stack.enter_async_context(TestClient(app))))
        yield pairs


async def receive_all(session: ClientSession, count: int) -> list[str]:
    received: list[str] = []
    for _ in range(count):
        message = await session.receive()
        assert message is not None, f"closed after {received}"
        received.append(message)
    return received


async def eventually(condition: Callable[[], bool]) -> None:
    # The broker's state has no event to wait on from outside: poll, bounded by the caller.
    while not condition():  # noqa: ASYNC110
        await anyio.sleep(0.01)


async def test_broadcasts_reach_every_process_once_in_order(redis_server: Redis) -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            instances(redis_server.url, 3) as pairs,
            pairs[0][1].connect(transport="websocket") as first,
            pairs[1][1].connect(transport="xhr_streaming") as second,
            pairs[2][1].connect(transport="xhr") as third,
        ):
            (app1, _), (app2, _), _ = pairs
            for number in range(200):
                await app1.broadcast(f"one {number}")
                await app2.broadcast(f"two {number}")
            sessions = (first, second, third)
            for session in sessions:
                received = await receive_all(session, 400)
                assert [text for text in received if text.startswith("one")] == [f"one {n}" for n in range(200)]
                assert [text for text in received if text.startswith("two")] == [f"two {n}" for n in range(200)]
            # Nothing more: no process delivered its own publication a second time.
            await app1.broadcast("last")
            for session in sessions:
                assert await session.receive() == "last"
            assert app1.metrics.broker_published == 201 and app1.metrics.broker_dropped == 0


async def test_rooms_across_processes(redis_server: Redis) -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            instances(redis_server.url, 2) as [(app1, client1), (_app2, client2)],
            client1.connect(transport="websocket") as lobby_here,
            client2.connect(transport="websocket") as lobby_there,
            client2.connect(transport="websocket") as elsewhere,
        ):
            for session in (lobby_here, lobby_there):
                await session.send("join:lobby")
                assert await session.receive() == "joined"
            (sender,) = app1.room("lobby")
            await app1.broadcast("lobby", room="lobby")
            await app1.broadcast("others", room="lobby", exclude=sender)
            await app1.broadcast("all")
            assert await receive_all(lobby_here, 2) == ["lobby", "all"]
            assert await receive_all(lobby_there, 3) == ["lobby", "others", "all"]
            assert await elsewhere.receive() == "all"


async def test_an_outage_keeps_local_delivery_and_recovers(
    redis_server: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "sockjs_asgi")
    with anyio.fail_after(TIMEOUT):
        async with (
            instances(redis_server.url, 2) as [(app1, client1), (app2, client2)],
            client1.connect(transport="websocket") as here,
            client2.connect(transport="xhr_streaming") as there,
        ):
            await app1.broadcast("before")
            assert await here.receive() == "before" and await there.receive() == "before"

            redis_server.stop()
            await eventually(lambda: not app1.metrics.broker_connected and not app2.metrics.broker_connected)
            assert await app1.broadcast("during") == 1  # no exception; this process still gets it
            assert await here.receive() == "during"
            assert app1.metrics.broker_dropped == 1

            redis_server.start()
            await eventually(lambda: bool(app1.metrics.broker_connected and app2.metrics.broker_connected))
            await app1.broadcast("after")
            await app2.broadcast("after, from the other side")
            # Two senders: each one's order is kept, not one order between them.
            after = {"after", "after, from the other side"}
            assert set(await receive_all(here, 2)) == after
            assert set(await receive_all(there, 2)) == after  # and "during" never arrives late
            assert app1.metrics.broker_reconnects == 1 and app2.metrics.broker_reconnects == 1
    assert "no connection to Redis" in caplog.text
    assert "1 broadcasts did not reach the other processes" in caplog.text


async def test_redis_down_at_start(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.WARNING, "sockjs_asgi")
    # Bound and not listening: the broker's connections are refused, as with no server, and no
    # other program can take the port before Redis does.
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        app = SockJSApp(member, broker=broker(f"redis://127.0.0.1:{port}/0", connect_timeout=0.5))
        with anyio.fail_after(TIMEOUT):
            async with TestClient(app) as client, client.connect(transport="websocket") as session:
                assert not app.metrics.broker_connected
                assert await app.broadcast("local only") == 1
                assert await session.receive() == "local only"
                server = Redis("redis", port, tmp_path / "redis.log")
                placeholder.close()
                server.start()  # comes up later: the broker finds it by itself
                try:
                    await eventually(lambda: bool(app.metrics.broker_connected))
                finally:
                    server.stop()
    assert app.metrics.broker_dropped == 1
    assert "no connection to Redis" in caplog.text


async def test_one_broker_serves_one_app(redis_server: Redis) -> None:
    shared = broker(redis_server.url)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(SockJSApp(member, broker=shared)):
            with pytest.raises(RuntimeError, match="its own RedisBroker"):
                async with SockJSApp(member, broker=shared).run():
                    pass


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="redis://"):
        RedisBroker("http://127.0.0.1:6379")
    with pytest.raises(ValueError, match="channel"):
        RedisBroker("redis://127.0.0.1", channel="")
    with pytest.raises(ValueError, match="max_queued"):
        RedisBroker("redis://127.0.0.1", max_queued=0)
    with pytest.raises(ValueError, match="reconnect_delay"):
        RedisBroker("redis://127.0.0.1", reconnect_delay=-1)
    assert "secret" not in repr(RedisBroker("rediss://:secret@redis.example:6380/1"))


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_refused_on_trio() -> None:
    """redis-py's asyncio client cannot run on trio: the app says so when it starts."""
    app = SockJSApp(member, broker=RedisBroker("redis://127.0.0.1:6379/0"))
    with pytest.raises(RuntimeError, match="asyncio only"):
        async with app.run():
            pass


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_server_on_trio_is_told_why_startup_failed() -> None:
    app = SockJSApp(member, broker=RedisBroker("redis://127.0.0.1:6379/0"))
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        sent.append(message)

    with pytest.raises(RuntimeError):
        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert [message["type"] for message in sent] == ["lifespan.startup.failed"]
    assert "asyncio only" in sent[0]["message"]


async def test_publications_beyond_max_queued_are_dropped_and_counted(redis_server: Redis) -> None:
    sender = SockJSApp(member, broker=RedisBroker(redis_server.url, channel="test", max_queued=1))
    with anyio.fail_after(TIMEOUT):
        async with (
            TestClient(sender),
            instances(redis_server.url, 1) as [(_other, client)],
            client.connect(transport="websocket") as there,
        ):
            await anyio.wait_all_tasks_blocked()
            # Three broadcasts before the publishing task runs: one fits in the queue.
            for text in ("first", "second", "third"):
                await sender.broadcast(text)
            assert sender.metrics.broker_dropped == 2
            await eventually(lambda: sender.metrics.broker_published == 1)  # the queue is empty again
            await sender.broadcast("after a pause")
            assert await receive_all(there, 2) == ["first", "after a pause"]


class Blackhole:
    """A TCP relay to Redis that can stop passing bytes without closing anything, as a network
    partition does: no FIN, no RST, only silence."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.passing = anyio.Event()
        self.passing.set()
        self.port = 0

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        async with listener:
            self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
            task_status.started()
            await listener.serve(self._relay)

    async def _relay(self, client: anyio.abc.SocketStream) -> None:
        async with client, await anyio.connect_tcp("127.0.0.1", self.target) as server:

            async def pump(source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream) -> None:
                async for data in source:
                    await self.passing.wait()
                    await sink.send(data)

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(pump, client, server)
                await pump(server, client)
                task_group.cancel_scope.cancel()


async def test_a_silent_connection_is_noticed_by_ping_and_replaced(redis_server: Redis) -> None:
    blackhole = Blackhole(redis_server.port)
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group:
            await task_group.start(blackhole.serve)
            url = f"redis://127.0.0.1:{blackhole.port}/0"
            silent = SockJSApp(
                member,
                broker=RedisBroker(url, channel="test", health_check_interval=0.2, reconnect_delay=0.05),
            )
            async with TestClient(silent):
                await eventually(lambda: bool(silent.metrics.broker_connected))
                blackhole.passing = anyio.Event()  # from now on, nothing passes either way
                await eventually(lambda: not silent.metrics.broker_connected)
                assert silent.metrics.broker_reconnects == 1
                blackhole.passing.set()  # the network is back: new connections pass again
                await eventually(lambda: bool(silent.metrics.broker_connected))
            task_group.cancel_scope.cancel()


async def test_a_broadcast_outside_run_is_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    app = SockJSApp(member, broker=RedisBroker("redis://127.0.0.1:6379/0"))
    caplog.set_level(logging.WARNING, "sockjs_asgi")
    assert await app.broadcast("nobody") == 0
    assert await app.broadcast("nobody again") == 0
    assert app.metrics.broker_dropped == 2
    assert caplog.text.count("outside SockJSApp.run()") == 1

"""Brokers in one process: several apps on one MemoryBroker behave as the processes of one
service would on Redis (tests/cluster/test_redis_broker.py runs the same over Redis)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Collection
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockjs_asgi import BrokerLink, Connection, MemoryBroker, Metrics, SockJSApp
from sockjs_asgi._broker import BROADCAST, Deliver, decode_broadcast, encode_broadcast
from sockjs_asgi.testing import ClientSession, TestClient

from .support import TIMEOUT

pytestmark = pytest.mark.anyio


async def member(conn: Connection) -> None:
    """Joins the rooms its client names with ``join:<room>``; says ``joined`` when it did."""
    async for message in conn:
        if message.startswith("join:"):
            conn.join(message[5:])
            await conn.send("joined")


async def receive_all(session: ClientSession, count: int) -> list[str]:
    received: list[str] = []
    for _ in range(count):
        message = await session.receive()
        assert message is not None, f"closed after {received}"
        received.append(message)
    return received


@asynccontextmanager
async def instances(
    count: int, broker: MemoryBroker | None = None
) -> AsyncIterator[list[tuple[SockJSApp, TestClient]]]:
    """``count`` apps of one service on one broker, each with a client, as if on ``count`` processes."""
    shared = broker if broker is not None else MemoryBroker()
    async with AsyncExitStack() as stack:
        pairs = []
        for _ in range(count):
            app = SockJSApp(member, broker=shared)
            pairs.append((app, await stack.enter_async_context(TestClient(app))))
        yield pairs


async def test_broadcasts_reach_every_instance_once_in_order() -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            instances(2) as [(first, client1), (second, client2)],
            client1.connect(transport="websocket") as here,
            client2.connect(transport="xhr_streaming") as there,
            client2.connect(transport="xhr") as also_there,
        ):
            await anyio.wait_all_tasks_blocked()
            for number in range(50):
                assert await first.broadcast(f"m{number}") == 1  # this process's connections only
            expected = [f"m{number}" for number in range(50)]
            assert await receive_all(here, 50) == expected
            assert await receive_all(there, 50) == expected
            assert await receive_all(also_there, 50) == expected
            assert await second.broadcast("back") == 2
            assert await here.receive() == "back"
            assert first.metrics.broker_published == 50 and second.metrics.broker_received == 50


async def test_rooms_are_local_membership_and_exclude_and_to_stay_local() -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            instances(2) as [(first, client1), (second, client2)],
            client1.connect(transport="websocket") as lobby_here,
            client1.connect(transport="websocket") as nowhere_here,
            client2.connect(transport="xhr_streaming") as lobby_there,
        ):
            for session in (lobby_here, lobby_there):
                await session.send("join:lobby")
                assert await session.receive() == "joined"
            (sender,) = first.room("lobby")
            await first.broadcast("to the lobby", room="lobby")
            await first.broadcast("not to the sender", room="lobby", exclude=sender)
            await first.broadcast("to one connection", to=[sender])  # never published
            await second.broadcast("from the other side", room="lobby")
            await first.broadcast("everyone")
            assert await receive_all(lobby_here, 4) == [
                "to the lobby",
                "to one connection",
                "from the other side",
                "everyone",
            ]
            assert await receive_all(lobby_there, 4) == [
                "to the lobby",
                "not to the sender",
                "from the other side",
                "everyone",
            ]
            assert await nowhere_here.receive() == "everyone"


async def test_each_instance_encodes_a_broadcast_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import sockjs_asgi._hub
    from sockjs_asgi.protocol.escaping import encode_string as real

    calls: list[str] = []

    def counting(text: str) -> str:
        calls.append(text)
        return real(text)

    monkeypatch.setattr(sockjs_asgi._hub, "encode_string", counting)
    with anyio.fail_after(TIMEOUT):
        async with instances(3) as pairs, AsyncExitStack() as stack:
            sessions = [
                await stack.enter_async_context(client.connect(transport="xhr_streaming"))
                for _app, client in pairs
                for _ in range(4)
            ]
            await pairs[0][0].broadcast("once per process")
            for session in sessions:
                assert await session.receive() == "once per process"
    assert calls == ["once per process"] * 3


async def test_the_default_broker_reaches_no_one_and_encodes_nothing_more() -> None:
    app = SockJSApp(member)
    assert isinstance(app.broker, MemoryBroker)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(app) as client, client.connect(transport="websocket") as session:
            await anyio.wait_all_tasks_blocked()
            assert await app.broadcast("local") == 1
            assert await session.receive() == "local"
    assert app.metrics.broker_published == 0


async def test_foreign_and_broken_publications_never_reach_a_handler(caplog: pytest.LogCaptureFixture) -> None:
    broker = MemoryBroker()
    delivered: list[bytes] = []

    def explode(topic: str, payload: bytes) -> None:
        delivered.append(payload)
        raise RuntimeError("a broken peer")

    with anyio.fail_after(TIMEOUT):
        async with (
            instances(1, broker) as [(app, client)],
            broker.connect([BROADCAST], explode, Metrics()) as peer,
            client.connect(transport="websocket") as session,
        ):
            await anyio.wait_all_tasks_blocked()
            for garbage in (b"", b"\xff\xfe", b"b2|x|-|future format", b"b1|x|99|short", b"b1|x|nan|x", b"b1|x"):
                peer.publish(BROADCAST, garbage)
            peer.publish(BROADCAST, encode_broadcast("peer", None, "valid"))
            caplog.set_level(logging.ERROR)
            assert await app.broadcast("from the app") == 1  # the broken peer raises: logged only
            assert await receive_all(session, 2) == ["valid", "from the app"]
            assert decode_broadcast(delivered[0]) == (None, "from the app")
    assert "a broken peer" in caplog.text


async def test_broadcast_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match="broker"):
        SockJSApp(member, broker=object())  # type: ignore[arg-type]
    app = SockJSApp(member)
    with pytest.raises(TypeError):
        await app.broadcast(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await app.broadcast("x", room=1)  # type: ignore[arg-type]


@given(st.one_of(st.none(), st.text()), st.text(), st.text(alphabet="0123456789abcdef", min_size=1))
def test_publications_round_trip(room: str | None, message: str, origin: str) -> None:
    assert decode_broadcast(encode_broadcast(origin, room, message)) == (room, message)


class Faulty(MemoryBroker):
    """A broker of one's own whose links raise on publish, against the interface's rule."""

    @asynccontextmanager
    async def connect(self, topics: Collection[str], deliver: Deliver, metrics: Metrics) -> AsyncIterator[BrokerLink]:
        async with super().connect(topics, deliver, metrics) as link:

            def publish(topic: str, payload: bytes) -> None:
                raise ConnectionError("down")

            link.publish = publish  # type: ignore[method-assign]
            yield link


async def test_a_broker_that_raises_never_reaches_the_handler(caplog: pytest.LogCaptureFixture) -> None:
    broker = Faulty()
    app = SockJSApp(member, broker=broker)
    peer = SockJSApp(member, broker=broker)  # so that publishing is attempted at all
    with anyio.fail_after(TIMEOUT):
        async with TestClient(app), TestClient(peer):
            assert await app.broadcast("local only") == 0
    assert app.metrics.broker_dropped == 1
    assert "could not publish" in caplog.text

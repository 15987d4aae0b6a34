"""sockjs_asgi.multiplex in-process: the websocket-multiplex wire format over every transport the
TestClient speaks, per-channel authorization, and how channels end."""

from __future__ import annotations

import logging

import anyio
import pytest

from sockjs_asgi import Connection, ConnectionClosed, SockJSApp
from sockjs_asgi.multiplex import Channel, Multiplexer, escape_topic, parse
from sockjs_asgi.testing import ClientSession, TestClient

from .support import TIMEOUT

pytestmark = pytest.mark.anyio

TRANSPORTS = ["websocket", "xhr", "xhr_streaming"]


def echo_mux() -> Multiplexer:
    mux = Multiplexer()

    @mux.channel("echo")
    async def echo(channel: Channel) -> None:
        async for message in channel:
            await channel.send(message)

    return mux


async def receive(conn: ClientSession) -> str | None:
    with anyio.fail_after(TIMEOUT):
        return await conn.receive()


# -- the wire format ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "topic"),
    [
        ("echo", "echo"),
        ("@*_+-./09AZaz", "@*_+-./09AZaz"),  # what escape() leaves alone
        ("my room", "my%20room"),
        ("a,b", "a%2Cb"),  # a topic never holds the field separator
        ("~%!", "%7E%25%21"),
        ("é", "%E9"),
        ("€", "%u20AC"),
        ("😀", "%uD83D%uDE00"),  # UTF-16 code units, as JavaScript strings hold it
    ],
)
def test_topics_are_escaped_as_javascript_escape_does(name: str, topic: str) -> None:
    assert escape_topic(name) == topic


@pytest.mark.parametrize(
    ("message", "fields"),
    [
        ("sub,chat", ("sub", "chat", "")),
        ("msg,chat,hello, world,", ("msg", "chat", "hello, world,")),
        ("msg,chat,", ("msg", "chat", "")),
        ("garbage", ("garbage", "", "")),
    ],
)
def test_parse_keeps_commas_in_the_payload(message: str, fields: tuple[str, str, str]) -> None:
    assert parse(message) == fields


# -- channels over a connection ----------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_channels_echo_over_every_transport(transport: str) -> None:
    mux = echo_mux()

    @mux.channel("my room")
    async def shout(channel: Channel) -> None:
        async for message in channel:
            await channel.send(message.upper())

    with anyio.fail_after(TIMEOUT):
        async with TestClient(SockJSApp(mux)) as client, client.connect(transport=transport) as conn:
            await conn.send("sub,echo", "sub,my%20room", "msg,echo,a, b and c", "msg,my%20room,hi")
            replies = {await receive(conn), await receive(conn)}
            assert replies == {"msg,echo,a, b and c", "msg,my%20room,HI"}
            await conn.send("msg,echo,é \u2028 \x00 😀")
            assert await receive(conn) == "msg,echo,é \u2028 \x00 😀"


async def test_unknown_topics_get_uns_and_other_noise_is_ignored() -> None:
    async with TestClient(SockJSApp(echo_mux())) as client, client.connect(transport="websocket") as conn:
        await conn.send("sub,nobody", "msg,echo,not subscribed", "uns,echo", "hello", "", "pub,echo,x")
        assert await receive(conn) == "uns,nobody"
        await conn.send("sub,echo", "sub,echo", "msg,echo,once")  # a second sub changes nothing
        assert await receive(conn) == "msg,echo,once"


async def test_client_unsubscribe_ends_the_handler_and_a_new_sub_starts_another() -> None:
    mux = Multiplexer()
    ended: list[tuple[list[str], bool, bool]] = []
    done = anyio.Event()

    @mux.channel("notes")
    async def notes(channel: Channel) -> None:
        seen = [message async for message in channel]
        ended.append((seen, channel.is_closed_by_client, channel.is_closed))
        with pytest.raises(ConnectionClosed):
            await channel.send("too late")
        with pytest.raises(ConnectionClosed):
            await channel.receive()
        done.set()

    async with TestClient(SockJSApp(mux)) as client, client.connect(transport="xhr_streaming") as conn:
        await conn.send("sub,notes", "msg,notes,one", "msg,notes,two", "uns,notes", "msg,notes,ignored")
        with anyio.fail_after(TIMEOUT):
            await done.wait()
        assert ended == [(["one", "two"], True, True)]
        assert mux.subscribers("notes") == frozenset()

        done = anyio.Event()
        await conn.send("sub,notes", "msg,notes,three", "uns,notes")
        with anyio.fail_after(TIMEOUT):
            await done.wait()
        assert ended[1] == (["three"], True, True)


async def test_a_handler_that_returns_or_closes_closes_its_channel_only() -> None:
    mux = echo_mux()

    @mux.channel("once")
    async def once(channel: Channel) -> None:
        await channel.send(await channel.receive())

    @mux.channel("bye")
    async def bye(channel: Channel) -> None:
        await channel.receive()
        await channel.close()
        await channel.close()  # closing twice does nothing
        assert channel.is_closed and not channel.is_closed_by_client and not channel.connection.is_closed

    async with TestClient(SockJSApp(mux)) as client, client.connect(transport="xhr") as conn:
        await conn.send("sub,echo", "sub,once", "msg,once,first")
        assert await receive(conn) == "msg,once,first"
        assert await receive(conn) == "uns,once"
        await conn.send("sub,bye", "msg,bye,x")
        assert await receive(conn) == "uns,bye"
        await conn.send("msg,echo,still here")
        assert await receive(conn) == "msg,echo,still here"


async def test_a_handler_that_raises_is_logged_and_closes_its_channel_only(caplog: pytest.LogCaptureFixture) -> None:
    mux = echo_mux()

    @mux.channel("broken")
    async def broken(channel: Channel) -> None:
        await channel.receive()
        raise RuntimeError("a bug in the channel")

    async with TestClient(SockJSApp(mux)) as client, client.connect(transport="websocket") as conn:
        await conn.send("sub,echo", "sub,broken", "msg,broken,boom")
        assert await receive(conn) == "uns,broken"
        await conn.send("msg,echo,fine")
        assert await receive(conn) == "msg,echo,fine"
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "the channel handler raised" in errors[0].getMessage()
    assert errors[0].exc_info is not None and isinstance(errors[0].exc_info[1], RuntimeError)


async def test_closing_the_connection_ends_every_channel() -> None:
    mux = Multiplexer()
    ended: list[str] = []
    all_ended = anyio.Event()

    async def record(channel: Channel) -> None:
        async for _ in channel:
            pass
        assert channel.is_closed and not channel.is_closed_by_client
        with pytest.raises(ConnectionClosed):
            await channel.send("gone")
        ended.append(channel.name)
        if len(ended) == 2:
            all_ended.set()

    mux.channel("a", record)
    mux.channel("b", record)

    @mux.channel("closer")
    async def closer(channel: Channel) -> None:
        await channel.receive()
        await channel.connection.close(3001, "Enough")

    async with TestClient(SockJSApp(mux)) as client, client.connect(transport="websocket") as conn:
        await conn.send("sub,a", "sub,b", "sub,closer", "msg,closer,now")
        assert await receive(conn) is None
        assert (conn.close_code, conn.close_reason) == (3001, "Enough")
        with anyio.fail_after(TIMEOUT):
            await all_ended.wait()
    assert sorted(ended) == ["a", "b"]


# -- authorization -------------------------------------------------------------------------------


async def test_authorization_by_the_multiplexer_then_by_the_channel() -> None:
    asked: list[str] = []

    async def signed_in(channel: Channel) -> bool:
        asked.append(f"mux:{channel.name}")
        return channel.connection.state.get("user") is not None

    async def is_admin(channel: Channel) -> bool:
        asked.append(f"channel:{channel.name}")
        return bool(channel.connection.state["user"] == "root")

    mux = Multiplexer(authorize=signed_in)
    mux.channel("echo", echo_mux()._registrations["echo"].handler)

    @mux.channel("admin", authorize=is_admin)
    async def admin(channel: Channel) -> None:
        await channel.send(f"welcome {channel.connection.state['user']}")

    async def handler(conn: Connection) -> None:
        user = conn.request.headers.get("x-user")
        if user:
            conn.state["user"] = user
        await mux.serve(conn)

    async with TestClient(SockJSApp(handler)) as client:
        async with client.connect(transport="xhr", headers={"x-user": "root"}) as root:
            await root.send("sub,admin")
            assert await receive(root) == "msg,admin,welcome root"
            assert await receive(root) == "uns,admin"
        assert asked == ["mux:admin", "channel:admin"]

        asked.clear()
        async with client.connect(transport="xhr", headers={"x-user": "guest"}) as guest:
            await guest.send("sub,admin", "msg,admin,let me in", "sub,echo", "msg,echo,ok")
            assert await receive(guest) == "uns,admin"
            assert await receive(guest) == "msg,echo,ok"
        assert asked == ["mux:admin", "channel:admin", "mux:echo"]

        asked.clear()
        async with client.connect(transport="xhr") as anonymous:
            await anonymous.send("sub,admin", "sub,echo")
            assert [await receive(anonymous), await receive(anonymous)] == ["uns,admin", "uns,echo"]
        assert asked == ["mux:admin", "mux:echo"]  # the channel's own check is not reached


# -- across connections ----------------------------------------------------------------------------


async def test_broadcast_reaches_the_channel_on_every_connection() -> None:
    mux = Multiplexer()

    @mux.channel("chat")
    async def chat(channel: Channel) -> None:
        async for message in channel:
            count = await mux.broadcast("chat", message, exclude=channel if message.startswith("quiet") else None)
            await channel.connection.send(f"sent to {count}")

    mux.channel("other", echo_mux()._registrations["echo"].handler)

    async with (
        TestClient(SockJSApp(mux)) as client,
        client.connect(transport="websocket") as alice,
        client.connect(transport="xhr_streaming") as bob,
        client.connect(transport="xhr") as carol,
    ):
        await alice.send("sub,chat")
        await bob.send("sub,chat")
        await carol.send("sub,other", "msg,other,ready")
        assert await receive(carol) == "msg,other,ready"
        assert len(mux.subscribers("chat")) == 2 and len(mux.subscribers("other")) == 1

        await alice.send("msg,chat,hello, all")
        assert await receive(alice) == "msg,chat,hello, all"
        assert await receive(alice) == "sent to 2"
        assert await receive(bob) == "msg,chat,hello, all"

        await bob.send("msg,chat,quiet one")
        assert await receive(bob) == "sent to 1"
        assert await receive(alice) == "msg,chat,quiet one"
        await carol.send("msg,other,nothing from chat came first")
        assert await receive(carol) == "msg,other,nothing from chat came first"


async def test_a_slow_channel_loses_nothing() -> None:
    """With a queue of one, the client's messages wait for the handler instead of being dropped."""
    mux = Multiplexer(max_incoming_messages=1)
    release = anyio.Event()

    @mux.channel("slow")
    async def slow(channel: Channel) -> None:
        await release.wait()
        async for message in channel:
            await channel.send(message)

    async with TestClient(SockJSApp(mux)) as client, client.connect(transport="websocket") as conn:
        await conn.send("sub,slow", *(f"msg,slow,{n}" for n in range(20)))
        release.set()
        assert [await receive(conn) for _ in range(20)] == [f"msg,slow,{n}" for n in range(20)]


# -- the API -----------------------------------------------------------------------------------------


async def test_registration_and_arguments_are_checked() -> None:
    mux = echo_mux()
    with pytest.raises(ValueError, match="already registered"):
        mux.channel("echo")
    with pytest.raises(ValueError, match="non-empty"):
        mux.channel("")
    with pytest.raises(TypeError, match="channel handler"):
        mux.channel("x", "not callable")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="authorize"):
        mux.channel("y", authorize="no")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="authorize"):
        Multiplexer(authorize=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        Multiplexer(max_incoming_messages=0)
    with pytest.raises(TypeError, match="integer"):
        Multiplexer(max_incoming_messages=True)
    assert mux.names == frozenset({"echo"})
    assert repr(mux) == "<Multiplexer ['echo']>"
    with pytest.raises(TypeError, match="str"):
        await mux.broadcast("echo", b"bytes")  # type: ignore[arg-type]

    seen: list[str] = []

    @mux.channel("inspect")
    async def inspect(channel: Channel) -> None:
        seen.append(repr(channel))
        seen.append(channel.transport)
        seen.append(channel.request.headers.get("x-q", ""))
        with pytest.raises(TypeError, match="str"):
            await channel.send(42)  # type: ignore[arg-type]
        await channel.send("done")

    async with TestClient(SockJSApp(mux)) as client, client.connect(transport="xhr", headers={"x-q": "1"}) as conn:
        await conn.send("sub,inspect")
        assert await receive(conn) == "msg,inspect,done"
    assert seen[0].startswith("<Channel c") and seen[0].endswith("/inspect xhr open>")
    assert seen[1:] == ["xhr", "1"]


async def test_a_send_after_the_client_left_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    """ConnectionClosed escaping a channel handler is a client going away: DEBUG, no traceback."""
    caplog.set_level(logging.DEBUG, logger="sockjs_asgi")
    mux = Multiplexer()
    raised = anyio.Event()

    @mux.channel("ticker")
    async def ticker(channel: Channel) -> None:
        await channel.receive()
        await channel.close()
        try:
            await channel.send("after close")
        finally:
            raised.set()

    async with TestClient(SockJSApp(mux)) as client, client.connect(transport="websocket") as conn:
        await conn.send("sub,ticker", "msg,ticker,go")
        assert await receive(conn) == "uns,ticker"
        with anyio.fail_after(TIMEOUT):
            await raised.wait()
    assert [record.levelno for record in caplog.records if "ticker" in record.getMessage()] == [logging.DEBUG]
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]

"""The small examples, driven in-process (the framework examples run under real servers in
tests/integration)."""

from __future__ import annotations

import anyio
import pytest

from sockjs_asgi.testing import TestClient

from .support import TIMEOUT

pytestmark = pytest.mark.anyio


async def test_echo_example() -> None:
    from examples.echo import app

    with anyio.fail_after(TIMEOUT):
        async with TestClient(app) as client, client.connect(transport="xhr") as conn:
            await conn.send("hello", "world")
            assert [await conn.receive(), await conn.receive()] == ["hello", "world"]


async def test_multiplex_example_keeps_topics_apart() -> None:
    from examples.multiplex import app

    with anyio.fail_after(TIMEOUT):
        async with (
            TestClient(app) as client,
            client.connect(transport="websocket") as alice,
            client.connect(transport="xhr_streaming") as bob,
        ):
            await alice.send("sub,echo", "sub,chat")
            await bob.send("sub,chat", "sub,nothing")
            assert await bob.receive() == "uns,nothing"
            await alice.send("msg,echo,only for me")
            assert await alice.receive() == "msg,echo,only for me"
            await alice.send("msg,chat,hello, everyone")
            assert await alice.receive() == "msg,chat,hello, everyone"
            assert await bob.receive() == "msg,chat,hello, everyone"
            await bob.send("uns,chat", "msg,chat,not subscribed")
            await alice.send("msg,echo,done")
            assert await alice.receive() == "msg,echo,done"  # nothing from bob came first

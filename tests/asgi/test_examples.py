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
    from examples.multiplex import ADMIN_TOKEN, app

    with anyio.fail_after(TIMEOUT):
        async with (
            TestClient(app) as client,
            client.connect(f"?token={ADMIN_TOKEN}", transport="websocket") as alice,
            client.connect("?token=guess", transport="xhr_streaming") as bob,
        ):
            await alice.send("sub,echo", "sub,chat", "sub,admin")
            await bob.send("sub,chat", "sub,nothing", "sub,admin")
            assert await bob.receive() == "uns,nothing"
            assert await bob.receive() == "uns,admin"  # the wrong token: refused
            await alice.send("msg,echo,only for me")
            assert await alice.receive() == "msg,echo,only for me"
            await alice.send("msg,chat,hello, everyone")
            assert await alice.receive() == "msg,chat,hello, everyone"
            assert await bob.receive() == "msg,chat,hello, everyone"
            await alice.send("msg,admin,who", "msg,admin,quit")
            assert await alice.receive() == "msg,admin,2 in chat"
            assert await alice.receive() == "uns,admin"
            await bob.send("uns,chat", "msg,chat,not subscribed")
            await alice.send("msg,echo,done")
            assert await alice.receive() == "msg,echo,done"  # nothing from bob came first


@pytest.mark.parametrize("transport", ["websocket", "xhr", "xhr_streaming"])
async def test_fastapi_example_logs_in_with_the_query_token(transport: str) -> None:
    """connect() keeps the query string after the session path, on every request."""
    from examples.fastapi_app import app

    with anyio.fail_after(TIMEOUT):
        async with TestClient(app) as client:
            async with client.connect("/sockjs/echo?token=let-me-in", transport=transport) as conn:
                await conn.send("hello")
                assert await conn.receive() == "hello"
            for path in ("/sockjs/echo", "/sockjs/echo?token=wrong"):
                with pytest.raises(AssertionError, match="403"):
                    async with client.connect(path, transport=transport):
                        pass

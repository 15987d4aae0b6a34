"""The services the official sockjs-protocol test suite expects, for running it against us.

Run with ``uvicorn examples.protocol_server:app --port 8081`` and point the suite's
``SOCKJS_URL`` at it.  With ``REDIS_URL`` set, every service has a RedisBroker there, so that
several processes serve it as one (``--workers 3``: any process answers any request).
"""

from __future__ import annotations

import os
from typing import Any

from sockjs_asgi import Connection, RedisBroker, SockJSApp, SockJSRouter

REDIS_URL = os.environ.get("REDIS_URL")


def shared(name: str) -> dict[str, Any]:
    """The broker option for service ``name``: none, unless ``REDIS_URL`` is set."""
    return {"broker": RedisBroker(REDIS_URL, channel=f"protocol-{name}")} if REDIS_URL else {}


async def echo(conn: Connection) -> None:
    async for message in conn:
        await conn.send(message)


async def close(conn: Connection) -> None:
    await conn.close(3000, "Go away!")


app = SockJSRouter(
    {
        "/echo": SockJSApp(echo, response_limit=4096, **shared("echo")),
        "/close": SockJSApp(close, **shared("close")),
        "/disabled_websocket_echo": SockJSApp(echo, disabled_transports=["websocket"], **shared("disabled")),
        "/cookie_needed_echo": SockJSApp(echo, cookie_needed=True, **shared("cookie")),
    }
)

"""The services the official sockjs-protocol test suite expects, for running it against us.

Run with ``uvicorn examples.protocol_server:app --port 8081`` and point the suite's
``SOCKJS_URL`` at it.
"""

from __future__ import annotations

from sockjs_asgi import Connection, SockJSApp, SockJSRouter


async def echo(conn: Connection) -> None:
    async for message in conn:
        await conn.send(message)


async def close(conn: Connection) -> None:
    await conn.close(3000, "Go away!")


app = SockJSRouter(
    {
        "/echo": SockJSApp(echo, response_limit=4096),
        "/close": SockJSApp(close),
        "/disabled_websocket_echo": SockJSApp(echo, disabled_transports=["websocket"]),
        "/cookie_needed_echo": SockJSApp(echo, cookie_needed=True),
    }
)

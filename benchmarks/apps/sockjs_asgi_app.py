"""sockjs-asgi serving the benchmark's services; run with ``uvicorn benchmarks.apps.sockjs_asgi_app:app``.

* ``/echo``: every message goes back to its sender;
* ``/broadcast``: every message goes to every connected session;
* ``/flood``: a message ``"N"`` asks for N copies of a 32-character message.
"""

from __future__ import annotations

from sockjs_asgi import Connection, SockJSApp, SockJSRouter

FLOOD = "flood-0123456789abcdefghijklmnop"


async def echo(conn: Connection) -> None:
    async for message in conn:
        await conn.send(message)


async def shout(conn: Connection) -> None:
    async for message in conn:
        await conn.app.broadcast(message)


async def flood(conn: Connection) -> None:
    async for message in conn:
        for _ in range(int(message)):
            await conn.send(FLOOD)


app = SockJSRouter({"/echo": SockJSApp(echo), "/broadcast": SockJSApp(shout), "/flood": SockJSApp(flood)})

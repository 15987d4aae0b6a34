"""sockjs-asgi serving the benchmark's services; run with ``uvicorn benchmarks.apps.sockjs_asgi_app:app``.

* ``/echo``: every message goes back to its sender;
* ``/broadcast``: every message goes to every connected session;
* ``/flood``: a message ``"N"`` asks for N copies of a 32-character message.

With ``BENCH_REDIS_URL`` set, ``/broadcast`` broadcasts through a :class:`RedisBroker` there, so
that several processes serve it as one service (``benchmarks/broker.py``).
"""

from __future__ import annotations

import os

from sockjs_asgi import Connection, RedisBroker, SockJSApp, SockJSRouter

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


REDIS_URL = os.environ.get("BENCH_REDIS_URL")
broadcast = SockJSApp(shout, broker=RedisBroker(REDIS_URL, channel="bench-broadcast") if REDIS_URL else None)
app = SockJSRouter({"/echo": SockJSApp(echo), "/broadcast": broadcast, "/flood": SockJSApp(flood)})

"""sockjs-asgi serving the benchmark's services; run with ``uvicorn benchmarks.apps.sockjs_asgi_app:app``.

* ``/echo``: every message goes back to its sender;
* ``/broadcast``: every message goes to every connected session;
* ``/flood``: a message ``"N"`` asks for N copies of a 32-character message.

With ``BENCH_REDIS_URL`` set, every service has a :class:`RedisBroker` there, so that several
processes serve it as one service: ``/broadcast`` broadcasts through it (``benchmarks/broker.py``)
and any process serves any request of a session (``benchmarks/workers.py``).
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


def broker(channel: str) -> RedisBroker | None:
    return RedisBroker(REDIS_URL, channel=channel) if REDIS_URL else None


broadcast = SockJSApp(shout, broker=broker("bench-broadcast"))
app = SockJSRouter(
    {
        "/echo": SockJSApp(echo, broker=broker("bench-echo")),
        "/broadcast": broadcast,
        "/flood": SockJSApp(flood, broker=broker("bench-flood")),
    }
)

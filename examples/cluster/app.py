"""One process of the cluster example: run several behind haproxy, all on one Redis.

* ``/echo``: an echo service.
* ``/broadcast``: every message a session sends goes to every session of every process.
* ``/health``: for the balancer's health checks; also says which process answered and whether
  it reaches Redis.

Every response carries an ``x-backend`` header naming the process (``BACKEND_NAME``, else the
process id), so that a client can see where each request of a session went.  The Redis URL
comes from ``REDIS_URL``.  Start the whole cluster with ``nox -s cluster`` (see
``examples/cluster/__main__.py``), or one process with::

    REDIS_URL=redis://127.0.0.1:6379/0 uvicorn examples.cluster.app:app --port 8001

or several processes on one port, without a balancer (any process serves any request)::

    REDIS_URL=redis://127.0.0.1:6379/0 uvicorn examples.cluster.app:app --port 8000 --workers 3
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import Message, Receive, Scope, Send

from sockjs_asgi import Connection, RedisBroker, SockJSApp, lifespan

BACKEND = os.environ.get("BACKEND_NAME") or f"pid-{os.getpid()}"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


async def echo(conn: Connection) -> None:
    async for message in conn:
        await conn.send(message)


async def relay(conn: Connection) -> None:
    async for message in conn:
        await conn.app.broadcast(message)  # to every session of every process


# Each service has a broker of its own: besides broadcasts, it lets any process serve any request
# of a session (``uvicorn --workers N`` needs nothing else; see docs/deployment.md).
echo_service = SockJSApp(echo, broker=RedisBroker(REDIS_URL, channel="cluster-echo"))
broadcast = SockJSApp(relay, broker=RedisBroker(REDIS_URL, channel="cluster-example"))


async def health(request: Request) -> JSONResponse:
    metrics = broadcast.metrics
    return JSONResponse(
        {
            "backend": BACKEND,
            "pid": os.getpid(),
            "redis": bool(metrics.broker_connected),
            "broker_dropped": metrics.broker_dropped,
            "sessions": len(broadcast.connections) + len(echo_service.connections),
        }
    )


routes = [Route("/health", health), Mount("/echo", echo_service), Mount("/broadcast", broadcast)]
site = Starlette(routes=routes, lifespan=lifespan(echo_service, broadcast))


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The site, with the ``x-backend`` header on every response and websocket handshake."""
    header = (b"x-backend", BACKEND.encode())

    async def send_with_header(message: Message) -> None:
        if message["type"] in ("http.response.start", "websocket.accept"):
            message = {**message, "headers": [*message.get("headers", []), header]}
        await send(message)

    await site(scope, receive, send_with_header if scope["type"] != "lifespan" else send)

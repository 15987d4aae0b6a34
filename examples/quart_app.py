"""A SockJS echo service in front of a Quart application.

Run it with ``hypercorn examples.quart_app:app`` (or uvicorn) and point a client at the
service::

    const sock = new SockJS("http://127.0.0.1:8000/sockjs/echo");

Quart has no ASGI mount, so :class:`~sockjs_asgi.SockJSRouter` wraps it: requests for
``/sockjs/echo`` and below go to the SockJS service, everything else to Quart.  The router
runs the service around Quart's own lifespan, so ``before_serving`` and ``after_serving``
work as usual.
"""

from __future__ import annotations

from quart import Quart

from sockjs_asgi import Connection, SockJSApp, SockJSRouter


async def echo(conn: Connection) -> None:
    async for message in conn:
        await conn.send(message)


quart_app = Quart(__name__)
quart_app.config["READY"] = False


@quart_app.before_serving
async def startup() -> None:
    quart_app.config["READY"] = True  # open database pools and the like here


@quart_app.after_serving
async def shutdown() -> None:
    quart_app.config["READY"] = False


@quart_app.get("/")
async def index() -> str:
    return "Hello from Quart. The SockJS echo service is at /sockjs/echo.\n"


@quart_app.get("/health")
async def health() -> tuple[str, int]:
    """200 once Quart's lifespan has started, as a load balancer's readiness check."""
    return ("ready", 200) if quart_app.config["READY"] else ("starting", 503)


echo_service = SockJSApp(echo)

app = SockJSRouter({"/sockjs/echo": echo_service}, app=quart_app)

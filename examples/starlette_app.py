"""A SockJS echo service mounted in a Starlette application.

Run it with ``uvicorn examples.starlette_app:app`` and point a client at the service::

    const sock = new SockJS("http://127.0.0.1:8000/sockjs/echo");

Starlette serves everything outside ``/sockjs/echo``.  It owns the ASGI lifespan, so it is
given the service's: the sessions' handlers then run under the application and are closed
cleanly when the server stops.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from sockjs_asgi import Connection, SockJSApp


async def echo(conn: Connection) -> None:
    async for message in conn:
        await conn.send(message)


echo_service = SockJSApp(echo)


async def homepage(request: Request) -> PlainTextResponse:
    return PlainTextResponse("Hello from Starlette. The SockJS echo service is at /sockjs/echo.\n")


app = Starlette(
    routes=[Route("/", homepage), Mount("/sockjs/echo", app=echo_service)],
    lifespan=echo_service.lifespan,
)

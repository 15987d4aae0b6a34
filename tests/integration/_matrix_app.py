"""The application the server matrix serves: a plain echo :class:`SockJSApp` at the root.

Its ``authorize`` refuses any request with a ``refuse`` query parameter, so that one
application also shows how each server passes on a refused websocket.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from sockjs_asgi import Connection, SockJSApp

__all__ = ["app"]


async def echo(conn: Connection) -> None:
    async for message in conn:
        await conn.send(message)


async def authorize(request: HTTPConnection) -> bool:
    return "refuse" not in request.query_params


app = SockJSApp(echo, authorize=authorize)

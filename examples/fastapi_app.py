"""A SockJS echo service for authorized clients only, mounted in a FastAPI application.

Run it with ``uvicorn examples.fastapi_app:app``.  A client opens a session with the token
``let-me-in``, either in the URL (sockjs-client repeats the URL's query string on every
request it makes) or in a ``token`` cookie::

    const sock = new SockJS("http://127.0.0.1:8000/sockjs/echo?token=let-me-in");

Without the token no session opens: the HTTP transports answer 403, and the websocket is
refused with 403 before it is accepted.  A real application would check a session cookie or a
signed token here instead of a constant.
"""

from __future__ import annotations

import secrets

from fastapi import FastAPI
from starlette.requests import HTTPConnection

from sockjs_asgi import Connection, SockJSApp

#: The token that opens a session (a demo: keep real secrets out of the source).
TOKEN = "let-me-in"


async def authorize(request: HTTPConnection) -> bool:
    """Let in a request that carries the token in the query string or in a cookie."""
    candidates = (request.query_params.get("token"), request.cookies.get("token"))
    # Compare bytes: compare_digest refuses non-ASCII strings, which a client may well send.
    return any(secrets.compare_digest(token.encode(), TOKEN.encode()) for token in candidates if token is not None)


async def echo(conn: Connection) -> None:
    async for message in conn:
        await conn.send(message)


echo_service = SockJSApp(echo, authorize=authorize)

app = FastAPI(lifespan=echo_service.lifespan)
app.mount("/sockjs/echo", echo_service)


@app.get("/")
async def index() -> dict[str, str]:
    return {"sockjs": "/sockjs/echo", "token": "see the module docstring"}

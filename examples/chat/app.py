"""A chat room: every message goes to everyone connected.

Run it with ``python -m examples.chat`` (or ``uvicorn examples.chat.app:app``) and open
http://127.0.0.1:8000 in two browser windows.  The page lets you pick the SockJS transport, so
a websocket client and, say, a jsonp-polling one can talk to each other.

The page loads sockjs-client from ``/sockjs.min.js``: the copy the browser tests install with
npm into ``.cache/npm`` when there is one, otherwise the same version from a CDN.  The iframe
transports load it from the same URL (``sockjs_url``), so both ends run one client version.
"""

from __future__ import annotations

import json
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from sockjs_asgi import Connection, SockJSApp

__all__ = ["app", "chat_service"]

HERE = Path(__file__).parent
LOCAL_CLIENT = HERE.parents[1] / ".cache" / "npm" / "node_modules" / "sockjs-client" / "dist" / "sockjs.min.js"
CDN_CLIENT = "https://cdn.jsdelivr.net/npm/sockjs-client@1.6.1/dist/sockjs.min.js"


async def chat(conn: Connection) -> None:
    name = conn.request.query_params.get("name", "").strip()[:40] or f"guest-{conn.id}"

    async def broadcast(event: dict[str, str]) -> None:
        # To everyone on this connection's service: encoded once, never waiting for a slow reader.
        await conn.app.broadcast(json.dumps(event))

    await broadcast({"kind": "joined", "name": name, "transport": conn.transport})
    async for message in conn:
        await broadcast({"kind": "message", "name": name, "text": message})
    await broadcast({"kind": "left", "name": name})


chat_service = SockJSApp(chat, sockjs_url="/sockjs.min.js")


async def index(request: Request) -> Response:
    return FileResponse(HERE / "static" / "index.html")


async def client_script(request: Request) -> Response:
    if LOCAL_CLIENT.is_file():
        return FileResponse(LOCAL_CLIENT, media_type="application/javascript")
    return RedirectResponse(CDN_CLIENT)


app = Starlette(
    routes=[
        Route("/", index),
        Route("/sockjs.min.js", client_script),
        Mount("/chat", app=chat_service),
    ],
    lifespan=chat_service.lifespan,
)

"""Several channels over one SockJS connection, with ``sockjs_asgi.multiplex``.

The page uses the websocket-multiplex client library over sockjs-client::

    const multiplexer = new WebSocketMultiplex(new SockJS("http://127.0.0.1:8000/?token=s3cret"));
    const chat = multiplexer.channel("chat");
    chat.onmessage = (event) => console.log(event.data);
    chat.send("hello");

Three channels: ``echo`` answers its sender, ``chat`` reaches everyone in it, and ``admin``
opens only for a connection made with the right ``?token=`` (per-channel authorization; a
refused channel gets its ``close`` event at once).  Run it with
``python -m sockjs_asgi examples.multiplex:mux`` or ``uvicorn examples.multiplex:app``.
"""

from __future__ import annotations

import secrets

from sockjs_asgi import SockJSApp
from sockjs_asgi.multiplex import Channel, Multiplexer

#: The admin channel's password; a real application checks a session or a signed token.
ADMIN_TOKEN = "s3cret"

mux = Multiplexer()


@mux.channel("echo")
async def echo(channel: Channel) -> None:
    async for message in channel:
        await channel.send(message)


@mux.channel("chat")
async def chat(channel: Channel) -> None:
    async for message in channel:
        await mux.broadcast("chat", message)


async def is_admin(channel: Channel) -> bool:
    token = channel.request.query_params.get("token", "")
    return secrets.compare_digest(token.encode(), ADMIN_TOKEN.encode())


@mux.channel("admin", authorize=is_admin)
async def admin(channel: Channel) -> None:
    async for command in channel:
        if command == "who":
            await channel.send(f"{len(mux.subscribers('chat'))} in chat")
        elif command == "quit":
            return  # closes this channel only
        else:
            await channel.send(f"unknown command {command!r}")


app = SockJSApp(mux)

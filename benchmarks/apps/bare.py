"""The reference: bare ASGI apps doing each benchmark's job with nothing of SockJS but its bytes.

Run on the same uvicorn as sockjs-asgi; every figure of the suite is a ratio to this app's figure
in the same run.  It mirrors the URLs of the SockJS services so that the load generator needs no
special case beyond the framing:

* websocket, any path: ``o`` on accept, then under ``/broadcast/`` every message goes to every
  connected socket, elsewhere it goes back to its sender (raw text, no SockJS framing);
* ``POST /echo/000/<id>/xhr`` answers ``o`` for a new id, else the messages sent to the id
  (waiting for one), as one ``a[...]`` frame; ``/echo/000/<id>/xhr_send`` queues its body;
* ``POST /flood/000/<id>/xhr_streaming`` streams ``o`` and then one ``a["..."]`` chunk per
  message; ``/flood/000/<id>/xhr_send`` with ``["N"]`` queues N messages.

It uses asyncio directly (it only ever runs on uvicorn with uvloop), and keeps no bounds or
timeouts: it is the floor, not a server.
"""

from __future__ import annotations

import asyncio
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]

FLOOD_FRAME = b'a["flood-0123456789abcdefghijklmnop"]\n'
OPEN = {"type": "websocket.send", "text": "o"}
NO_CONTENT = {"type": "http.response.start", "status": 204, "headers": []}
TEXT_HEADERS = [(b"content-type", b"application/javascript; charset=UTF-8")]


class Mailbox:
    """What was sent to one HTTP session, and the receiver waiting for it."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.owed = 0
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def wait(self) -> None:
        self.waiter = asyncio.get_running_loop().create_future()
        await self.waiter
        self.waiter = None


mailboxes: dict[str, Mailbox] = {}
everyone: set[Any] = set()


async def app(scope: Scope, receive: Any, send: Any) -> None:
    """The ASGI entry point."""
    if scope["type"] == "websocket":
        await websocket(scope, receive, send)
    elif scope["type"] == "http":
        await http(scope, receive, send)
    elif scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})


async def websocket(scope: Scope, receive: Any, send: Any) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send(OPEN)
    if scope["path"].startswith("/broadcast/"):
        everyone.add(send)
        try:
            while (message := await receive())["type"] == "websocket.receive":
                out = {"type": "websocket.send", "text": message["text"]}
                for peer in list(everyone):
                    try:
                        await peer(out)
                    except Exception:  # a peer that just went away
                        everyone.discard(peer)
        finally:
            everyone.discard(send)
    else:
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"]})


async def read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        chunk: bytes = message.get("body", b"")
        body += chunk
        if not message.get("more_body"):
            return body


async def http(scope: Scope, receive: Any, send: Any) -> None:
    parts = scope["path"].split("/")  # ["", service, server, session, transport]
    if len(parts) != 5:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    _, service, _, session, transport = parts
    body = await read_body(receive)
    mailbox = mailboxes.get(session)
    if transport == "xhr_send" and mailbox is not None:
        if service == "flood":
            mailbox.owed += int(body[2:-2])
        else:
            mailbox.bodies.append(body)
        mailbox.wake()
        await send(NO_CONTENT)
        await send({"type": "http.response.body", "body": b""})
    elif transport == "xhr":
        await send({"type": "http.response.start", "status": 200, "headers": TEXT_HEADERS})
        if mailbox is None:
            mailboxes[session] = Mailbox()
            await send({"type": "http.response.body", "body": b"o\n"})
            return
        if not mailbox.bodies:
            await mailbox.wait()
        bodies, mailbox.bodies = mailbox.bodies, []
        # Each body is a JSON array: join their items into one array.
        frame = b"a" + bodies[0] + b"\n" if len(bodies) == 1 else b"a[" + b",".join(b[1:-1] for b in bodies) + b"]\n"
        await send({"type": "http.response.body", "body": frame})
    elif transport == "xhr_streaming":
        await send({"type": "http.response.start", "status": 200, "headers": TEXT_HEADERS})
        if mailbox is None:
            mailbox = mailboxes[session] = Mailbox()
            await send({"type": "http.response.body", "body": b"o\n", "more_body": True})
        while True:
            if not mailbox.owed:
                await mailbox.wait()
            while mailbox.owed:
                mailbox.owed -= 1
                await send({"type": "http.response.body", "body": FLOOD_FRAME, "more_body": True})
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

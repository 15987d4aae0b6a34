"""aiohttp-sockjs (PyPI ``sockjs``) on aiohttp with uvloop, serving the benchmark's services.

Usage: ``python -m benchmarks.apps.aiohttp_sockjs_app PORT``.  The services are those of
:mod:`benchmarks.apps.sockjs_asgi_app`.
"""

from __future__ import annotations

import sys

import sockjs  # type: ignore[import-untyped]
import uvloop
from aiohttp import web

FLOOD = "flood-0123456789abcdefghijklmnop"


async def echo(manager: sockjs.SessionManager, session: sockjs.Session, message: sockjs.SockjsMessage) -> None:
    if message.type == sockjs.MsgType.MESSAGE:
        session.send(message.data)


async def shout(manager: sockjs.SessionManager, session: sockjs.Session, message: sockjs.SockjsMessage) -> None:
    if message.type == sockjs.MsgType.MESSAGE:
        manager.broadcast(message.data)


async def flood(manager: sockjs.SessionManager, session: sockjs.Session, message: sockjs.SockjsMessage) -> None:
    if message.type == sockjs.MsgType.MESSAGE:
        for _ in range(int(message.data)):
            session.send(FLOOD)


def main() -> None:
    app = web.Application()
    for name, handler in (("echo", echo), ("broadcast", shout), ("flood", flood)):
        sockjs.add_endpoint(app, handler, name=name, prefix=f"/{name}", cookie_needed=False)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()

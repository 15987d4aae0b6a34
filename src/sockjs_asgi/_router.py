"""``SockJSRouter``: several SockJS services under their prefixes, in front of any ASGI app.

For hosts without a mount of their own (Quart), and for servers that want SockJS services at
exact prefixes: a request for ``/echo`` or anything below ``/echo/`` goes to the service mounted
at ``/echo``; everything else goes to the wrapped application, or gets a 404.  The router also
runs the services' :meth:`~sockjs_asgi.SockJSApp.run` for the ASGI lifespan, around the wrapped
application's own lifespan.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._app import SockJSApp, run_all, websocket_endpoint
from ._http import not_found
from ._types import AnyASGIApp, Message, Receive, Scope, Send

__all__ = ["SockJSRouter"]


class SockJSRouter:
    """Route ``services`` (prefix to :class:`SockJSApp`) and pass the rest to ``app``."""

    def __init__(self, services: Mapping[str, SockJSApp], app: AnyASGIApp | None = None) -> None:
        for prefix in services:
            if not prefix.startswith("/") or prefix.endswith("/"):
                raise ValueError(f"a prefix starts with '/' and does not end with one, got {prefix!r}")
        # Longest first, so that /a/b wins over /a.
        self.services = dict(sorted(services.items(), key=lambda item: -len(item[0])))
        self.app = app
        # What a request is matched against: the prefix, and its start of a longer path.
        self._prefixes = [(prefix, prefix + "/", service) for prefix, service in self.services.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        root = scope.get("root_path", "")
        path: str = scope["path"]
        local = path[len(root) :] if root and path.startswith(root) else path
        for entry in self._prefixes:  # longest first
            if local.startswith(entry[1]) or local == entry[0]:
                break
        else:
            await self._unrouted(scope, receive, send)
            return
        prefix, _below, service = entry
        # The service's root_path and path, set in the scope itself rather than in a copy, as
        # Starlette's Mount does: a websocket session holds its scope for its whole life.  They
        # stay set after the call, since a session's handler may outlive the request that
        # opened it and still read its request's URL.
        scope["root_path"] = root + prefix
        scope["path"] = root + local  # ASGI: path keeps root_path
        if scope["type"] == "websocket":
            # Straight to the session, past the service's dispatch: one coroutine fewer in
            # what every open websocket holds.
            serve = websocket_endpoint(service._route(scope))
            if serve is not None:
                await serve(service, scope, receive, send)
            else:
                await service(scope, receive, send)
        else:
            await service(scope, receive, send)

    async def _unrouted(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is not None:
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await not_found(send)
        else:
            await receive()
            await send({"type": "websocket.close", "code": 1000})

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:
            await receive()  # lifespan.startup
            async with run_all(self.services.values()):
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown
            await send({"type": "lifespan.shutdown.complete"})
            return
        # The wrapped application answers the lifespan messages; its "shutdown complete" is
        # held back until the services have shut down too, or the server would stop first.
        held: list[Message] = []

        async def send_after_services(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                held.append(message)
            else:
                await send(message)

        async with run_all(self.services.values()):
            await self.app(scope, receive, send_after_services)
        for message in held:
            await send(message)

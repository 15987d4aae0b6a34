"""sockjs-asgi: a SockJS server as a pure ASGI application.

::

    from sockjs_asgi import Connection, SockJSApp

    async def echo(conn: Connection) -> None:
        async for message in conn:
            await conn.send(message)

    app = SockJSApp(echo)
"""

from __future__ import annotations

from ._app import Handler, SockJSApp, lifespan
from ._broker import Broker, BrokerLink, MemoryBroker
from ._connection import Connection
from ._metrics import Metrics, MetricsEndpoint
from ._redis import RedisBroker
from ._router import SockJSRouter
from .protocol.errors import ConnectionClosed, LocalProtocolError, RemoteProtocolError, SockJSError

__version__ = "0.1.0"

__all__ = [
    "Broker",
    "BrokerLink",
    "Connection",
    "ConnectionClosed",
    "Handler",
    "LocalProtocolError",
    "MemoryBroker",
    "Metrics",
    "MetricsEndpoint",
    "RedisBroker",
    "RemoteProtocolError",
    "SockJSApp",
    "SockJSError",
    "SockJSRouter",
    "__version__",
    "lifespan",
]

"""The SockJS protocol without I/O: frames, escaping, routing, transports and sessions.

Standard library only; nothing here imports the ASGI side (a test enforces it).
"""

from __future__ import annotations

from . import escaping, frames, http, transports
from .errors import ConnectionClosed, LocalProtocolError, RemoteProtocolError, SockJSError
from .session import CloseReason, Session, SessionState

__all__ = [
    "CloseReason",
    "ConnectionClosed",
    "LocalProtocolError",
    "RemoteProtocolError",
    "Session",
    "SessionState",
    "SockJSError",
    "escaping",
    "frames",
    "http",
    "transports",
]

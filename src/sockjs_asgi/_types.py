"""ASGI types used by the I/O side (the ASGI 3 specification)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["ASGIApp", "AnyASGIApp", "Message", "Receive", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: Any ASGI application, however its own types spell the scope and callables (Quart's, say).
AnyASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

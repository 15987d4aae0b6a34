"""Options of a SockJS service, checked once when the application is built."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from .protocol.transports import RECEIVERS, Transport, enabled_transports

__all__ = ["Authorize", "Options"]

#: The client served to the iframe page unless ``sockjs_url`` says otherwise.
DEFAULT_SOCKJS_URL = "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js"

#: Decides whether a request may open a session; see ``SockJSApp``.
Authorize = Callable[[HTTPConnection], Awaitable[bool]]


def _positive(name: str, value: float, *, integer: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        kind = "an integer" if integer else "a number"
        raise TypeError(f"{name} must be {kind}, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")


@dataclass(frozen=True)
class Options:
    """Validated settings of one service (see ``SockJSApp`` for their meaning)."""

    sockjs_url: str = DEFAULT_SOCKJS_URL
    heartbeat_delay: float = 25.0
    disconnect_delay: float = 5.0
    response_limit: int = 128 * 1024
    cookie_needed: bool = False
    verify_ip: bool = False
    disabled_transports: frozenset[str] = frozenset()
    max_request_size: int = 1024 * 1024
    max_pending_size: int = 1024 * 1024
    max_incoming_messages: int = 1024
    authorize: Authorize | None = None
    transports: dict[str, Transport] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.sockjs_url, str) or not self.sockjs_url.startswith(("/", "http")):
            raise ValueError(f"sockjs_url must start with '/' or 'http', got {self.sockjs_url!r}")
        _positive("heartbeat_delay", self.heartbeat_delay)
        _positive("disconnect_delay", self.disconnect_delay)
        for name in ("response_limit", "max_request_size", "max_pending_size", "max_incoming_messages"):
            _positive(name, getattr(self, name), integer=True)
        for name in ("cookie_needed", "verify_ip"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.authorize is not None and not callable(self.authorize):
            raise TypeError(f"authorize must be an async callable, got {self.authorize!r}")
        try:
            transports = enabled_transports(self.disabled_transports)
        except ValueError as exc:
            raise ValueError(f"disabled_transports: {exc}") from None
        object.__setattr__(self, "transports", transports)

    @classmethod
    def build(cls, *, disabled_transports: Iterable[str] = (), **options: object) -> Options:
        """Build from keyword options, naming any unknown one."""
        known = set(cls.__dataclass_fields__) - {"transports", "disabled_transports"}
        unknown = set(options) - known
        if unknown:
            raise TypeError(f"unknown option(s) {sorted(unknown)}; known: {sorted(known | {'disabled_transports'})}")
        try:
            if isinstance(disabled_transports, str):
                raise TypeError
            names = frozenset(disabled_transports)
            if not all(isinstance(name, str) for name in names):
                raise TypeError
        except TypeError:
            raise TypeError(
                f"disabled_transports must be a collection of transport names, got {disabled_transports!r}"
            ) from None
        return cls(disabled_transports=names, **options)  # type: ignore[arg-type]

    @property
    def has_websocket(self) -> bool:
        """Whether the websocket transport (and the raw endpoint) are enabled."""
        return "websocket" in self.transports

    @property
    def receiver_names(self) -> list[str]:
        """Enabled receiving transports, as ``/info`` lists them."""
        return [name for name in RECEIVERS if name in self.transports]

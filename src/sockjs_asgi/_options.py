"""Options of a SockJS service, checked once when the application is built.

The options, their defaults and their meaning are declared once, as the keyword-only
parameters of :class:`~sockjs_asgi.SockJSApp` (so type checkers and editors see them);
:class:`Options` is the validated record the application keeps.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from .protocol.http import normalize_origin
from .protocol.transports import RECEIVERS, Transport, enabled_transports

__all__ = ["DEFAULT_SOCKJS_URL", "Authorize", "Options", "names"]

#: The client served to the iframe page unless ``sockjs_url`` says otherwise.
DEFAULT_SOCKJS_URL = "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js"

#: The values of ``cookie_samesite`` (besides ``None``, which leaves the attribute out).
SAMESITE = ("lax", "strict", "none")

#: Decides whether a request may open a session; see ``SockJSApp``.
Authorize = Callable[[HTTPConnection], Awaitable[bool]]


def _positive(name: str, value: object, *, integer: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        kind = "an integer" if integer else "a number"
        raise TypeError(f"{name} must be {kind}, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")


def names(option: str, value: object) -> frozenset[str]:
    """A collection of strings, refusing a bare string (its letters are not names)."""
    try:
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise TypeError
        names = frozenset(value)
        if not all(isinstance(name, str) for name in names):
            raise TypeError
    except TypeError:
        raise TypeError(f"{option} must be a collection of strings, got {value!r}") from None
    return names


@dataclass(frozen=True, kw_only=True)
class Options:
    """The validated settings of one service; see :class:`~sockjs_asgi.SockJSApp` for each."""

    sockjs_url: str
    heartbeat_delay: float
    disconnect_delay: float
    response_limit: int
    cookie_needed: bool
    verify_ip: bool
    disabled_transports: frozenset[str]
    max_request_size: int
    max_pending_size: int
    max_incoming_messages: int
    authorize: Authorize | None
    allowed_origins: frozenset[str] | None
    cookie_secure: bool | None
    cookie_samesite: str | None
    max_sessions: int | None
    transports: dict[str, Transport] = field(init=False, repr=False, compare=False)
    #: Whether the websocket transport (and the raw endpoint) are enabled.
    has_websocket: bool = field(init=False, repr=False, compare=False)

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
        if self.max_sessions is not None:
            _positive("max_sessions", self.max_sessions, integer=True)
        if self.cookie_secure is not None and not isinstance(self.cookie_secure, bool):
            raise TypeError(f"cookie_secure must be a bool or None, got {self.cookie_secure!r}")
        if self.cookie_samesite is not None:
            if not isinstance(self.cookie_samesite, str) or self.cookie_samesite.lower() not in SAMESITE:
                raise ValueError(f"cookie_samesite must be one of {SAMESITE} or None, got {self.cookie_samesite!r}")
            object.__setattr__(self, "cookie_samesite", self.cookie_samesite.lower())
            if self.cookie_samesite == "none" and self.cookie_secure is False:
                # Browsers drop a SameSite=None cookie that is not Secure.
                raise ValueError("cookie_samesite='none' needs cookie_secure True or None, not False")
        if self.allowed_origins is not None:
            origins = names("allowed_origins", self.allowed_origins)
            try:
                object.__setattr__(self, "allowed_origins", frozenset(normalize_origin(o) for o in origins))
            except ValueError as exc:
                raise ValueError(f"allowed_origins: {exc}") from None
        # Whatever iterable the caller gave, keep a frozenset (a generator would be used up).
        object.__setattr__(self, "disabled_transports", names("disabled_transports", self.disabled_transports))
        try:
            transports = enabled_transports(self.disabled_transports)
        except ValueError as exc:
            raise ValueError(f"disabled_transports: {exc}") from None
        object.__setattr__(self, "transports", transports)
        # An attribute rather than a property: every request reads it.
        object.__setattr__(self, "has_websocket", "websocket" in transports)

    @property
    def receiver_names(self) -> list[str]:
        """Enabled receiving transports, as ``/info`` lists them."""
        return [name for name in RECEIVERS if name in self.transports]

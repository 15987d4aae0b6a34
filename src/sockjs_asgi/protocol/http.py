"""Routing and the fixed HTTP parts of the protocol (PROTOCOL.md sections 1-3).

Pure functions over already-parsed request data; the I/O side parses requests with Starlette.
Headers are lists of ``(name, value)`` string pairs with lower-case names.
"""

from __future__ import annotations

import enum
import hashlib
import html
import json
import re
from collections.abc import Mapping
from email.utils import formatdate
from typing import NamedTuple

from .transports import Transport

__all__ = [
    "GREETING",
    "NOT_FOUND",
    "NO_CACHE",
    "Endpoint",
    "Headers",
    "Route",
    "cache_for_a_year",
    "cookie_header",
    "cors_headers",
    "etag_matches",
    "iframe_page",
    "info_body",
    "info_origins",
    "is_form",
    "normalize_origin",
    "origin_allowed",
    "preflight_headers",
    "route",
]

Headers = list[tuple[str, str]]

GREETING = "Welcome to SockJS!\n"
NOT_FOUND = "404 Error: Page not found\n"

#: Exact string the suite checks (``verify_not_cached``).
NO_CACHE: Headers = [("cache-control", "no-store, no-cache, no-transform, must-revalidate, max-age=0")]

_YEAR = 31_536_000


class Endpoint(enum.Enum):
    """What a path under the service prefix names."""

    GREETING = "greeting"
    INFO = "info"
    IFRAME = "iframe"
    RAW_WEBSOCKET = "raw_websocket"
    SESSION = "session"


class Route(NamedTuple):
    """A path matched to an endpoint; ``methods`` are those the endpoint accepts.

    A named tuple: one is made for every session request, and a tuple is the cheapest to make.
    """

    endpoint: Endpoint
    methods: tuple[str, ...]
    transport: Transport | None = None
    session_id: str | None = None


# Made for every session request: the tuple's own constructor, without the named tuple's
# ``__new__`` in Python, and the member as a global (see ``session``), are 270 ns less on 3.11.
_new_route = tuple.__new__
_SESSION = Endpoint.SESSION

_IFRAME_PATH = re.compile(r"/iframe[0-9a-z_.\-]*\.html/?")
_GREETING = Route(Endpoint.GREETING, ("GET",))
_INFO = Route(Endpoint.INFO, ("GET", "OPTIONS"))
_IFRAME = Route(Endpoint.IFRAME, ("GET",))
_RAW_WEBSOCKET = Route(Endpoint.RAW_WEBSOCKET, ("GET",))


def route(path: str, transports: Mapping[str, Transport], *, has_raw_websocket: bool) -> Route | None:
    """Match ``path``, taken below the service prefix, to an endpoint; ``None`` means 404."""
    # Session URLs first, as they are most of the traffic: /<server>/<session>/<transport>, with
    # an optional trailing slash.  The server and session segments are one or more characters
    # that are neither "/" nor "." (PROTOCOL.md 1); every transport name is [a-z_]+, so a name
    # found in ``transports`` is a valid one.  No other endpoint has three segments.
    parts = path.split("/")
    count = len(parts)
    if count == 4 or (count == 5 and not parts[4]):
        server, session_id, name = parts[1], parts[2], parts[3]
        if not server or not session_id or "." in server or "." in session_id:
            return None
        transport = transports.get(name)
        if transport is None:
            return None
        return _new_route(Route, (_SESSION, transport.methods, transport, session_id))
    if path in ("", "/"):
        return _GREETING
    if path in ("/info", "/info/"):
        return _INFO
    if path in ("/websocket", "/websocket/"):
        return _RAW_WEBSOCKET if has_raw_websocket else None
    if _IFRAME_PATH.fullmatch(path):
        return _IFRAME
    return None


def cors_headers(origin: str | None, request_headers: str | None) -> Headers:
    """CORS headers: the origin echoed with credentials (the client sends cookies), else ``*``."""
    if origin is None:
        headers = [("access-control-allow-origin", "*")]
    else:
        headers = [
            ("access-control-allow-origin", origin),
            ("access-control-allow-credentials", "true"),
        ]
    headers.append(("vary", "Origin"))
    if request_headers:
        headers.append(("access-control-allow-headers", request_headers))
    return headers


def cache_for_a_year(now: float) -> Headers:
    """Caching headers for a year from ``now`` (seconds since the epoch)."""
    return [
        ("cache-control", f"public, max-age={_YEAR}"),
        ("expires", formatdate(now + _YEAR, usegmt=True)),
    ]


def preflight_headers(methods: tuple[str, ...], now: float) -> Headers:
    """Answer to an OPTIONS preflight for an endpoint accepting ``methods``."""
    return [
        *cache_for_a_year(now),
        ("access-control-max-age", str(_YEAR)),
        ("access-control-allow-methods", ", ".join(methods)),
    ]


def cookie_header(jsessionid: str | None, *, secure: bool = False, samesite: str | None = None) -> tuple[str, str]:
    """The sticky-session cookie, echoing the client's or ``dummy`` (PROTOCOL.md 2).

    It is for the load balancer alone, so scripts never need it: always ``HttpOnly``.  The
    suite reads the first two attributes, so the others follow ``path=/``.
    """
    value = f"JSESSIONID={jsessionid or 'dummy'}; path=/; HttpOnly"
    if samesite is not None:
        value += f"; SameSite={samesite.capitalize()}"
    if secure:
        value += "; Secure"
    return ("set-cookie", value)


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, as browsers send it in ``Origin``; ``ValueError``
    for anything else (a path, a query, user info, a missing scheme or host)."""
    scheme, separator, netloc = origin.strip().lower().partition("://")
    netloc = netloc.removesuffix("/")
    if (
        not separator
        or not re.fullmatch(r"[a-z][a-z0-9+.\-]*", scheme)
        or not re.fullmatch(r"(\[[0-9a-f:.]+\]|[^\s/?#@\[\]:]+)(:[0-9]{1,5})?", netloc)
    ):
        raise ValueError(f"{origin!r} is not an origin (scheme://host[:port])")
    return f"{scheme}://{netloc}"


def origin_allowed(
    allowed: frozenset[str] | None, *, origin: str | None, referer: str | None, host: str | None, fetch_site: str | None
) -> bool:
    """Whether a request may use the service when only ``allowed`` origins may (``None``: any).

    The request's origin is its ``Origin`` header, else the origin part of its ``Referer``.
    A page of the service's own host (the iframe page, whose transports post from there) is
    always allowed.  A request that names no origin is a non-browser client or a browser's
    same-origin ``GET``, and is allowed unless ``Sec-Fetch-Site`` says another site sent it
    (a ``<script>`` include of jsonp from a page that hid its origin).
    """
    if allowed is None:
        return True
    if origin is None and referer is not None:
        scheme, _, rest = referer.partition("://")
        origin = f"{scheme}://{re.split('[/?#]', rest, maxsplit=1)[0]}" if rest else referer
    if origin is None:
        return fetch_site is None or fetch_site.strip().lower() in ("same-origin", "none")
    try:
        origin = normalize_origin(origin)
    except ValueError:
        return False  # "null" (sandboxed frames, file: pages) and garbage
    if origin in allowed:
        return True
    return host is not None and origin.partition("://")[2] == host.strip().lower()


def info_origins(allowed: frozenset[str] | None) -> list[str]:
    """``/info``'s ``origins``, in sockjs-node's ``host:port`` form: ``["*:*"]`` when any
    origin may connect."""
    if allowed is None:
        return ["*:*"]
    listed = []
    for origin in sorted(allowed):
        scheme, _, netloc = origin.partition("://")
        if not re.search(r":[0-9]+$", netloc):
            netloc += ":" + {"http": "80", "https": "443"}.get(scheme, "*")
        listed.append(netloc)
    return listed


def info_body(
    *, websocket: bool, cookie_needed: bool, entropy: int, transports: list[str], origins: list[str] | None = None
) -> str:
    """The ``/info`` JSON document."""
    return json.dumps(
        {
            "websocket": websocket,
            "cookie_needed": cookie_needed,
            "origins": ["*:*"] if origins is None else origins,
            "entropy": entropy,
            "transports": transports,
        },
        separators=(",", ":"),
    )


_IFRAME_PAGE = """<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src="{sockjs_url}"></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe();
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>
"""


def iframe_page(sockjs_url: str) -> tuple[bytes, str]:
    """The iframe page for ``sockjs_url`` and its ETag (a quoted MD5 of the body)."""
    body = _IFRAME_PAGE.format(sockjs_url=html.escape(sockjs_url, quote=True)).encode()
    return body, '"' + hashlib.md5(body, usedforsecurity=False).hexdigest() + '"'


# An entity tag, strong or weak (RFC 9110 8.8.3): its opaque part is the quoted string.
_ENTITY_TAG = re.compile(r'(?:^|,)\s*(?:W/)?("[^"]*")\s*(?=,|$)')


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` value matches ``etag`` (RFC 9110 13.1.2): ``*``, or any
    tag of the comma-separated list, compared weakly (a ``W/`` prefix does not matter)."""
    if if_none_match.strip() == "*":
        return True
    return any(match.group(1) == etag for match in _ENTITY_TAG.finditer(if_none_match))


def is_form(content_type: str | None) -> bool:
    """Whether a request's Content-Type is a URL-encoded form; media types are case-insensitive
    (RFC 9110 8.3.1) and may carry parameters."""
    if content_type is None:
        return False
    return content_type.partition(";")[0].strip().lower() == "application/x-www-form-urlencoded"

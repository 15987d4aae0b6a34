"""CORS on the xhr transports and the JSESSIONID cookie (PROTOCOL.md 2, 5.2, 5.7)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from http.cookies import SimpleCookie
from typing import Any

import anyio
import pytest

from sockjs_asgi import SockJSApp
from sockjs_asgi.testing import Response, TestClient

from .support import TIMEOUT, Receive, Scope, Send, echo, header, serving, session_url, values

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

pytestmark = pytest.mark.anyio

ORIGINS = [
    (None, "*", None),
    ("test", "test", "true"),
    ("null", "null", "true"),
    ("http://a.example:8080", "http://a.example:8080", "true"),
]


async def request_on(client: TestClient, transport: str, headers: Mapping[str, str] | None = None) -> Response:
    """One request of ``transport`` on a fresh session (opened first for the send endpoints)."""
    url = session_url()
    if transport in ("xhr_send", "jsonp_send"):
        assert (await client.request("POST", url + "/xhr")).body == b"o\n"
        body = b'["x"]'
        return await client.request("POST", url + "/" + transport, body=body, headers=headers)
    if transport in ("xhr", "jsonp"):
        path = url + "/" + transport + ("?c=cb" if transport == "jsonp" else "")
        return await client.request("POST" if transport == "xhr" else "GET", path, headers=headers)
    method = "POST" if transport == "xhr_streaming" else "GET"
    path = url + "/" + transport + ("?c=cb" if transport == "htmlfile" else "")
    async with client.stream(method, path, headers=headers) as response:
        await response.read()  # the prelude: the request is attached
    return response


@pytest.mark.parametrize("transport", ["xhr", "xhr_streaming", "xhr_send"])
@pytest.mark.parametrize(("origin", "allow_origin", "credentials"), ORIGINS)
async def test_cors_on_xhr_transports(
    transport: str, origin: str | None, allow_origin: str, credentials: str | None
) -> None:
    async with serving(echo) as client:
        response = await request_on(client, transport, {"Origin": origin} if origin else None)
        assert header(response, "access-control-allow-origin") == allow_origin
        assert header(response, "access-control-allow-credentials") == credentials
        assert header(response, "access-control-allow-headers") is None


@pytest.mark.parametrize("transport", ["xhr", "xhr_streaming", "xhr_send"])
async def test_cors_request_headers_echoed_on_xhr_transports(transport: str) -> None:
    async with serving(echo) as client:
        headers = {"Origin": "test", "Access-Control-Request-Headers": "a, b, c"}
        response = await request_on(client, transport, headers)
        assert header(response, "access-control-allow-headers") == "a, b, c"


@pytest.mark.parametrize("transport", ["xhr", "xhr_streaming", "xhr_send"])
@pytest.mark.parametrize("origin", ["test", "null"])
async def test_options_preflight(transport: str, origin: str) -> None:
    """sockjs-protocol verify_options for every xhr endpoint."""
    async with serving(echo) as client:
        response = await client.request(
            "OPTIONS",
            session_url() + "/" + transport,
            headers={"Origin": origin, "Access-Control-Request-Method": "OPTIONS, POST"},
        )
        assert response.status in (200, 204)
        assert response.body == b""
        cache_control = header(response, "cache-control")  # one Cache-Control header only
        assert cache_control is not None and "public" in cache_control
        assert re.search(r"max-age=[1-9][0-9]{6}", cache_control)
        assert "no-cache" not in cache_control
        assert header(response, "expires")
        max_age = header(response, "access-control-max-age")
        assert max_age is not None and int(max_age) > 1_000_000
        methods = header(response, "access-control-allow-methods")
        assert methods is not None and {"OPTIONS", "POST"} <= {m.strip() for m in methods.split(",")}
        assert header(response, "access-control-allow-origin") == origin
        assert header(response, "access-control-allow-credentials") == "true"


@pytest.mark.parametrize("request_headers", [None, ""])
async def test_options_without_request_headers_sends_no_allow_headers(request_headers: str | None) -> None:
    """sockjs-protocol XhrPolling.test_request_headers_cors."""
    async with serving(echo) as client:
        headers = {"Origin": "test", "Access-Control-Request-Method": "POST"}
        if request_headers is not None:
            headers["Access-Control-Request-Headers"] = request_headers
        response = await client.request("OPTIONS", session_url() + "/xhr", headers=headers)
        assert response.status in (200, 204)
        assert header(response, "access-control-allow-origin") == "test"
        assert header(response, "access-control-allow-headers") is None


async def test_options_echoes_request_headers() -> None:
    async with serving(echo) as client:
        headers = {
            "Origin": "test",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "a, b, c",
        }
        response = await client.request("OPTIONS", session_url() + "/xhr", headers=headers)
        assert header(response, "access-control-allow-headers") == "a, b, c"


async def test_options_opens_no_session() -> None:
    async with serving(echo) as client:
        url = session_url()
        assert (await client.request("OPTIONS", url + "/xhr")).status in (200, 204)
        assert (await client.request("OPTIONS", url + "/xhr_streaming")).status in (200, 204)
        assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 404


# -- JSESSIONID --------------------------------------------------------------------------

SESSION_TRANSPORTS = ["xhr", "xhr_streaming", "eventsource", "htmlfile", "jsonp", "xhr_send", "jsonp_send"]


def cookie_of(response: Response) -> tuple[str, str]:
    cookies = values(response, "set-cookie")
    assert len(cookies) == 1, cookies
    first, second = (part.strip() for part in cookies[0].split(";")[:2])
    return first, second.lower()


@pytest.mark.parametrize("transport", SESSION_TRANSPORTS)
async def test_cookie_needed_sets_dummy_cookie(transport: str) -> None:
    """sockjs-protocol JsessionidCookie."""
    async with serving(echo, cookie_needed=True) as client:
        response = await request_on(client, transport)
        assert response.status in (200, 204)
        assert cookie_of(response) == ("JSESSIONID=dummy", "path=/")


@pytest.mark.parametrize("transport", SESSION_TRANSPORTS)
async def test_cookie_needed_echoes_jsessionid(transport: str) -> None:
    async with serving(echo, cookie_needed=True) as client:
        response = await request_on(client, transport, {"Cookie": "other=1; JSESSIONID=abcdef"})
        assert cookie_of(response) == ("JSESSIONID=abcdef", "path=/")


@pytest.mark.parametrize("transport", ["xhr", "xhr_streaming", "xhr_send"])
async def test_cookie_needed_on_options(transport: str) -> None:
    async with serving(echo, cookie_needed=True) as client:
        response = await client.request("OPTIONS", session_url() + "/" + transport, headers={"Origin": "test"})
        assert cookie_of(response) == ("JSESSIONID=dummy", "path=/")


@pytest.mark.parametrize(("method", "path"), [("GET", "/info"), ("GET", "/"), ("GET", "/iframe.html")])
async def test_cookie_needed_not_on_static_endpoints(method: str, path: str) -> None:
    async with serving(echo, cookie_needed=True) as client:
        response = await client.request(method, path, headers={"Cookie": "JSESSIONID=abcdef"})
        assert response.status == 200
        assert values(response, "set-cookie") == []


@pytest.mark.parametrize("transport", SESSION_TRANSPORTS)
async def test_no_cookie_by_default(transport: str) -> None:
    async with serving(echo) as client:
        response = await request_on(client, transport, {"Cookie": "JSESSIONID=abcdef"})
        assert values(response, "set-cookie") == []


async def test_cookie_on_2010_refusal() -> None:
    async with serving(echo, cookie_needed=True) as client:
        url = session_url()
        async with client.stream("POST", url + "/xhr_streaming") as first:
            await first.read()
            second = await client.request("POST", url + "/xhr")
            assert second.text.startswith("c[2010,")
            assert cookie_of(second) == ("JSESSIONID=dummy", "path=/")


# -- cookie attributes -----------------------------------------------------------------------


def attributes_of(response: Response) -> set[str]:
    """The cookie's attributes after ``path=/``, lower-cased."""
    cookies = values(response, "set-cookie")
    assert len(cookies) == 1, cookies
    return {part.strip().lower() for part in cookies[0].split(";")[2:]}


def over_https(app: ASGIApp) -> ASGIApp:
    """``app`` as a TLS-terminating server would call it."""

    async def with_https(scope: Scope, receive: Receive, send: Send) -> None:
        await app({**scope, "scheme": "https" if scope["type"] == "http" else "wss"}, receive, send)

    return with_https


@pytest.mark.parametrize("transport", SESSION_TRANSPORTS)
async def test_cookie_is_httponly_and_samesite_lax_by_default(transport: str) -> None:
    async with serving(echo, cookie_needed=True) as client:
        response = await request_on(client, transport)
        assert attributes_of(response) == {"httponly", "samesite=lax"}
        parsed = SimpleCookie(values(response, "set-cookie")[0])
        assert parsed["JSESSIONID"]["httponly"] is True
        assert parsed["JSESSIONID"]["samesite"] == "Lax"


async def test_cookie_is_secure_over_https_by_default() -> None:
    with anyio.fail_after(TIMEOUT):
        async with TestClient(over_https(SockJSApp(echo, cookie_needed=True))) as client:
            assert attributes_of(await request_on(client, "xhr")) == {"httponly", "samesite=lax", "secure"}
            assert attributes_of(await request_on(client, "xhr_send")) == {"httponly", "samesite=lax", "secure"}


@pytest.mark.parametrize(
    ("options", "https", "expected"),
    [
        ({"cookie_secure": True}, False, {"httponly", "samesite=lax", "secure"}),
        ({"cookie_secure": False}, True, {"httponly", "samesite=lax"}),
        ({"cookie_samesite": "strict"}, False, {"httponly", "samesite=strict"}),
        ({"cookie_samesite": "none"}, False, {"httponly", "samesite=none", "secure"}),  # None needs Secure
        ({"cookie_samesite": "none", "cookie_secure": True}, True, {"httponly", "samesite=none", "secure"}),
        ({"cookie_samesite": None}, False, {"httponly"}),
    ],
)
async def test_cookie_attribute_options(options: dict[str, Any], https: bool, expected: set[str]) -> None:
    app = SockJSApp(echo, cookie_needed=True, **options)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(over_https(app) if https else app) as client:
            assert attributes_of(await request_on(client, "xhr_streaming")) == expected

"""Greeting, /info, iframe page, routing, 404/405/400 (PROTOCOL.md 1, 2, 3 and 8)."""

from __future__ import annotations

import email.utils
import hashlib
import html
import json
import re
import time
from html.parser import HTMLParser

import pytest

from .support import HTML, JSON, NO_CACHE, PLAIN, echo, header, serving, session_url, values

pytestmark = pytest.mark.anyio

GREETING = b"Welcome to SockJS!\n"

# The suite's regex for the iframe page (sockjs-protocol.py, IframePage.iframe_body).
IFRAME_BODY = re.compile(
    r"""^<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src="(?P<sockjs_url>[^"]*)"></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe\(\);
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>$"""
)

YEAR = 31_536_000


def assert_cached_for_a_year(cache_control: str | None, expires: str | None) -> None:
    assert cache_control is not None and "public" in cache_control
    assert re.search(r"max-age=[1-9][0-9]{6}", cache_control), cache_control
    assert expires is not None
    expiry = email.utils.parsedate_to_datetime(expires).timestamp()
    # "now + one year" as an HTTP date; a day of slack keeps this independent of speed.
    assert abs(expiry - (time.time() + YEAR)) < 86_400, expires


# -- greeting ----------------------------------------------------------------------------


async def test_greeting() -> None:
    async with serving(echo, cookie_needed=True) as client:
        response = await client.request("GET", "/")
        assert response.status == 200
        assert header(response, "content-type") == PLAIN
        assert response.body == GREETING
        assert values(response, "set-cookie") == []


async def test_greeting_ignores_query_string() -> None:
    async with serving(echo) as client:
        response = await client.request("GET", "/?t=1234")
        assert (response.status, response.body) == (200, GREETING)


@pytest.mark.parametrize("suffix", ["/a", "/a.html", "//", "///", "/a/a", "/a/a/", "/a/", "/info/a", "/websocketx"])
async def test_unknown_paths_are_404(suffix: str) -> None:
    async with serving(echo) as client:
        response = await client.request("GET", suffix)
        assert response.status == 404
        assert response.body == b"404 Error: Page not found\n"
        assert header(response, "content-type") == PLAIN


# -- routing of session URLs -------------------------------------------------------------


# sockjs-protocol SessionURLs.test_anyValue; ASGI servers percent-decode the path, so the
# suite's "%20" reaches the application as a space.
@pytest.mark.parametrize("session_part", ["/a/a", "/_/_", "/1/1", "/abcdefgh_i-j /abcdefg_i-j ", "/000/" + "x" * 200])
async def test_any_server_and_session_id_accepted(session_part: str) -> None:
    async with serving(echo) as client:
        response = await client.request("POST", session_part + "/xhr")
        assert (response.status, response.body) == (200, b"o\n")


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("session_part", ["//", "/a./a", "/a/a.", "/./.", "/", "///", "/a/b/c"])
async def test_invalid_session_paths_are_404(method: str, session_part: str) -> None:
    async with serving(echo) as client:
        response = await client.request(method, session_part + "/xhr")
        assert response.status == 404


async def test_unknown_transport_is_404() -> None:
    async with serving(echo) as client:
        response = await client.request("POST", session_url() + "/xhr_pooling")
        assert response.status == 404


async def test_server_id_is_ignored() -> None:
    """A session is identified by its session id only (SessionURLs.test_ignoringServerId)."""
    async with serving(echo) as client:
        assert (await client.request("POST", "/000/same-session/xhr")).body == b"o\n"
        assert (await client.request("POST", "/123/same-session/xhr_send", body=b'["a"]')).status == 204
        response = await client.request("POST", "/999/same-session/xhr?t=1")
        assert response.body == b'a["a"]\n'


# -- /info -------------------------------------------------------------------------------


async def test_info() -> None:
    async with serving(echo) as client:
        response = await client.request("GET", "/info", headers={"Origin": "test"})
        assert response.status == 200
        assert header(response, "content-type") == JSON
        assert header(response, "cache-control") == NO_CACHE
        assert header(response, "expires") is None
        assert header(response, "last-modified") is None
        assert values(response, "set-cookie") == []
        data = json.loads(response.body)
        assert data["websocket"] is True
        assert data["cookie_needed"] is False
        assert data["origins"] == ["*:*"]
        assert isinstance(data["entropy"], int) and not isinstance(data["entropy"], bool)
        assert 0 <= data["entropy"] <= 2**32 - 1
        assert set(data["transports"]) == {"websocket", "xhr", "xhr_streaming", "eventsource", "htmlfile", "jsonp"}


async def test_info_ignores_query_string() -> None:
    async with serving(echo) as client:
        response = await client.request("GET", "/info?t=1234")
        assert response.status == 200
        assert "entropy" in json.loads(response.body)


async def test_info_entropy_differs_between_calls() -> None:
    async with serving(echo) as client:
        entropies = {json.loads((await client.request("GET", "/info")).body)["entropy"] for _ in range(5)}
        assert len(entropies) > 1


async def test_info_with_cookie_needed_sets_no_cookie() -> None:
    async with serving(echo, cookie_needed=True) as client:
        response = await client.request("GET", "/info", headers={"Cookie": "JSESSIONID=abcdef"})
        assert json.loads(response.body)["cookie_needed"] is True
        assert values(response, "set-cookie") == []


@pytest.mark.parametrize(
    ("origin", "allow_origin", "credentials"),
    [
        (None, "*", None),
        ("test", "test", "true"),
        ("null", "null", "true"),
        ("https://a.example", "https://a.example", "true"),
    ],
)
async def test_info_cors(origin: str | None, allow_origin: str, credentials: str | None) -> None:
    async with serving(echo) as client:
        response = await client.request("GET", "/info", headers={"Origin": origin} if origin else None)
        assert header(response, "access-control-allow-origin") == allow_origin
        assert header(response, "access-control-allow-credentials") == credentials


@pytest.mark.parametrize("origin", ["test", "null"])
async def test_info_options_preflight(origin: str) -> None:
    async with serving(echo) as client:
        response = await client.request(
            "OPTIONS",
            "/info",
            headers={"Origin": origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-a"},
        )
        assert response.status in (200, 204)
        assert response.body == b""
        assert_cached_for_a_year(header(response, "cache-control"), header(response, "expires"))
        max_age = header(response, "access-control-max-age")
        assert max_age is not None and int(max_age) > 1_000_000
        methods = header(response, "access-control-allow-methods")
        assert methods is not None and {"OPTIONS", "GET"} <= {m.strip() for m in methods.split(",")}
        assert header(response, "access-control-allow-origin") == origin
        assert header(response, "access-control-allow-credentials") == "true"
        assert header(response, "access-control-allow-headers") == "x-a"


# -- iframe page -------------------------------------------------------------------------

ACCEPTED_IFRAMES = [
    "/iframe.html",
    "/iframe-a.html",
    "/iframe-.html",
    "/iframe-0.1.2.html",
    "/iframe-0.1.2abc-dirty.2144.html",
    "/iframe-a.html?t=1234",
    "/iframe-0.1.2.html?t=123414",
    "/iframe-0.1.2abc-dirty.2144.html?t=qweqweq123",
]
REFUSED_IFRAMES = ["/iframe.htm", "/iframe", "/IFRAME.HTML", "/IFRAME", "/iframe.HTML", "/iframe.xml", "/iframe-/.html"]


@pytest.mark.parametrize("path", ACCEPTED_IFRAMES)
async def test_iframe_page(path: str) -> None:
    async with serving(echo, sockjs_url="/static/sockjs.js", cookie_needed=True) as client:
        response = await client.request("GET", path, headers={"Cookie": "JSESSIONID=abc"})
        assert response.status == 200
        assert header(response, "content-type") == HTML
        assert_cached_for_a_year(header(response, "cache-control"), header(response, "expires"))
        assert header(response, "etag")
        assert header(response, "last-modified") is None
        assert values(response, "set-cookie") == []
        match = IFRAME_BODY.match(response.text.strip())
        assert match is not None, response.text
        assert match.group("sockjs_url") == "/static/sockjs.js"


async def test_iframe_default_sockjs_url_is_absolute() -> None:
    async with serving(echo) as client:
        match = IFRAME_BODY.match((await client.request("GET", "/iframe.html")).text.strip())
        assert match is not None
        assert match.group("sockjs_url").startswith("http")


@pytest.mark.parametrize("path", REFUSED_IFRAMES)
async def test_iframe_bad_names_are_404(path: str) -> None:
    async with serving(echo) as client:
        assert (await client.request("GET", path)).status == 404


async def test_iframe_same_bytes_and_etag_for_every_name() -> None:
    async with serving(echo) as client:
        responses = [await client.request("GET", path) for path in ACCEPTED_IFRAMES]
        assert len({r.body for r in responses}) == 1
        assert len({header(r, "etag") for r in responses}) == 1


async def test_iframe_etag_is_quoted_md5_of_the_body() -> None:
    async with serving(echo) as client:
        response = await client.request("GET", "/iframe.html")
        assert header(response, "etag") == '"' + hashlib.md5(response.body).hexdigest() + '"'


async def test_iframe_etag_follows_sockjs_url() -> None:
    async with serving(echo, sockjs_url="/a.js") as client_a:
        etag_a = header(await client_a.request("GET", "/iframe.html"), "etag")
    async with serving(echo, sockjs_url="/b.js") as client_b:
        etag_b = header(await client_b.request("GET", "/iframe.html"), "etag")
    assert etag_a and etag_b and etag_a != etag_b


async def test_iframe_not_modified() -> None:
    async with serving(echo) as client:
        first = await client.request("GET", "/iframe.html")
        etag = header(first, "etag")
        assert etag is not None
        assert header(await client.request("GET", "/iframe.html"), "etag") == etag
        response = await client.request("GET", "/iframe-0.1.2.html", headers={"If-None-Match": etag})
        assert response.status == 304
        assert header(response, "content-type") is None
        assert response.body == b""


IF_NONE_MATCH_HITS = ["W/{etag}", "*", " * ", '"0123", {etag}', '"0123",W/{etag} , "4567"', "  {etag}  "]
IF_NONE_MATCH_MISSES = ['"0123"', 'W/"0123", "4567"', "{bare}", "x{etag}", "{etag}x", "", "**"]


@pytest.mark.parametrize("template", IF_NONE_MATCH_HITS)
async def test_iframe_not_modified_for_weak_tags_lists_and_star(template: str) -> None:
    """RFC 9110 13.1.2: If-None-Match compares weakly, takes a list, and * matches any tag."""
    async with serving(echo) as client:
        etag = header(await client.request("GET", "/iframe.html"), "etag")
        assert etag is not None
        if_none_match = template.format(etag=etag)
        response = await client.request("GET", "/iframe.html", headers={"If-None-Match": if_none_match})
        assert (response.status, response.body) == (304, b"")


@pytest.mark.parametrize("template", IF_NONE_MATCH_MISSES)
async def test_iframe_other_etag_gets_the_page(template: str) -> None:
    async with serving(echo) as client:
        etag = header(await client.request("GET", "/iframe.html"), "etag")
        assert etag is not None
        if_none_match = template.format(etag=etag, bare=etag.strip('"'))
        response = await client.request("GET", "/iframe.html", headers={"If-None-Match": if_none_match})
        assert response.status == 200
        assert IFRAME_BODY.match(response.text.strip())


@pytest.mark.parametrize("sockjs_url", ["/s.js?a=1&b='2'>", 'http://x.example/"quoted"<&>\'.js'])
async def test_iframe_sockjs_url_is_escaped_as_the_standard_library_does(sockjs_url: str) -> None:
    """The page reads back the exact URL; the escaping is html.escape's (quotes included)."""
    async with serving(echo, sockjs_url=sockjs_url) as client:
        body = (await client.request("GET", "/iframe.html")).text
        assert f'<script src="{html.escape(sockjs_url, quote=True)}"></script>' in body
        sources: list[str | None] = []

        class Scripts(HTMLParser):
            def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
                if tag == "script":
                    sources.extend(value for name, value in attrs if name == "src")

        Scripts().feed(body)
        assert sources == [sockjs_url]


async def test_iframe_sockjs_url_cannot_break_out_of_the_attribute() -> None:
    async with serving(echo, sockjs_url='http://x.example/s.js"></script><script>alert(1)</script>') as client:
        body = (await client.request("GET", "/iframe.html")).text
        assert "<script>alert(1)" not in body
        assert IFRAME_BODY.match(body.strip())


# -- 405 and 400 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix", "allowed", "headers"),
    [
        ("GET", "/000/s/xhr", {"POST", "OPTIONS"}, {}),
        ("PUT", "/000/s/xhr", {"POST", "OPTIONS"}, {}),
        ("GET", "/000/s/xhr_streaming", {"POST", "OPTIONS"}, {}),
        ("GET", "/000/s/xhr_send", {"POST", "OPTIONS"}, {}),
        ("DELETE", "/000/s/xhr_send", {"POST", "OPTIONS"}, {}),
        ("POST", "/000/s/eventsource", {"GET"}, {}),
        ("POST", "/000/s/htmlfile", {"GET"}, {}),
        ("POST", "/000/s/jsonp", {"GET"}, {}),
        ("GET", "/000/s/jsonp_send", {"POST"}, {}),
        ("OPTIONS", "/000/s/jsonp_send", {"POST"}, {}),
        ("POST", "/0/0/websocket", {"GET"}, {}),
        ("POST", "/0/0/websocket", {"GET"}, {"Upgrade": "WebSocket", "Connection": "Upgrade"}),
        ("POST", "/websocket", {"GET"}, {}),
        ("POST", "/websocket", {"GET"}, {"Upgrade": "WebSocket", "Connection": "Upgrade"}),
        ("POST", "/", {"GET"}, {}),
        ("POST", "/iframe.html", {"GET"}, {}),
        ("POST", "/info", {"GET", "OPTIONS"}, {}),
    ],
)
async def test_wrong_method_is_405(method: str, suffix: str, allowed: set[str], headers: dict[str, str]) -> None:
    async with serving(echo) as client:
        response = await client.request(method, suffix, headers=headers)
        assert response.status == 405
        allow = header(response, "allow")
        assert allow is not None
        # comma + space separated, as node writes it
        assert set(allow.split(", ")) == allowed
        assert header(response, "content-type") is None
        assert response.body == b""


async def test_405_creates_no_session() -> None:
    async with serving(echo) as client:
        url = session_url()
        assert (await client.request("GET", url + "/xhr")).status == 405
        assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 404


@pytest.mark.parametrize("path", ["/0/0/websocket", "/websocket"])
@pytest.mark.parametrize("headers", [{}, {"Upgrade": "WebSocket", "Connection": "close"}])
async def test_websocket_url_over_plain_http_is_400(path: str, headers: dict[str, str]) -> None:
    async with serving(echo) as client:
        response = await client.request("GET", path, headers=headers)
        assert response.status == 400
        assert response.body == b"Not a valid websocket request"  # PROTOCOL.md 8

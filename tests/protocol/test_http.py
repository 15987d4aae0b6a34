"""Routing and the fixed HTTP parts (PROTOCOL.md sections 1-3)."""

from __future__ import annotations

import hashlib
import html
import json
import re

import pytest

from sockjs_asgi.protocol import http
from sockjs_asgi.protocol.http import Endpoint, Route, route
from sockjs_asgi.protocol.transports import TRANSPORTS, enabled_transports


def route_all(path: str, *, has_raw_websocket: bool = True) -> Route | None:
    return route(path, TRANSPORTS, has_raw_websocket=has_raw_websocket)


# -- routing: static endpoints -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["", "/"])
def test_greeting(path: str) -> None:
    assert route_all(path) == Route(Endpoint.GREETING, ("GET",))


@pytest.mark.parametrize("path", ["/a", "/a.html", "//", "///", "/a/a", "/a/a/", "/a/", "/info.html", "/infoo"])
def test_not_found(path: str) -> None:
    # Suite BaseUrlGreeting.test_notFound (plus near misses of /info).
    assert route_all(path) is None


@pytest.mark.parametrize("path", ["/info", "/info/"])
def test_info(path: str) -> None:
    assert route_all(path) == Route(Endpoint.INFO, ("GET", "OPTIONS"))


@pytest.mark.parametrize("path", ["/websocket", "/websocket/"])
def test_raw_websocket(path: str) -> None:
    assert route_all(path) == Route(Endpoint.RAW_WEBSOCKET, ("GET",))
    assert route_all(path, has_raw_websocket=False) is None


@pytest.mark.parametrize(
    "path",
    [
        "/iframe.html",
        "/iframe-a.html",
        "/iframe-.html",
        "/iframe-0.1.2.html",
        "/iframe-0.1.2abc-dirty.2144.html",
        "/iframe_x.html",
        "/iframe.html/",
    ],
)
def test_iframe_names_accepted(path: str) -> None:
    assert route_all(path) == Route(Endpoint.IFRAME, ("GET",))


@pytest.mark.parametrize(
    "path",
    [
        "/iframe.htm",
        "/iframe",
        "/IFRAME.HTML",
        "/IFRAME",
        "/iframe.HTML",
        "/iframe.xml",
        "/iframe-/.html",
        "/iframe-A.html",
        "/iframexhtml",
        "/iframe.html.x",
        "/a/iframe.html",
    ],
)
def test_iframe_names_refused(path: str) -> None:
    assert route_all(path) is None


# -- routing: session paths --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "session_id"),
    [
        ("/a/a123/xhr", "a123"),
        ("/_/_123/xhr", "_123"),
        ("/1/123/xhr", "123"),
        ("/abcdefgh_i-j%20/abcdefg_i-j%20123/xhr", "abcdefg_i-j%20123"),
        ("/000/abcdefgh/xhr", "abcdefgh"),
        ("/000/abcdefgh/xhr/", "abcdefgh"),
        ("/000/6f1e4f8a-1b2c-4d3e-8f9a-0b1c2d3e4f5a/xhr", "6f1e4f8a-1b2c-4d3e-8f9a-0b1c2d3e4f5a"),
    ],
)
def test_session_paths_accepted(path: str, session_id: str) -> None:
    # Suite SessionURLs.test_anyValue.
    assert route_all(path) == Route(Endpoint.SESSION, ("POST", "OPTIONS"), TRANSPORTS["xhr"], session_id)


@pytest.mark.parametrize("prefix", ["//", "/a./a", "/a/a.", "/./.", "/", "///"])
def test_session_paths_refused(prefix: str) -> None:
    # Suite SessionURLs.test_invalidPaths: empty segments, dots, too few or too many parts.
    assert route_all(prefix + "/xhr") is None


@pytest.mark.parametrize("path", ["/a/b/c/xhr", "/a/b/XHR", "/a/b/xhr.js", "/a/b/unknown", "/a/b/xhr//"])
def test_other_session_like_paths_refused(path: str) -> None:
    assert route_all(path) is None


def test_server_id_is_ignored() -> None:
    # Suite SessionURLs.test_ignoringServerId: /000/S and /999/S name the same session.
    first, second = route_all("/000/S/xhr"), route_all("/999/S/xhr")
    assert first is not None and second is not None
    assert first.session_id == second.session_id == "S"
    assert first == second


@pytest.mark.parametrize("name", sorted(TRANSPORTS))
def test_every_transport_routes_to_its_row(name: str) -> None:
    assert route_all(f"/000/s/{name}") == Route(Endpoint.SESSION, TRANSPORTS[name].methods, TRANSPORTS[name], "s")


def test_disabled_transport_is_not_found() -> None:
    enabled = enabled_transports(frozenset({"jsonp"}))
    assert route("/000/s/jsonp", enabled, has_raw_websocket=True) is None
    assert route("/000/s/jsonp_send", enabled, has_raw_websocket=True) is None
    assert route("/000/s/xhr", enabled, has_raw_websocket=True) is not None


# -- 405: methods of each route ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("", "GET"),
        ("/info", "GET, OPTIONS"),
        ("/iframe.html", "GET"),
        ("/websocket", "GET"),
        ("/0/s/websocket", "GET"),
        ("/0/s/xhr", "POST, OPTIONS"),
        ("/0/s/xhr_streaming", "POST, OPTIONS"),
        ("/0/s/xhr_send", "POST, OPTIONS"),
        ("/0/s/eventsource", "GET"),
        ("/0/s/htmlfile", "GET"),
        ("/0/s/jsonp", "GET"),
        ("/0/s/jsonp_send", "POST"),
    ],
)
def test_allow_header_lists_the_route_methods(path: str, allow: str) -> None:
    matched = route_all(path)
    assert matched is not None
    assert ", ".join(matched.methods) == allow


@pytest.mark.parametrize(
    ("path", "method"),
    [("/0/s/xhr", "GET"), ("/0/s/websocket", "POST"), ("/0/s/jsonp_send", "OPTIONS"), ("/info", "POST")],
)
def test_wrong_method_is_not_in_the_list(path: str, method: str) -> None:
    # PROTOCOL.md 1: GET on /xhr and POST on /websocket are 405, as is OPTIONS on jsonp_send.
    matched = route_all(path)
    assert matched is not None
    assert method not in matched.methods


# -- header sets -------------------------------------------------------------------------------


def test_no_cache_is_the_exact_suite_string() -> None:
    assert http.NO_CACHE == [("cache-control", "no-store, no-cache, no-transform, must-revalidate, max-age=0")]


@pytest.mark.parametrize("origin", ["test", "null", "https://example.com:8080"])
def test_cors_echoes_origin_with_credentials(origin: str) -> None:
    assert http.cors_headers(origin, None) == [
        ("access-control-allow-origin", origin),
        ("access-control-allow-credentials", "true"),
        ("vary", "Origin"),
    ]


def test_cors_without_origin_is_star_without_credentials() -> None:
    headers = http.cors_headers(None, None)
    assert headers == [("access-control-allow-origin", "*"), ("vary", "Origin")]
    assert "access-control-allow-credentials" not in dict(headers)


@pytest.mark.parametrize("origin", [None, "test"])
def test_cors_echoes_non_empty_request_headers(origin: str | None) -> None:
    headers = http.cors_headers(origin, "a, b")
    assert dict(headers)["access-control-allow-headers"] == "a, b"
    assert [name for name, _ in headers].count("access-control-allow-headers") == 1


@pytest.mark.parametrize("request_headers", [None, ""])
def test_cors_omits_absent_or_empty_request_headers(request_headers: str | None) -> None:
    assert "access-control-allow-headers" not in dict(http.cors_headers("test", request_headers))


def test_cache_for_a_year() -> None:
    headers = dict(http.cache_for_a_year(0.0))
    assert headers == {"cache-control": "public, max-age=31536000", "expires": "Fri, 01 Jan 1971 00:00:00 GMT"}
    # Suite checks: "public" and max-age of at least seven digits.
    assert re.search("max-age=[1-9][0-9]{6}", headers["cache-control"])


def test_cache_for_a_year_counts_from_now() -> None:
    assert dict(http.cache_for_a_year(86_400.0))["expires"] == "Sat, 02 Jan 1971 00:00:00 GMT"


@pytest.mark.parametrize(
    ("methods", "allow"), [(("POST", "OPTIONS"), ["OPTIONS", "POST"]), (("GET", "OPTIONS"), ["OPTIONS", "GET"])]
)
def test_preflight_headers(methods: tuple[str, ...], allow: list[str]) -> None:
    headers = http.preflight_headers(methods, 0.0)
    as_dict = dict(headers)
    assert len(as_dict) == len(headers)
    assert as_dict["cache-control"] == "public, max-age=31536000"
    assert as_dict["expires"] == "Fri, 01 Jan 1971 00:00:00 GMT"
    assert int(as_dict["access-control-max-age"]) > 1_000_000
    # Suite verify_options: every requested method is in the list.
    assert sorted(m.strip() for m in as_dict["access-control-allow-methods"].split(",")) == sorted(allow)


@pytest.mark.parametrize(("jsessionid", "value"), [(None, "dummy"), ("", "dummy"), ("abc", "abc")])
def test_cookie_header(jsessionid: str | None, value: str) -> None:
    name, header = http.cookie_header(jsessionid)
    assert name == "set-cookie"
    first, second, *rest = header.split(";")
    # What the suite checks: the first part exactly, the second lower-cased.
    assert first == f"JSESSIONID={value}"
    assert second.strip().lower() == "path=/"
    assert [part.strip() for part in rest] == ["HttpOnly"]


@pytest.mark.parametrize(
    ("secure", "samesite", "attributes"),
    [
        (False, None, ["HttpOnly"]),
        (True, None, ["HttpOnly", "Secure"]),
        (False, "lax", ["HttpOnly", "SameSite=Lax"]),
        (False, "strict", ["HttpOnly", "SameSite=Strict"]),
        (True, "none", ["HttpOnly", "SameSite=None", "Secure"]),
    ],
)
def test_cookie_header_attributes(secure: bool, samesite: str | None, attributes: list[str]) -> None:
    _, header = http.cookie_header("abc", secure=secure, samesite=samesite)
    first, second, *rest = (part.strip() for part in header.split(";"))
    assert (first, second) == ("JSESSIONID=abc", "path=/")
    assert rest == attributes


# -- static endpoints --------------------------------------------------------------------------


def test_greeting_and_not_found_bodies() -> None:
    assert http.GREETING == "Welcome to SockJS!\n"
    assert len(http.GREETING.encode()) == 19
    assert http.NOT_FOUND == "404 Error: Page not found\n"


@pytest.mark.parametrize(("websocket", "cookie_needed"), [(True, False), (False, True)])
def test_info_body(websocket: bool, cookie_needed: bool) -> None:
    body = http.info_body(websocket=websocket, cookie_needed=cookie_needed, entropy=4_294_967_295, transports=["xhr"])
    assert json.loads(body) == {
        "websocket": websocket,
        "cookie_needed": cookie_needed,
        "origins": ["*:*"],
        "entropy": 4_294_967_295,
        "transports": ["xhr"],
    }
    assert ": " not in body and ", " not in body


IFRAME_TEMPLATE = """<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src="SOCKJS_URL"></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe();
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>"""


@pytest.mark.parametrize(
    "sockjs_url", ["/static/sockjs.js", "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js"]
)
def test_iframe_page_body(sockjs_url: str) -> None:
    body, _ = http.iframe_page(sockjs_url)
    assert body.decode().strip() == IFRAME_TEMPLATE.replace("SOCKJS_URL", sockjs_url)


def test_iframe_page_etag_is_stable_and_a_quoted_md5() -> None:
    body, etag = http.iframe_page("/sockjs.js")
    again_body, again_etag = http.iframe_page("/sockjs.js")
    assert (again_body, again_etag) == (body, etag)
    assert etag == '"' + hashlib.md5(body).hexdigest() + '"'
    assert re.fullmatch('"[0-9a-f]{32}"', etag)


def test_iframe_page_etag_follows_the_body() -> None:
    assert http.iframe_page("/a.js")[1] != http.iframe_page("/b.js")[1]


def test_iframe_page_escapes_the_url_attribute() -> None:
    body, _ = http.iframe_page('/s.js?a=1&b="2"<')
    assert b'<script src="/s.js?a=1&amp;b=&quot;2&quot;&lt;"></script>' in body
    # The suite's regex, src="([^"]*)", still finds the whole attribute.
    assert re.search(rb'<script src="([^"]*)"></script>', body)


def test_iframe_page_takes_braces_in_the_url_literally() -> None:
    body, _ = http.iframe_page("/sockjs-{version}.js")
    assert b'<script src="/sockjs-{version}.js"></script>' in body


# -- conditional requests and form bodies ------------------------------------------------------

ETAG = '"0123abcd"'


@pytest.mark.parametrize(
    ("if_none_match", "matches"),
    [
        (ETAG, True),
        ("W/" + ETAG, True),
        ("*", True),
        (" * ", True),
        ('"x", ' + ETAG, True),
        ('"x",W/' + ETAG + ' , "y"', True),
        ('"x"', False),
        ('W/"x", "y"', False),
        ("0123abcd", False),
        ("x" + ETAG, False),
        (ETAG + "x", False),
        ("w/" + ETAG, False),  # the weak prefix is case-sensitive
        ("", False),
        ("*, " + '"x"', False),  # "*" stands alone or is not "*"
    ],
)
def test_etag_matches(if_none_match: str, matches: bool) -> None:
    assert http.etag_matches(if_none_match, ETAG) is matches


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/x-www-form-urlencoded", True),
        ("Application/X-WWW-Form-Urlencoded", True),
        ("application/x-www-form-urlencoded; charset=UTF-8", True),
        (" APPLICATION/X-WWW-FORM-URLENCODED;charset=utf-8", True),
        ("application/x-www-form-urlencodedx", False),
        ("text/plain", False),
        ("", False),
        (None, False),
    ],
)
def test_is_form(content_type: str | None, expected: bool) -> None:
    assert http.is_form(content_type) is expected


@pytest.mark.parametrize("sockjs_url", ["/a.js?x=1&y='2'", 'http://h/"<>&.js'])
def test_iframe_page_escapes_with_html_escape(sockjs_url: str) -> None:
    body, _ = http.iframe_page(sockjs_url)
    assert f'<script src="{html.escape(sockjs_url, quote=True)}"></script>'.encode() in body


# -- origins -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "normal"),
    [
        ("https://App.Example", "https://app.example"),
        ("http://a.example:8080/", "http://a.example:8080"),
        (" http://[::1]:8000 ", "http://[::1]:8000"),
        ("http://localhost", "http://localhost"),
        ("chrome-extension://abcdef", "chrome-extension://abcdef"),
    ],
)
def test_normalize_origin(origin: str, normal: str) -> None:
    assert http.normalize_origin(origin) == normal


@pytest.mark.parametrize(
    "origin",
    [
        "app.example",
        "http://a/b",
        "http://a?x",
        "http://a#x",
        "http://u@a",
        "null",
        "*",
        "http://",
        "http://a:b",
        "//a",
    ],
)
def test_normalize_origin_refuses_what_is_not_an_origin(origin: str) -> None:
    with pytest.raises(ValueError, match="not an origin"):
        http.normalize_origin(origin)


ALLOWED = frozenset({"https://app.example", "http://localhost:3000"})


@pytest.mark.parametrize(
    ("origin", "referer", "host", "fetch_site", "allowed"),
    [
        ("https://app.example", None, "sockjs.example", None, True),
        ("HTTPS://APP.EXAMPLE", None, "sockjs.example", "cross-site", True),
        ("http://localhost:3000", None, "sockjs.example", None, True),
        ("http://app.example", None, "sockjs.example", None, False),  # another scheme
        ("https://app.example:444", None, "sockjs.example", None, False),
        ("https://evil.example", None, "sockjs.example", None, False),
        ("https://evil.example", "https://app.example/", "sockjs.example", None, False),  # Origin wins
        ("null", None, "sockjs.example", None, False),
        ("https://sockjs.example", None, "sockjs.example", "same-origin", True),  # its own iframe page
        ("http://sockjs.example:8000", None, "Sockjs.Example:8000", None, True),
        (None, "https://app.example/page?x=1#y", "sockjs.example", "cross-site", True),
        (None, "https://evil.example/page", "sockjs.example", "cross-site", False),
        (None, "garbage", "sockjs.example", None, False),
        (None, None, "sockjs.example", None, True),  # not a browser
        (None, None, "sockjs.example", "same-origin", True),
        (None, None, "sockjs.example", "none", True),
        (None, None, "sockjs.example", "cross-site", False),  # a browser that hid the origin
        (None, None, "sockjs.example", "same-site", False),
        ("https://sockjs.example", None, None, None, False),
    ],
)
def test_origin_allowed(
    origin: str | None, referer: str | None, host: str | None, fetch_site: str | None, allowed: bool
) -> None:
    assert http.origin_allowed(ALLOWED, origin=origin, referer=referer, host=host, fetch_site=fetch_site) is allowed


def test_any_origin_without_a_list() -> None:
    assert http.origin_allowed(None, origin="null", referer=None, host=None, fetch_site="cross-site")


def test_info_origins() -> None:
    assert http.info_origins(None) == ["*:*"]
    origins = frozenset({"https://a.example", "http://b.example:8080", "http://c.example", "ws://d"})
    assert http.info_origins(origins) == ["b.example:8080", "c.example:80", "a.example:443", "d:*"]

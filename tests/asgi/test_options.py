"""Option validation: every bad option is refused with an error that names it."""

from __future__ import annotations

import math
from typing import Any

import pytest

from sockjs_asgi import SockJSApp

from .support import echo, serving

pytestmark = pytest.mark.anyio

NUMBERS = ["heartbeat_delay", "disconnect_delay"]
INTEGERS = ["response_limit", "max_request_size", "max_pending_size", "max_incoming_messages"]

BAD_OPTIONS: list[tuple[str, Any]] = [
    *[(name, value) for name in NUMBERS for value in (0, -1, -0.5, math.nan, math.inf, "1", None, True)],
    *[(name, value) for name in INTEGERS for value in (0, -1, 1.5, 1.0, "10", None, True, math.inf)],
    ("cookie_needed", "yes"),
    ("cookie_needed", 1),
    ("cookie_needed", None),
    ("verify_ip", "no"),
    ("verify_ip", 0),
    ("sockjs_url", "ftp://example.com/sockjs.js"),
    ("sockjs_url", "sockjs.js"),
    ("sockjs_url", ""),
    ("sockjs_url", None),
    ("sockjs_url", b"/sockjs.js"),
    ("authorize", 3),
    ("authorize", "yes"),
    ("disabled_transports", ["xhr_send"]),
    ("disabled_transports", ["jsonp_send"]),
    ("disabled_transports", ["XHR"]),
    ("disabled_transports", ["nope"]),
    ("disabled_transports", "websocket"),
    *[("max_sessions", value) for value in (0, -1, 1.5, "10", True, math.inf)],
    ("cookie_secure", "yes"),
    ("cookie_secure", 1),
    ("cookie_samesite", "sometimes"),
    ("cookie_samesite", ""),
    ("cookie_samesite", 1),
    ("allowed_origins", "https://app.example"),
    ("allowed_origins", ["app.example"]),
    ("allowed_origins", ["https://app.example/chat"]),
    ("allowed_origins", ["null"]),
    ("allowed_origins", ["*"]),
    ("allowed_origins", [3]),
    ("allowed_origins", 3),
]


@pytest.mark.parametrize(("name", "value"), BAD_OPTIONS, ids=lambda item: repr(item))
async def test_bad_option_is_refused_naming_it(name: str, value: Any) -> None:
    with pytest.raises((TypeError, ValueError)) as raised:
        SockJSApp(echo, **{name: value})
    assert name in str(raised.value)


@pytest.mark.parametrize("value", [None, 5, 1.5, object(), [["xhr"]]])
async def test_disabled_transports_not_a_collection_is_refused_naming_it(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)) as raised:
        SockJSApp(echo, disabled_transports=value)
    assert "disabled_transports" in str(raised.value)


@pytest.mark.parametrize("name", ["heartbeat", "prefix", "websocket", "response_limt", "transports"])
async def test_unknown_option_is_refused_naming_it(name: str) -> None:
    with pytest.raises(TypeError) as raised:
        SockJSApp(echo, **{name: 1})  # type: ignore[arg-type]
    assert name in str(raised.value)


async def test_misspelt_option_is_a_type_error_at_run_time_and_for_mypy() -> None:
    """The options are real keyword arguments.  The ``type: ignore`` comments below are the
    typing test: ``mypy --strict`` (nox -s lint) warns about an unused ignore, so it fails if
    the options ever become ``**options: Any`` again and these calls type-check."""
    with pytest.raises(TypeError, match="heartbeat_dealy"):
        SockJSApp(echo, heartbeat_dealy=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="heartbeat_delay"):
        SockJSApp(echo, heartbeat_delay="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="disabled_transports"):
        SockJSApp(echo, disabled_transports=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="positional"):
        SockJSApp(echo, "/sockjs.js")  # type: ignore[call-arg]


@pytest.mark.parametrize("handler", [None, "echo", 3])
async def test_handler_must_be_callable(handler: Any) -> None:
    with pytest.raises(TypeError, match="handler"):
        SockJSApp(handler)


async def test_good_options_are_accepted() -> None:
    async def authorize(request: object) -> bool:
        return True

    app = SockJSApp(
        echo,
        sockjs_url="http://cdn.example/sockjs.js",
        heartbeat_delay=0.001,
        disconnect_delay=1,
        response_limit=1,
        cookie_needed=True,
        verify_ip=True,
        disabled_transports={"htmlfile", "jsonp"},
        max_request_size=1,
        max_pending_size=1,
        max_incoming_messages=1,
        authorize=authorize,
    )
    assert app.options.heartbeat_delay == 0.001
    assert app.options.response_limit == 1
    assert app.options.disabled_transports == frozenset({"htmlfile", "jsonp"})


async def test_samesite_none_is_refused_with_a_cookie_that_is_never_secure() -> None:
    with pytest.raises(ValueError, match="cookie_samesite"):
        SockJSApp(echo, cookie_samesite="none", cookie_secure=False)


async def test_new_options_are_normalized() -> None:
    options = SockJSApp(
        echo,
        allowed_origins=(origin for origin in ["https://App.Example/", "http://localhost:3000"]),
        cookie_samesite="Strict",  # type: ignore[arg-type]
        cookie_secure=True,
        max_sessions=10,
    ).options
    assert options.allowed_origins == frozenset({"https://app.example", "http://localhost:3000"})
    assert options.cookie_samesite == "strict"
    assert (options.cookie_secure, options.max_sessions) == (True, 10)
    defaults = SockJSApp(echo).options
    assert (defaults.allowed_origins, defaults.max_sessions) == (None, None)
    assert (defaults.cookie_secure, defaults.cookie_samesite) == (None, "lax")


async def test_defaults_follow_the_protocol() -> None:
    """PROTOCOL.md 7.4: 25 s heartbeats, 5 s disconnect delay, 128 KiB response limit, no cookie."""
    options = SockJSApp(echo).options
    assert options.heartbeat_delay == 25
    assert options.disconnect_delay == 5
    assert options.response_limit == 128 * 1024
    assert options.cookie_needed is False
    assert options.disabled_transports == frozenset()
    async with serving(echo) as client:
        assert (await client.request("GET", "/info")).status == 200


async def test_disabled_transports_accepts_any_iterable() -> None:
    for value in (["jsonp"], ("jsonp",), {"jsonp"}, frozenset({"jsonp"}), (name for name in ["jsonp"])):
        assert SockJSApp(echo, disabled_transports=value).options.disabled_transports == {"jsonp"}

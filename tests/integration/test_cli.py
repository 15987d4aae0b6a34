"""``python -m sockjs_asgi module:handler``: a real subprocess on a free port, spoken to in SockJS."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from sockjs_asgi import SockJSApp, SockJSRouter
from sockjs_asgi.__main__ import build_app, parse_args

from ._serve_matrix import ROOT, TIMEOUT, Server, serve, session_url, xhr_polling_echo


def test_a_handler_is_served_with_the_options_given_as_flags() -> None:
    options = ("--prefix", "/echo", "--heartbeat-delay", "0.2", "--disabled-transports", "websocket, eventsource")
    server = Server("sockjs_asgi", options, adopts_socket=False)
    with (
        serve(server, "examples.echo:echo", ready_path="/echo/info") as running,
        httpx.Client(timeout=TIMEOUT) as client,
    ):
        service = running.base_url + "/echo"
        assert client.get(service).text == "Welcome to SockJS!\n"
        info = client.get(service + "/info").json()
        assert info["websocket"] is False
        session = session_url(service)
        xhr_polling_echo(client, session, "hello, world")
        idle = client.post(session + "/xhr")  # heartbeat_delay 0.2 s: an idle poll ends with "h"
        assert (idle.status_code, idle.text) == (200, "h\n")
        assert client.get(session_url(service) + "/eventsource").status_code == 404
        assert client.get(running.base_url + "/elsewhere").status_code == 404
        assert running.errors() == []


def test_a_multiplexer_is_a_handler_too() -> None:
    server = Server("sockjs_asgi", (), adopts_socket=False)
    with (
        serve(server, "examples.multiplex:mux", ready_path="/info") as running,
        httpx.Client(timeout=TIMEOUT) as client,
    ):
        session = session_url(running.base_url)
        assert client.post(session + "/xhr").text == "o\n"
        sent = client.post(session + "/xhr_send", content=json.dumps(["sub,echo", "msg,echo,a,b"]))
        assert sent.status_code == 204
        assert client.post(session + "/xhr").text == "a" + json.dumps(["msg,echo,a,b"]) + "\n"
        assert running.errors() == []


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        (["no_such_module:handler"], "No module named 'no_such_module'"),
        (["examples.echo"], "expected module:attribute"),
        (["examples.echo:app", "--heartbeat-delay", "1"], "is a SockJSApp already"),
        (["examples.echo:echo", "--heartbeat-delay", "-1"], "heartbeat_delay must be positive"),
        (["examples.echo:echo", "--heartbeat-delay", "soon"], "invalid float value: 'soon'"),
    ],
)
def test_mistakes_end_with_a_message_not_a_traceback(arguments: list[str], error: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sockjs_asgi", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode != 0
    assert error in result.stderr
    assert "Traceback" not in result.stderr


def test_every_option_is_a_flag() -> None:
    arguments = parse_args(
        [
            "examples.echo:echo",
            "--sockjs-url",
            "/sockjs.js",
            "--heartbeat-delay",
            "1.5",
            "--disconnect-delay",
            "2",
            "--response-limit",
            "4096",
            "--cookie-needed",
            "--no-verify-ip",
            "--disabled-transports",
            "jsonp,htmlfile",
            "--max-request-size",
            "10",
            "--max-pending-size",
            "20",
            "--max-incoming-messages",
            "30",
            "--authorize",
            "examples.fastapi_app:authorize",
            "--allowed-origins",
            "https://a.example, https://b.example",
            "--cookie-secure",
            "--cookie-samesite",
            "strict",
            "--max-sessions",
            "40",
        ]
    )
    app = build_app(arguments)
    assert isinstance(app, SockJSApp)
    options = app.options
    assert (options.sockjs_url, options.heartbeat_delay, options.disconnect_delay) == ("/sockjs.js", 1.5, 2.0)
    assert (options.response_limit, options.cookie_needed, options.verify_ip) == (4096, True, False)
    assert options.disabled_transports == frozenset({"jsonp", "htmlfile"})
    assert (options.max_request_size, options.max_pending_size, options.max_incoming_messages) == (10, 20, 30)
    from examples.fastapi_app import authorize

    assert options.authorize is authorize
    assert options.allowed_origins == frozenset({"https://a.example", "https://b.example"})
    assert (options.cookie_secure, options.cookie_samesite, options.max_sessions) == (True, "strict", 40)
    # Options left out keep SockJSApp's defaults; --prefix mounts the service.
    defaults = build_app(parse_args(["examples.echo:echo", "--prefix", "/echo/"]))
    assert isinstance(defaults, SockJSRouter)
    assert defaults.services["/echo"].options == SockJSApp(lambda conn: None).options  # type: ignore[arg-type,return-value]

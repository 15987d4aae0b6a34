"""max_sessions: past the limit a new session is refused with a close frame the client can
read, on every transport, and no handler runs for it."""

from __future__ import annotations

import anyio
import pytest

from sockjs_asgi import SockJSApp
from sockjs_asgi.testing import TestClient

from .support import TIMEOUT, Recorder, read_all, session_url

pytestmark = pytest.mark.anyio

TOO_MANY = 'c[1013,"Too many sessions"]'
RECEIVERS = {
    "xhr": ("POST", "", TOO_MANY + "\n"),
    "xhr_streaming": ("POST", "", "h" * 2048 + "\n" + TOO_MANY + "\n"),
    "eventsource": ("GET", "", "\r\ndata: " + TOO_MANY + "\r\n\r\n"),
    "jsonp": ("GET", "?c=cb", '/**/cb("c[1013,\\"Too many sessions\\"]");\r\n'),
}


async def test_a_full_service_refuses_new_sessions_on_every_transport() -> None:
    recorder = Recorder(echo=True)
    app = SockJSApp(recorder, max_sessions=2)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(app) as client, client.websocket(session_url() + "/websocket") as first:
            assert await first.receive_text() == "o"
            polled = session_url()
            assert (await client.request("POST", polled + "/xhr")).body == b"o\n"
            assert app.is_full
            for transport, (method, query, body) in RECEIVERS.items():
                response = await client.request(method, session_url() + "/" + transport + query)
                assert (response.status, response.text) == (200, body), transport
            async with client.stream("GET", session_url() + "/htmlfile?c=cb") as htmlfile:
                assert TOO_MANY.replace('"', '\\"') in b"".join(await read_all(htmlfile)).decode()
            async with client.websocket(session_url() + "/websocket") as refused:
                assert await refused.receive_text() == TOO_MANY
                assert await refused.receive_text() is None
                assert (refused.close_code, refused.close_reason) == (1013, "Too many sessions")
            async with client.websocket("/websocket") as raw:
                assert await raw.receive_text() is None
                assert (raw.close_code, raw.close_reason) == (1013, "Too many sessions")
            for transport in ("websocket", "xhr", "xhr_streaming"):
                with pytest.raises(AssertionError, match="1013, 'Too many sessions'"):
                    async with client.connect(transport=transport):
                        pass
            # The open sessions go on, and a session that exists is no new session.
            assert (await client.request("POST", polled + "/xhr_send", body=b'["x"]')).status == 204
            assert (await client.request("POST", polled + "/xhr")).body == b'a["x"]\n'
            await anyio.wait_all_tasks_blocked()
            assert len(recorder.connections) == 2
            # A websocket that leaves makes room at once.
            await first.close()
            await anyio.wait_all_tasks_blocked()
            assert not app.is_full
            async with client.websocket("/websocket"):
                await anyio.wait_all_tasks_blocked()
                assert app.is_full
                assert len(recorder.connections) == 3


async def test_the_limit_holds_for_a_burst_of_concurrent_opens() -> None:
    app = SockJSApp(Recorder(), max_sessions=3)
    answers: list[str] = []
    with anyio.fail_after(TIMEOUT):
        async with TestClient(app) as client:

            async def open_one() -> None:
                answers.append((await client.request("POST", session_url() + "/xhr")).text)

            async with anyio.create_task_group() as task_group:
                for _ in range(12):
                    task_group.start_soon(open_one)
    assert sorted(answers) == sorted(["o\n"] * 3 + [TOO_MANY + "\n"] * 9)


async def test_no_limit_by_default() -> None:
    app = SockJSApp(Recorder())
    with anyio.fail_after(TIMEOUT):
        async with TestClient(app) as client:
            for _ in range(50):
                assert (await client.request("POST", session_url() + "/xhr")).body == b"o\n"
            assert not app.is_full

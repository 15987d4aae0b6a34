"""What an HTTP session request costs, counted rather than timed (issue #8).

The response headers of a session transport depend only on the transport and the request's
``Origin`` (unless a cookie or requested headers are echoed): they are built and encoded once,
not for every request, and what a server or middleware does to the list it gets stays out of
later responses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import anyio
import anyio.lowlevel
import pytest

from sockjs_asgi import SockJSApp, _app, _http, _loop
from sockjs_asgi.testing import Response, TestClient

from .support import TIMEOUT, Message, Receive, Scope, Send, echo, header, session_url, values

pytestmark = pytest.mark.anyio


@contextmanager
def counting_encodings(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Count the header lists encoded in the block."""
    real = _http.encode_headers
    encoded = [0]

    def encode_headers(headers: Sequence[tuple[str, str]]) -> _http.RawHeaders:
        encoded[0] += 1
        return real(headers)

    with monkeypatch.context() as patch:
        patch.setattr(_http, "encode_headers", encode_headers)
        yield encoded


async def round_trip(client: TestClient, url: str, message: str, origin: str | None = None) -> list[Response]:
    headers = {"Origin": origin} if origin is not None else None
    sent = await client.request("POST", url + "/xhr_send", body=b'["%s"]' % message.encode(), headers=headers)
    assert sent.status == 204
    polled = await client.request("POST", url + "/xhr", headers=headers)
    assert polled.body == b'a["%s"]\n' % message.encode()
    return [sent, polled]


async def test_session_responses_encode_their_headers_once_per_transport_and_origin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = SockJSApp(echo)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(app) as client:
            url = session_url()
            with counting_encodings(monkeypatch) as encoded:
                assert (await client.request("POST", url + "/xhr")).body == b"o\n"
                await round_trip(client, url, "first")
                assert encoded[0] == 2  # xhr, then xhr_send
                for number in range(20):
                    await round_trip(client, url, f"m{number}")
                await round_trip(client, url, "other", origin="https://a.example")
                assert encoded[0] == 4  # the new origin's, once per transport


@pytest.mark.parametrize("origin", [None, "https://a.example", "null", "https://b.example"])
async def test_each_origin_gets_its_own_cors_headers(origin: str | None) -> None:
    """Whatever origins came before (headers kept for one are not another's)."""
    app = SockJSApp(echo)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(app) as client:
            url = session_url()
            assert (await client.request("POST", url + "/xhr")).body == b"o\n"
            for other in ("https://b.example", None, "https://a.example"):
                await round_trip(client, url, "x", origin=other)
            for response in await round_trip(client, url, "y", origin=origin):
                assert header(response, "access-control-allow-origin") == (origin or "*")
                assert header(response, "access-control-allow-credentials") == (None if origin is None else "true")
                assert values(response, "vary") == ["Origin"]


async def test_headers_are_kept_for_a_bounded_number_of_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_app, "HEADER_CACHE_SIZE", 4)
    app = SockJSApp(echo)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(app) as client:
            url = session_url()
            assert (await client.request("POST", url + "/xhr")).body == b"o\n"
            for number in range(10):
                origin = f"https://{number}.example"
                for response in await round_trip(client, url, "x", origin=origin):
                    assert header(response, "access-control-allow-origin") == origin
            assert len(app._response_header_cache) == 4


async def test_a_middleware_adding_headers_changes_no_later_response() -> None:
    """Starlette's ``MutableHeaders(scope=message)`` appends to the list the app sent."""
    app = SockJSApp(echo)

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        async def add_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message["headers"]
                assert isinstance(headers, list)
                headers.append((b"x-added", b"1"))
            await send(message)

        await app(scope, receive, add_header if scope["type"] == "http" else send)

    with anyio.fail_after(TIMEOUT):
        async with TestClient(middleware) as client:
            url = session_url()
            assert (await client.request("POST", url + "/xhr")).body == b"o\n"
            for number in range(3):
                for response in await round_trip(client, url, f"m{number}"):
                    assert values(response, "x-added") == ["1"]
                    assert values(response, "content-type") != []
                    assert len(values(response, "access-control-allow-origin")) == 1


async def test_the_loop_s_call_soon_is_asyncio_s_only(anyio_backend_name: str) -> None:
    call_soon = _loop.call_soon()
    if anyio_backend_name != "asyncio":
        assert call_soon is None
        return
    assert call_soon is not None and call_soon == asyncio.get_running_loop().call_soon
    called: list[bool] = []
    call_soon(lambda: called.append(asyncio.current_task() is None))
    assert not called  # not before this task yields
    await anyio.lowlevel.checkpoint()
    assert called == [True]  # from the loop, with no task


async def test_the_loop_helpers_are_anyios(anyio_backend_name: str) -> None:
    clock = _loop.clock()
    before = anyio.current_time()
    now = clock()
    assert before <= now <= anyio.current_time()
    await anyio.sleep(0.01)
    assert clock() > now
    waiter = _loop.new_waiter()
    woken = []

    async def wait() -> None:
        if isinstance(waiter, anyio.Event):
            await waiter.wait()
        else:
            await waiter
        woken.append(True)

    assert isinstance(waiter, asyncio.Future if anyio_backend_name == "asyncio" else anyio.Event)
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        assert not woken
        if isinstance(waiter, anyio.Event):
            waiter.set()
        else:
            waiter.set_result(None)
    assert woken == [True]


async def test_a_round_trip_makes_one_event_the_handler_waits_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The echo handler waits for each message once; the send request and the poll that finds
    the answer waiting wait for nothing."""
    real = _loop.new_waiter
    made = [0]

    def new_waiter() -> _loop.Waiter:
        made[0] += 1
        return real()

    app = SockJSApp(echo)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(app) as client:
            url = session_url()
            assert (await client.request("POST", url + "/xhr")).body == b"o\n"
            await round_trip(client, url, "first")
            monkeypatch.setattr(_loop, "new_waiter", new_waiter)
            for number in range(10):
                await round_trip(client, url, f"m{number}")
            assert made[0] == 10

"""Session life cycle seen from the application: aborts, handler errors, logging, closing,
shutdown, authorization and verify_ip (PROTOCOL.md 7, STYLE.md "The public API")."""

from __future__ import annotations

import logging

import anyio
import anyio.lowlevel
import pytest

from sockjs_asgi import Connection, ConnectionClosed, SockJSApp
from sockjs_asgi.testing import Response, TestClient, WebSocketDenied

from .support import (
    GO_AWAY,
    INTERRUPTED,
    TIMEOUT,
    XHR_STREAMING_PRELUDE,
    Lifespan,
    ManualRequest,
    Recorder,
    echo,
    read_all,
    serving,
    session_url,
)

pytestmark = pytest.mark.anyio

INTERNAL_ERROR = 'c[1011,"Internal server error"]'
SHUTDOWN = 'c[1001,"Server shutting down"]'


def loud_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno > logging.DEBUG]


# -- client aborts -----------------------------------------------------------------------


async def test_abort_xhr_streaming(caplog: pytest.LogCaptureFixture) -> None:
    """sockjs-protocol HandlingClose.test_abort_xhr_streaming."""
    caplog.set_level(logging.DEBUG)
    recorder = Recorder()
    async with serving(recorder) as client:
        url = session_url()
        async with client.stream("POST", url + "/xhr_streaming") as first:
            assert await first.read() == XHR_STREAMING_PRELUDE
            assert await first.read() == b"o\n"
            async with client.stream("POST", url + "/xhr_streaming") as second:
                assert (await read_all(second))[1:] == [b'c[2010,"Another connection still open"]\n']
        # Leaving the block aborted the first request.
        await recorder.finished.wait()
        async with client.stream("POST", url + "/xhr_streaming") as third:
            assert await third.read() == XHR_STREAMING_PRELUDE
            assert await third.read() in (b"o\n", INTERRUPTED.encode() + b"\n")
    assert loud_records(caplog) == []


async def test_abort_xhr_polling(caplog: pytest.LogCaptureFixture) -> None:
    """sockjs-protocol HandlingClose.test_abort_xhr_polling, without its sleep.

    The waiting poll is driven by hand: TestClient cannot abort a request whose response has
    not started (see test_testclient.py)."""
    caplog.set_level(logging.DEBUG)
    recorder = Recorder()
    app = SockJSApp(recorder)
    with anyio.fail_after(TIMEOUT):
        async with TestClient(app) as client, anyio.create_task_group() as task_group:
            url = session_url()
            assert (await client.request("POST", url + "/xhr")).body == b"o\n"
            waiting = ManualRequest(app, "POST", url + "/xhr")
            task_group.start_soon(waiting.run)
            await anyio.wait_all_tasks_blocked()  # the poll is attached
            second = await client.request("POST", url + "/xhr")
            assert second.text == 'c[2010,"Another connection still open"]\n'
            waiting.abort()
            await waiting.returned.wait()
            await recorder.finished.wait()
            third = await client.request("POST", url + "/xhr")
            assert third.text in ("o\n", INTERRUPTED + "\n")
    assert loud_records(caplog) == []


async def test_abort_eventsource() -> None:
    recorder = Recorder()
    async with serving(recorder) as client:
        url = session_url()
        async with client.stream("GET", url + "/eventsource") as first:
            assert await first.read() == b"\r\n"
            assert await first.read() == b"data: o\r\n\r\n"
        await recorder.finished.wait()
        conn = recorder.connections[0]
        assert conn.is_closed
        # PROTOCOL.md 7.6: a fresh session, or the 1002 close frame, replayed like any close frame.
        reply = (await client.request("POST", url + "/xhr")).text
        assert reply in ("o\n", INTERRUPTED + "\n")
        if reply == INTERRUPTED + "\n":
            assert (await client.request("POST", url + "/xhr")).text == INTERRUPTED + "\n"
        else:
            assert len(recorder.connections) == 2


async def test_websocket_client_going_away_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    finished = anyio.Event()

    async def talker(conn: Connection) -> None:
        try:
            while True:
                await conn.send("tick")
                await anyio.lowlevel.checkpoint()
        finally:
            finished.set()

    async with serving(talker) as client:
        async with client.websocket(session_url() + "/websocket") as socket:
            assert await socket.receive_text() == "o"
            assert (await socket.receive_text() or "").startswith('a["tick"')
        await finished.wait()
    assert loud_records(caplog) == []


async def test_raw_websocket_client_going_away_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    recorder = Recorder(echo=True)
    async with serving(recorder) as client:
        async with client.websocket("/websocket") as raw:
            await raw.send_text("x")
            assert await raw.receive_text() == "x"
        await recorder.finished.wait()
    assert loud_records(caplog) == []


async def test_http_client_going_away_while_the_handler_sends_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    finished = anyio.Event()

    async def talker(conn: Connection) -> None:
        try:
            while True:
                await conn.send("tick")
        finally:
            finished.set()

    async with serving(talker, max_pending_size=16) as client:
        async with client.stream("POST", session_url() + "/xhr_streaming") as response:
            assert await response.read() == XHR_STREAMING_PRELUDE
            assert await response.read() == b"o\n"
            assert (await response.read() or b"").startswith(b'a["tick"')
        await finished.wait()
    assert loud_records(caplog) == []


# -- handler errors ----------------------------------------------------------------------


async def failing(conn: Connection) -> None:
    async for message in conn:
        raise RuntimeError(f"boom on {message}")


def assert_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    loud = loud_records(caplog)
    assert len(loud) == 1, [record.getMessage() for record in loud]
    record = loud[0]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert str(record.exc_info[1]) == "boom on x"


async def test_handler_exception_over_xhr(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(failing) as client:
        url = session_url()
        assert (await client.request("POST", url + "/xhr")).body == b"o\n"
        assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 204
        assert (await client.request("POST", url + "/xhr")).text == INTERNAL_ERROR + "\n"
        assert (await client.request("POST", url + "/xhr")).text == INTERNAL_ERROR + "\n"
    assert_logged_once(caplog)


async def test_handler_exception_over_xhr_streaming(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(failing) as client:
        url = session_url()
        async with client.stream("POST", url + "/xhr_streaming") as response:
            assert await response.read() == XHR_STREAMING_PRELUDE
            assert await response.read() == b"o\n"
            assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 204
            assert await read_all(response) == [INTERNAL_ERROR.encode() + b"\n"]
    assert_logged_once(caplog)


async def test_handler_exception_over_websocket(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(failing) as client, client.websocket(session_url() + "/websocket") as socket:
        assert await socket.receive_text() == "o"
        await socket.send_text('["x"]')
        assert await socket.receive_text() == INTERNAL_ERROR
        assert await socket.receive_text() is None
    assert_logged_once(caplog)


async def test_handler_exception_over_raw_websocket(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(failing) as client, client.websocket("/websocket") as socket:
        await socket.send_text("x")
        assert await socket.receive_text() is None
        assert socket.close_code == 1011
    assert_logged_once(caplog)


async def test_handler_exception_before_open_frame(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(conn: Connection) -> None:
        raise RuntimeError("boom on x")

    async with serving(broken) as client:
        url = session_url()
        assert (await client.request("POST", url + "/xhr")).body == b"o\n"
        assert (await client.request("POST", url + "/xhr")).text == INTERNAL_ERROR + "\n"
    assert_logged_once(caplog)


async def test_handler_exception_without_lifespan(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(failing, lifespan=False) as client:
        url = session_url()
        assert (await client.request("POST", url + "/xhr")).body == b"o\n"
        assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 204
        assert (await client.request("POST", url + "/xhr")).text == INTERNAL_ERROR + "\n"
    assert_logged_once(caplog)


async def test_one_failing_session_does_not_disturb_another(caplog: pytest.LogCaptureFixture) -> None:
    async def picky(conn: Connection) -> None:
        async for message in conn:
            if message == "x":
                raise RuntimeError("boom on x")
            await conn.send(message)

    async with serving(picky) as client:
        good, bad = session_url(), session_url()
        for url in (good, bad):
            assert (await client.request("POST", url + "/xhr")).body == b"o\n"
        assert (await client.request("POST", bad + "/xhr_send", body=b'["x"]')).status == 204
        assert (await client.request("POST", bad + "/xhr")).text == INTERNAL_ERROR + "\n"
        assert (await client.request("POST", good + "/xhr_send", body=b'["fine"]')).status == 204
        assert (await client.request("POST", good + "/xhr")).text == 'a["fine"]\n'
    assert_logged_once(caplog)


# -- closing from the application --------------------------------------------------------


async def test_handler_return_closes_with_go_away() -> None:
    async def short(conn: Connection) -> None:
        await conn.send("only")

    async with serving(short) as client:
        url = session_url()
        assert (await client.request("POST", url + "/xhr")).body == b"o\n"
        assert (await client.request("POST", url + "/xhr")).text == 'a["only"]\n'
        assert (await client.request("POST", url + "/xhr")).text == GO_AWAY + "\n"


@pytest.mark.parametrize("transport", ["xhr", "websocket", "raw_websocket"])
async def test_send_and_receive_after_close_raise_connection_closed(
    transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    outcome: list[str] = []
    done = anyio.Event()

    async def handler(conn: Connection) -> None:
        await conn.close()
        assert conn.is_closed
        assert (conn.close_code, conn.close_reason) == (3000, "Go away!")
        await conn.close(4000, "ignored")  # closing twice does nothing
        for attempt in (conn.send("late"), conn.receive()):
            try:
                await attempt
            except ConnectionClosed:
                outcome.append("raised")
        async for _ in conn:
            outcome.append("iterated")
        done.set()

    async with serving(handler) as client:
        if transport == "xhr":
            url = session_url()
            assert (await client.request("POST", url + "/xhr")).body == b"o\n"
            await done.wait()
            assert (await client.request("POST", url + "/xhr")).text == GO_AWAY + "\n"
        else:
            path = "/websocket" if transport == "raw_websocket" else session_url() + "/websocket"
            async with client.websocket(path) as socket:
                await done.wait()
                frames = []
                while (frame := await socket.receive_text()) is not None:
                    frames.append(frame)
                assert frames == ([] if transport == "raw_websocket" else ["o", GO_AWAY])
                if transport == "raw_websocket":
                    assert (socket.close_code, socket.close_reason) == (3000, "Go away!")
    assert outcome == ["raised", "raised"]
    assert loud_records(caplog) == []


async def test_uncaught_connection_closed_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def handler(conn: Connection) -> None:
        await conn.close(3005, "mine")
        await conn.send("late")  # raises ConnectionClosed, which the library expects

    async with serving(handler) as client:
        url = session_url()
        assert (await client.request("POST", url + "/xhr")).body == b"o\n"
        assert (await client.request("POST", url + "/xhr")).text == 'c[3005,"mine"]\n'
    assert loud_records(caplog) == []


async def test_close_argument_types() -> None:
    errors: list[BaseException] = []
    done = anyio.Event()

    async def handler(conn: Connection) -> None:
        for code, reason in ((True, "x"), ("3000", "x"), (3000, b"x"), (3000.0, "x")):
            try:
                await conn.close(code, reason)  # type: ignore[arg-type]
            except TypeError as exc:
                errors.append(exc)
        try:
            await conn.send(b"bytes")  # type: ignore[arg-type]
        except TypeError as exc:
            errors.append(exc)
        assert not conn.is_closed
        done.set()

    async with serving(handler) as client:
        assert (await client.request("POST", session_url() + "/xhr")).body == b"o\n"
        await done.wait()
    assert len(errors) == 5


async def test_expiry_closes_the_connection_seen_by_the_handler() -> None:
    recorder = Recorder()
    async with serving(recorder, disconnect_delay=0.05) as client:
        assert (await client.request("POST", session_url() + "/xhr")).body == b"o\n"
        await recorder.finished.wait()
        conn = recorder.connections[0]
        assert conn.is_closed
        assert conn.close_code is not None


async def test_send_waiting_for_room_is_released_by_expiry() -> None:
    """A send() that waits for a client that never comes back ends with ConnectionClosed."""
    outcome: list[str] = []
    done = anyio.Event()

    async def producer(conn: Connection) -> None:
        try:
            while True:
                await conn.send("x" * 10)
        except ConnectionClosed:
            outcome.append("closed")
        finally:
            done.set()

    async with serving(producer, max_pending_size=32, disconnect_delay=0.05) as client:
        assert (await client.request("POST", session_url() + "/xhr")).body == b"o\n"
        await done.wait()
    assert outcome == ["closed"]


# -- lifespan shutdown -------------------------------------------------------------------


async def test_lifespan_shutdown_closes_every_session() -> None:
    """Shutdown sends every session a close frame, ends every receiving request, and the
    handlers return by themselves (none is left to be cancelled after the grace period)."""
    recorder = Recorder(echo=True)
    app = SockJSApp(recorder)
    lifespan = Lifespan(app)
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group, TestClient(app, lifespan=False) as client:
            task_group.start_soon(lifespan.run)
            await lifespan.startup()
            idle = session_url()
            assert (await client.request("POST", idle + "/xhr")).body == b"o\n"
            waiting = session_url()
            assert (await client.request("POST", waiting + "/xhr")).body == b"o\n"
            polled: list[Response] = []

            async def poll() -> None:
                polled.append(await client.request("POST", waiting + "/xhr"))

            task_group.start_soon(poll)
            streaming = session_url()
            async with (
                client.stream("POST", streaming + "/xhr_streaming") as stream,
                client.websocket(session_url() + "/websocket") as socket,
                client.websocket("/websocket") as raw,
            ):
                assert await stream.read() == XHR_STREAMING_PRELUDE
                assert await stream.read() == b"o\n"
                assert await socket.receive_text() == "o"
                await anyio.wait_all_tasks_blocked()
                assert len(recorder.connections) == 5

                task_group.start_soon(lifespan.shutdown)

                # The clients see the close and answer it, as real clients do.
                assert await read_all(stream) == [SHUTDOWN.encode() + b"\n"]
                assert await socket.receive_text() == SHUTDOWN
                assert await socket.receive_text() is None
                assert await raw.receive_text() is None
                assert (raw.close_code, raw.close_reason) == (1001, "Server shutting down")
                await lifespan.done.wait()
            assert [response.text for response in polled] == [SHUTDOWN + "\n"]
            assert recorder.finished.is_set()
            assert all(conn.is_closed for conn in recorder.connections)
            assert {conn.close_code for conn in recorder.connections} == {1001}
            assert recorder.cancelled == 0


async def test_run_twice_is_refused() -> None:
    app = SockJSApp(echo)
    async with app.run():
        with pytest.raises(RuntimeError):
            async with app.run():
                pass


# -- authorize and verify_ip -------------------------------------------------------------


async def test_authorize_refuses_sessions() -> None:
    asked: list[str | None] = []

    async def authorize(request: object) -> bool:
        from starlette.requests import HTTPConnection

        assert isinstance(request, HTTPConnection)
        asked.append(request.headers.get("x-token"))
        return request.headers.get("x-token") == "good"

    recorder = Recorder()
    async with serving(recorder, authorize=authorize) as client:
        url = session_url()
        refused = await client.request("POST", url + "/xhr", headers={"X-Token": "bad"})
        assert refused.status == 403
        assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 404
        with pytest.raises(WebSocketDenied) as denied:
            async with client.websocket(session_url() + "/websocket", headers={"X-Token": "bad"}):
                pass
        assert denied.value.status == 403
        with pytest.raises(WebSocketDenied):
            async with client.websocket("/websocket"):
                pass
        # The static endpoints are not guarded.
        assert (await client.request("GET", "/info")).status == 200
        assert (await client.request("POST", url + "/xhr", headers={"X-Token": "good"})).body == b"o\n"
        # Only session creation asks.
        count = len(asked)
        assert (await client.request("POST", url + "/xhr_send", body=b'["x"]')).status == 204
        assert len(asked) == count
        assert await recorder.wait_for(1) == ["x"]


@pytest.mark.parametrize("transport", ["xhr", "xhr_streaming", "eventsource", "htmlfile", "jsonp"])
async def test_authorize_refusal_carries_the_transports_cors_headers(transport: str) -> None:
    """A cross-origin page must be able to read the 403, not see an opaque CORS failure."""

    async def authorize(request: object) -> bool:
        return False

    async with serving(echo, authorize=authorize) as client:
        method = "POST" if transport.startswith("xhr") else "GET"
        query = "?c=cb" if transport in ("htmlfile", "jsonp") else ""
        origin = "https://page.example"
        response = await client.request(method, session_url() + "/" + transport + query, headers={"Origin": origin})
        assert (response.status, response.body) == (403, b"Forbidden")
        assert response.header("cache-control") is not None
        if transport in ("htmlfile", "jsonp"):  # loaded by script and iframe tags: no CORS (PROTOCOL.md 5)
            assert response.header("access-control-allow-origin") is None
        else:
            assert response.header("access-control-allow-origin") == origin
            assert response.header("access-control-allow-credentials") == "true"


async def test_verify_ip() -> None:
    app = SockJSApp(echo, verify_ip=True)
    with anyio.fail_after(TIMEOUT):
        async with (
            TestClient(app, client=("10.0.0.1", 1000)) as here,
            TestClient(app, client=("10.0.0.2", 1000), lifespan=False) as elsewhere,
        ):
            url = session_url()
            assert (await here.request("POST", url + "/xhr")).body == b"o\n"
            refused = await elsewhere.request("POST", url + "/xhr")
            assert refused.status == 200
            assert refused.text == 'c[2010,"Attempted to connect to session from different IP"]\n'
            assert (await elsewhere.request("POST", url + "/xhr_send", body=b'["x"]')).status == 404
            # Another port of the same address is the same client.
            same_host = TestClient(app, client=("10.0.0.1", 2000), lifespan=False)
            async with same_host:
                assert (await same_host.request("POST", url + "/xhr_send", body=b'["y"]')).status == 204
            assert (await here.request("POST", url + "/xhr")).text == 'a["y"]\n'


async def test_without_verify_ip_any_address_may_continue() -> None:
    app = SockJSApp(echo)
    with anyio.fail_after(TIMEOUT):
        async with (
            TestClient(app, client=("10.0.0.1", 1000)) as here,
            TestClient(app, client=("10.0.0.2", 1000), lifespan=False) as elsewhere,
        ):
            url = session_url()
            assert (await here.request("POST", url + "/xhr")).body == b"o\n"
            assert (await elsewhere.request("POST", url + "/xhr_send", body=b'["x"]')).status == 204
            assert (await elsewhere.request("POST", url + "/xhr")).text == 'a["x"]\n'


async def test_client_leaving_a_handler_with_a_task_group_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    """The usual shape of a handler that both pushes and listens: a task group.  When the
    client goes away the pushing task gets ConnectionClosed, which reaches the library inside an
    ExceptionGroup; that is still a client going away, logged at DEBUG only (README)."""
    caplog.set_level(logging.DEBUG)
    finished = anyio.Event()

    async def ticker_and_reader(conn: Connection) -> None:
        try:
            async with anyio.create_task_group() as task_group:

                async def ticker() -> None:
                    while True:
                        await conn.send("tick")
                        await anyio.sleep(0.01)

                task_group.start_soon(ticker)
                async for _ in conn:
                    pass
        finally:
            finished.set()

    async with serving(ticker_and_reader) as client:
        async with client.websocket(session_url() + "/websocket") as socket:
            assert await socket.receive_text() == "o"
            assert (await socket.receive_text() or "").startswith('a["tick"')
        await finished.wait()
    assert loud_records(caplog) == []


async def test_shutdown_cancels_a_handler_that_does_not_return() -> None:
    cancelled = anyio.Event()

    async def stubborn(conn: Connection) -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    app = SockJSApp(stubborn)
    with anyio.fail_after(TIMEOUT):
        async with app.run(shutdown_timeout=0.05), TestClient(app, lifespan=False) as client:
            assert (await client.request("POST", session_url() + "/xhr")).body == b"o\n"
            await anyio.wait_all_tasks_blocked()
        assert cancelled.is_set()

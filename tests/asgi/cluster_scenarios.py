"""Sessions served by whichever instance gets the request: the checks, for any broker.

Each scenario takes a ``Service``: several apps of one service (as if on several processes),
each driven by a client of its own.  ``test_cluster.py`` runs them over a shared MemoryBroker
(asyncio and trio); ``tests/cluster/test_redis_relay.py`` over a real redis-server.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.requests import HTTPConnection

from sockjs_asgi import Broker, Connection, SockJSApp, _cluster
from sockjs_asgi.protocol.http import NOT_FOUND
from sockjs_asgi.testing import TestClient

from .support import ANOTHER_CONNECTION, INTERRUPTED, XHR_STREAMING_PRELUDE, read_all

TIMEOUT = 10.0
LOST = 'c[1006,"Server lost session"]'
OTHER_ADDRESS = 'c[2010,"Attempted to connect to session from different IP"]'
MakeBroker = Callable[[], Broker]


@dataclass
class Recorder:
    """The handler of every instance: echoes, and records what each session received."""

    received: dict[str, list[str]] = field(default_factory=dict)
    closed: dict[str, anyio.Event] = field(default_factory=dict)

    async def __call__(self, conn: Connection) -> None:
        key = conn.request.url.path.split("/")[-2]  # the session id
        self.received[key] = got = []
        self.closed[key] = anyio.Event()
        try:
            async for message in conn:
                got.append(message)
                await conn.send(message)
        finally:
            self.closed[key].set()


@dataclass
class Service:
    apps: list[SockJSApp]
    clients: list[TestClient]
    handler: Recorder

    async def post(self, index: int, path: str, body: bytes = b"", **kw: Any) -> tuple[int, str]:
        response = await self.clients[index].request("POST", path, body=body, **kw)
        return response.status, response.text

    @property
    def sessions(self) -> int:
        return sum(len(app.connections) for app in self.apps)


@asynccontextmanager
async def service(
    make_broker: MakeBroker, count: int = 3, *, client_hosts: tuple[str, ...] = (), **options: Any
) -> AsyncIterator[Service]:
    handler = Recorder()
    async with AsyncExitStack() as stack:
        apps, clients = [], []
        for index in range(count):
            app = SockJSApp(handler, broker=make_broker(), **options)
            host = client_hosts[index] if index < len(client_hosts) else "127.0.0.1"
            client = await stack.enter_async_context(TestClient(app, client=(host, 50000 + index)))
            apps.append(app)
            clients.append(client)
        with anyio.fail_after(TIMEOUT):
            yield Service(apps, clients, handler)


async def sends_and_polls_reach_the_owner_from_any_instance(make_broker: MakeBroker) -> None:
    async with service(make_broker) as svc:
        assert await svc.post(0, "/000/s1/xhr") == (200, "o\n")
        assert await svc.post(1, "/000/s1/xhr_send", b'["one"]') == (204, "")
        assert await svc.post(2, "/000/s1/xhr_send", b'["two"]') == (204, "")
        # jsonp_send through another instance, with its own answer.
        status, body = await svc.post(
            1,
            "/000/s1/jsonp_send",
            b"d=%5B%22three%22%5D",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert (status, body) == (200, "ok")
        # The owner has them, in order, before the sender got its answer.
        assert svc.handler.received["s1"] == ["one", "two", "three"]
        assert await svc.post(2, "/000/s1/xhr") == (200, 'a["one","two","three"]\n')
        assert svc.sessions == 1  # one handler, on the owner
        assert len(svc.apps[0].connections) == 1


async def sends_from_several_instances_apply_in_arrival_order(make_broker: MakeBroker) -> None:
    async with service(make_broker) as svc:
        assert await svc.post(0, "/000/s2/xhr") == (200, "o\n")

        async def sender(index: int) -> None:
            for number in range(20):
                status, _ = await svc.post(index, "/000/s2/xhr_send", json.dumps([f"{index}:{number}"]).encode())
                assert status == 204

        async with anyio.create_task_group() as task_group:
            for index in range(3):
                task_group.start_soon(sender, index)
        received = svc.handler.received["s2"]
        assert len(received) == 60
        for index in range(3):
            assert [m for m in received if m.startswith(f"{index}:")] == [f"{index}:{n}" for n in range(20)]
        # Alternating instances one send at a time: exactly the order sent.
        for number in range(9):
            assert (await svc.post(number % 3, "/000/s2/xhr_send", json.dumps([f"seq{number}"]).encode()))[0] == 204
        assert received[-9:] == [f"seq{n}" for n in range(9)]


async def unknown_sessions_are_404_everywhere(make_broker: MakeBroker) -> None:
    async with service(make_broker) as svc:
        for index in range(3):
            status, body = await svc.post(index, "/000/nowhere/xhr_send", b'["x"]')
            assert (status, body) == (404, NOT_FOUND)


async def streaming_through_another_instance(make_broker: MakeBroker) -> None:
    """Heartbeats, the response limit and 2010 for a second receiver, relayed."""
    async with service(make_broker, heartbeat_delay=0.2, response_limit=4096) as svc:
        assert await svc.post(0, "/000/s3/xhr") == (200, "o\n")
        async with svc.clients[1].stream("POST", "/000/s3/xhr_streaming") as stream:
            assert stream.status == 200
            assert stream.header("content-type") == "application/javascript; charset=UTF-8"
            assert await stream.read() == XHR_STREAMING_PRELUDE
            assert await stream.read() == b"h\n"  # the owner's heartbeat
            # A second receiver, on a third instance: refused by the owner.
            assert await svc.post(2, "/000/s3/xhr") == (200, ANOTHER_CONNECTION + "\n")
            # The stream ends at the response limit, as a local one does.
            assert (await svc.post(2, "/000/s3/xhr_send", json.dumps(["x" * 5000]).encode()))[0] == 204
            rest = b"".join(await read_all(stream))
            # (heartbeats may come first: the second receiver waited a moment for this one to go)
            assert rest.lstrip(b"h\n") == b'a["' + b"x" * 5000 + b'"]\n'
        # The owner let go before the last frame: the next receiver is welcome at once.
        assert (await svc.post(2, "/000/s3/xhr_send", b'["after"]'))[0] == 204
        assert await svc.post(1, "/000/s3/xhr") == (200, 'a["after"]\n')


async def an_aborted_relayed_receiver_interrupts_the_session(make_broker: MakeBroker) -> None:
    async with service(make_broker) as svc:
        assert await svc.post(0, "/000/s4/xhr") == (200, "o\n")
        async with svc.clients[1].stream("POST", "/000/s4/xhr_streaming") as stream:
            assert await stream.read() == XHR_STREAMING_PRELUDE
        # Left without a frame: the owner hears of it and closes the session at once.
        await svc.handler.closed["s4"].wait()
        assert await svc.post(2, "/000/s4/xhr") == (200, INTERRUPTED + "\n")
        assert await svc.post(0, "/000/s4/xhr") == (200, INTERRUPTED + "\n")


async def a_poll_right_after_aborting_a_relayed_one_is_not_refused(make_broker: MakeBroker) -> None:
    """The owner may get the next poll before the news of the abort (sockjs-protocol
    HandlingClose.test_abort_xhr_polling, with the aborted poll on another process)."""
    async with service(make_broker, count=2) as svc:
        assert await svc.post(0, "/000/s10/xhr") == (200, "o\n")
        channel = svc.apps[0].registry.get("s10")
        assert channel is not None
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(svc.post, 1, "/000/s10/xhr")  # waits: nothing to say yet
            while not channel.core.has_receiver:  # noqa: ASYNC110
                await anyio.sleep(0.005)  # the session's state: nothing to wait on but polling it
            task_group.cancel_scope.cancel()  # the client leaves it
        assert await svc.post(0, "/000/s10/xhr") == (200, INTERRUPTED + "\n")


async def frames_for_a_forgotten_relayed_receiver_end_it(make_broker: MakeBroker) -> None:
    """If the news of an abort is lost (pub/sub is at most once across a reconnection), the
    relaying process answers the owner's next frame (a heartbeat at the latest) with it again."""
    async with service(make_broker, count=2, heartbeat_delay=0.2) as svc:
        assert await svc.post(0, "/000/s11/xhr") == (200, "o\n")
        async with svc.clients[1].stream("POST", "/000/s11/xhr_streaming") as stream:
            assert await stream.read() == XHR_STREAMING_PRELUDE
            pending = svc.apps[1]._cluster._pending
            assert len(pending) == 1
            pending.clear()  # what a lost abort leaves: the relay serves it no more
            await svc.handler.closed["s11"].wait()
        assert await svc.post(0, "/000/s11/xhr") == (200, INTERRUPTED + "\n")


async def a_stopping_relay_ends_its_responses_and_the_session_lives_on(make_broker: MakeBroker) -> None:
    handler = Recorder()
    async with AsyncExitStack() as outer:
        owner = await outer.enter_async_context(TestClient(SockJSApp(handler, broker=make_broker())))
        with anyio.fail_after(TIMEOUT):
            async with TestClient(SockJSApp(handler, broker=make_broker())) as relay:
                assert (await owner.request("POST", "/000/s12/xhr")).text == "o\n"
                async with relay.stream("POST", "/000/s12/xhr_streaming") as stream:
                    assert await stream.read() == XHR_STREAMING_PRELUDE
                    await relay._stop_lifespan()  # the relaying process stops
                    rest = await read_all(stream)
                    assert rest == [], rest  # ended, without a close frame
                relay.lifespan = False
            # Not interrupted: the client's next receiver, on the owner, carries on.
            assert (await owner.request("POST", "/000/s12/xhr_send", body=b'["still"]')).status == 204
            assert (await owner.request("POST", "/000/s12/xhr")).text == 'a["still"]\n'


class HeldFrames:
    """Stands in for a relayed receiver's queue of the owner's answers: the owner's frames stop
    here, as if still on their way to the relaying process, and the rest goes through."""

    def __init__(self, answers: Any) -> None:
        self.answers = answers
        self.frames: list[str] = []
        self.arrived = anyio.Event()

    def send_nowait(self, answer: Any) -> None:
        if isinstance(answer, list) and answer[0] == _cluster.FRAME:
            self.frames.append(answer[2])
            self.arrived.set()
        else:
            self.answers.send_nowait(answer)


async def frames_a_stopping_relay_never_got_go_to_the_next_receiver(make_broker: MakeBroker) -> None:
    """The owner may write a frame to a relayed receiver just as the relaying process stops:
    the relay says how many frames it wrote, and the owner's next receiver gets the rest."""
    handler = Recorder()
    async with AsyncExitStack() as outer:
        owner = await outer.enter_async_context(TestClient(SockJSApp(handler, broker=make_broker())))
        with anyio.fail_after(TIMEOUT):
            relay_app = SockJSApp(handler, broker=make_broker())
            async with TestClient(relay_app) as relay:
                assert (await owner.request("POST", "/000/s13/xhr")).text == "o\n"
                async with relay.stream("POST", "/000/s13/xhr_streaming") as stream:
                    assert await stream.read() == XHR_STREAMING_PRELUDE
                    assert (await owner.request("POST", "/000/s13/xhr_send", body=b'["first"]')).status == 204
                    assert await stream.read() == b'a["first"]\n'
                    [pending] = relay_app._cluster._pending.values()
                    held = pending.answers = HeldFrames(pending.answers)  # type: ignore[assignment]
                    assert (await owner.request("POST", "/000/s13/xhr_send", body=b'["late"]')).status == 204
                    await held.arrived.wait()
                    await relay._stop_lifespan()  # before the frame with "late" arrived
                    assert await read_all(stream) == []
                    assert held.frames == ['a["late"]']
                relay.lifespan = False
            assert (await owner.request("POST", "/000/s13/xhr")).text == 'a["late"]\n'
            assert handler.received["s13"] == ["first", "late"]


async def other_transports_through_another_instance(make_broker: MakeBroker) -> None:
    async with service(make_broker) as svc:
        for session in ("s5", "s5b"):
            assert await svc.post(0, f"/000/{session}/xhr") == (200, "o\n")
            assert (await svc.post(1, f"/000/{session}/xhr_send", b'["j"]'))[0] == 204
        response = await svc.clients[2].request("GET", "/000/s5/jsonp?c=cb")
        assert (response.status, response.text) == (200, '/**/cb("a[\\"j\\"]");\r\n')
        assert (await svc.post(1, "/000/s5/xhr_send", b'["e"]'))[0] == 204
        async with svc.clients[1].stream("GET", "/000/s5/eventsource") as stream:
            assert await stream.read() == b"\r\n"
            assert await stream.read() == b'data: a["e"]\r\n\r\n'
        async with svc.clients[2].stream("GET", "/000/s5b/htmlfile?c=cb") as stream:
            prelude = await stream.read()
            assert prelude is not None and b"<!doctype html>" in prelude.lower()
            assert await stream.read() == b'<script>\np("a[\\"j\\"]");\n</script>\r\n'
        # Leaving a stream is an abort, relayed or not.
        for session in ("s5", "s5b"):
            await svc.handler.closed[session].wait()


async def a_stopping_owner_closes_its_relayed_receivers(make_broker: MakeBroker) -> None:
    handler = Recorder()
    async with AsyncExitStack() as outer:
        survivor = await outer.enter_async_context(TestClient(SockJSApp(handler, broker=make_broker())))
        with anyio.fail_after(TIMEOUT):
            async with TestClient(SockJSApp(handler, broker=make_broker())) as owner:
                assert (await owner.request("POST", "/000/s6/xhr")).text == "o\n"
                async with survivor.stream("POST", "/000/s6/xhr_streaming") as stream:
                    assert await stream.read() == XHR_STREAMING_PRELUDE
                    await owner._stop_lifespan()  # the server stops: its sessions are closed
                    rest = b"".join(await read_all(stream))
                    assert rest == b'c[1001,"Server shutting down"]\n'
                owner.lifespan = False
            # Gone with the owner: the session is unknown (a new one opens).
            response = await survivor.request("POST", "/000/s6/xhr_send", body=b'["x"]')
            assert (response.status, response.text) == (404, NOT_FOUND)


async def a_dead_owners_sessions_are_reported_closed(make_broker: MakeBroker) -> None:
    async with service(make_broker, count=2) as svc:
        # What a process killed at once leaves: its owner record, and no liveness record.
        cluster = svc.apps[1]._cluster
        link = svc.apps[1]._relay.link
        assert link is not None
        await link.store({cluster.key("s9"): b"0123456789abcdef"}, 60)
        assert await svc.post(1, "/000/s9/xhr_send", b'["x"]') == (404, NOT_FOUND)
        assert await svc.post(1, "/000/s9/xhr") == (200, LOST + "\n")
        async with svc.clients[0].stream("GET", "/000/s9/eventsource") as stream:
            assert await stream.read() == b"\r\n"
            assert await stream.read() == b"data: " + LOST.encode() + b"\r\n\r\n"
            assert await stream.read() is None
        assert svc.sessions == 0


async def checks_are_the_same_whichever_instance_answers(make_broker: MakeBroker) -> None:
    asked: list[str] = []

    async def authorize(request: HTTPConnection) -> bool:
        asked.append(request.url.path)
        return request.headers.get("x-token") == "yes"

    options: dict[str, Any] = {
        "verify_ip": True,
        "authorize": authorize,
        "cookie_needed": True,
        "disabled_transports": ["eventsource"],
    }
    async with service(make_broker, client_hosts=("10.0.0.1", "10.0.0.1", "10.0.0.2"), **options) as svc:
        token = {"x-token": "yes"}
        # authorize: asked for a new session, on any instance; refused is 403 anywhere.
        for index in range(3):
            status, _ = await svc.post(index, f"/000/new{index}/xhr")
            assert status == 403
        opened = await svc.clients[1].request("POST", "/000/s7/xhr", headers=token)
        assert (opened.status, opened.text) == (200, "o\n")
        cookie = opened.header("set-cookie")
        assert cookie is not None and cookie.startswith("JSESSIONID=dummy; path=/")
        asked.clear()
        # An existing session is not asked about again, whichever instance serves it.
        response = await svc.clients[0].request("POST", "/000/s7/xhr_send", body=b'["a"]')
        assert response.status == 204
        # cookie_needed: the relaying instance sets the cookie as the owner would.
        assert response.header("set-cookie") == cookie
        response = await svc.clients[0].request("POST", "/000/s7/xhr")
        assert (response.status, response.text) == (200, 'a["a"]\n')
        assert response.header("set-cookie") == cookie
        assert asked == []
        # verify_ip: another address is refused through a relay as on the owner.
        assert await svc.post(2, "/000/s7/xhr_send", b'["b"]') == (404, NOT_FOUND)
        assert await svc.post(2, "/000/s7/xhr") == (200, OTHER_ADDRESS + "\n")
        assert svc.handler.received["s7"] == ["a"]
        # disabled_transports: the same 404 from every instance.
        for index in range(3):
            response = await svc.clients[index].request("GET", "/000/s7/eventsource")
            assert response.status == 404


async def two_instances_creating_one_session_at_once(make_broker: MakeBroker) -> None:
    async with service(make_broker, count=2) as svc:
        answers: list[bytes] = []
        both = anyio.Event()

        async def open_stream(index: int) -> None:
            async with svc.clients[index].stream("POST", "/000/s8/xhr_streaming") as stream:
                assert await stream.read() == XHR_STREAMING_PRELUDE
                chunk = await stream.read()
                assert chunk is not None
                answers.append(chunk)
                if len(answers) == 2:
                    assert svc.sessions == 1
                    both.set()
                await both.wait()  # the winner stays attached until the loser has its answer

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(open_stream, 0)
            task_group.start_soon(open_stream, 1)
        assert sorted(answers) == sorted([b"o\n", ANOTHER_CONNECTION.encode() + b"\n"])


SCENARIOS = [
    sends_and_polls_reach_the_owner_from_any_instance,
    sends_from_several_instances_apply_in_arrival_order,
    unknown_sessions_are_404_everywhere,
    streaming_through_another_instance,
    an_aborted_relayed_receiver_interrupts_the_session,
    a_poll_right_after_aborting_a_relayed_one_is_not_refused,
    frames_for_a_forgotten_relayed_receiver_end_it,
    a_stopping_relay_ends_its_responses_and_the_session_lives_on,
    frames_a_stopping_relay_never_got_go_to_the_next_receiver,
    other_transports_through_another_instance,
    a_stopping_owner_closes_its_relayed_receivers,
    a_dead_owners_sessions_are_reported_closed,
    checks_are_the_same_whichever_instance_answers,
    two_instances_creating_one_session_at_once,
]

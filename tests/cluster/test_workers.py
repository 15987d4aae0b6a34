"""``uvicorn examples.cluster.app:app --workers 3`` for real: one shared socket, no balancer,
redis-server, and 120 sessions over websocket, xhr-streaming, xhr-polling and eventsource.

The kernel hands each new connection to whichever worker accepts it first, so the requests of
one session reach any process: the streaming transports keep their connections (as browsers
do) but send on others; the polling sessions open a new connection for every request (as
behind a proxy that does not keep connections), so their polls hop between processes too.

Checked: no request fails and no session is lost; every broadcast reaches every session once,
in order; requests were served through other processes than their session's.  Then one worker
is killed (SIGKILL): the sessions it owned, and those whose receiving request was open on it
(their connection died with it), end (a close frame, a 404 on a send, or for a receiving
connection on the dead worker itself, that connection dropping); every other session goes on
and new sessions work.  ``pytest -s`` prints what the clients saw.

The servers run on asyncio in their own processes; the test's websocket client is asyncio's,
so the test runs on asyncio only.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx
import pytest
from examples.cluster.launch import Redis, UvicornWorkers, start_on_a_free_port, wait_ready

from .client import SSL_CONTEXT, TIMEOUT, TRANSPORTS, Ended, Session
from .crowd import Crowd, Delivery, full_round, report

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        shutil.which("redis-server") is None and os.environ.get("CI") != "true",
        reason="needs Debian's redis-server (.ci/run installs it)",
    ),
]

WORKERS = 3
SESSIONS_PER_TRANSPORT = 30


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # see the module docstring


@dataclass
class Workers:
    """``uvicorn --workers N`` and its Redis."""

    url: str
    process: subprocess.Popen[bytes]

    def pids(self) -> list[int]:
        """The worker processes (the supervisor's children)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(pid) for pid in children]


def _health_pid(port: int) -> int | None:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2, headers={"connection": "close"})
        return int(response.json()["pid"])
    except (httpx.HTTPError, OSError, ValueError, KeyError):
        return None


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    redis = Redis("redis", 0, tmp_path / "redis.log")
    start_on_a_free_port(redis, redis.start)
    server = UvicornWorkers(
        "uvicorn",
        0,
        tmp_path / "uvicorn.log",
        workers=WORKERS,
        options=["--lifespan", "on"],
        env={"REDIS_URL": redis.url},
    )
    try:
        server.start()
        assert server.process is not None
        seen: set[int] = set()

        def every_worker_answered() -> bool:
            # Each answers on its own (a new connection each time: any may take it).
            pid = _health_pid(server.port)
            if pid is not None:
                seen.add(pid)
            return len(seen) == WORKERS

        wait_ready(f"uvicorn --workers {WORKERS}", every_worker_answered, server)
        yield Workers(f"http://127.0.0.1:{server.port}", server.process)
    finally:
        server.stop(timeout=15)
        redis.stop()


@dataclass
class WorkerSession(Session):
    """A client session that may reach any worker with any request."""

    #: Polling sessions: a new connection for every request.
    fresh_connections: bool = False
    #: Responses (and handshakes) from another worker than the session's own.
    relayed: int = 0
    sends_refused: list[str] = field(default_factory=list)
    #: Set once a worker was killed: before that, no request may fail at all.
    worker_killed: bool = False
    #: Sends made again after their kept connection turned out to be to the killed worker.
    stale_retries: list[str] = field(default_factory=list)

    def _response_from(self, backend: str | None) -> None:
        self.responses += 1
        if self.backend is None:
            self.backend = backend
        elif backend != self.backend:
            self.relayed += 1

    async def _receive(self, http: httpx.AsyncClient) -> None:
        if self.fresh_connections:
            limits = httpx.Limits(max_keepalive_connections=0)
            async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits, verify=SSL_CONTEXT) as fresh:
                self._http = fresh
                await super()._receive(fresh)
        else:
            await super()._receive(http)

    async def send(self, *messages: str) -> None:
        try:
            try:
                await super().send(*messages)
            except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
                if not self.worker_killed:
                    raise
                # A kept connection to a worker that was killed since: no answer came, so the
                # request was never served.  Send again on another, as browsers do for a stale
                # connection.
                self.stale_retries.append(type(exc).__name__)
                await super().send(*messages)
        except AssertionError as exc:
            self.sends_refused.append(str(exc))
            raise Ended(f"send refused: {exc}") from None


def sessions(url: str) -> list[Session]:
    return [
        WorkerSession(url, transport, fresh_connections=transport == "xhr")
        for transport in TRANSPORTS
        for _ in range(SESSIONS_PER_TRANSPORT)
    ]


@asynccontextmanager
async def crowd_of(url: str, members: list[Session]) -> AsyncIterator[Crowd]:
    async with anyio.create_task_group() as task_group:
        crowd = Crowd(url, task_group)
        await crowd.open(members)
        try:
            yield crowd
        finally:
            task_group.cancel_scope.cancel()


def as_worker(session: Session) -> WorkerSession:
    assert isinstance(session, WorkerSession)
    return session


async def test_any_worker_serves_any_request_and_a_killed_worker_ends_only_its_sessions(workers: Workers) -> None:
    async with crowd_of(workers.url, sessions(workers.url)) as crowd:
        everyone = [as_worker(session) for session in crowd.sessions]
        owners = Counter(session.backend for session in everyone)
        assert len(owners) == WORKERS, owners  # sessions on every worker

        first = await full_round(crowd, list(everyone), list(everyone), "first", 2)
        assert first == Delivery(expected=120 * 120 * 2, delivered=120 * 120 * 2)
        assert [session for session in everyone if session.ended] == []
        relayed = sum(session.relayed for session in everyone)
        relayed_sessions = sum(1 for session in everyone if session.relayed)
        assert relayed > 0  # requests did reach other processes than their session's

        # Kill the worker holding the most sessions, as a crash would.
        victim_name, _ = owners.most_common(1)[0]
        assert victim_name is not None
        victim_pid = int(victim_name.removeprefix("pid-"))
        assert victim_pid in workers.pids()
        os.kill(victim_pid, signal.SIGKILL)
        for session in everyone:
            session.worker_killed = True
        owned = [session for session in everyone if session.backend == victim_name]
        # What any request of theirs now gets from the live workers: 404 to a send, a close
        # frame to a receiver (not a new session, nor a request left hanging).
        answers: Counter[str] = Counter()
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as task_group:
                for session in owned:
                    if session.transport != "websocket":
                        task_group.start_soon(_ask_after_death, session, answers)
            for session in owned:
                await session.wait_ended()
        http_owned = sum(1 for session in owned if session.transport != "websocket")
        assert answers == Counter({"xhr_send: 404": http_owned, f"xhr: {LOST}": http_owned}), answers
        # Give the survivors a round to show they are undisturbed; new sessions work at once.
        newcomers = sessions(workers.url)[:: SESSIONS_PER_TRANSPORT // 5]  # 5 per transport
        await crowd.open(newcomers)
        ended = [session for session in everyone if session.ended]
        survivors = [session for session in everyone if not session.ended] + newcomers
        after = await full_round(crowd, survivors, survivors, "after", 1)
        assert after == Delivery(expected=len(survivors) ** 2, delivered=len(survivors) ** 2)

        endings = Counter(f"{session.transport}: {_ending(session)}" for session in ended)
        # Only its sessions ended: those it owned, and those whose connection it held (the only
        # way a connection drops here: the other processes are alive).
        strangers = [s for s in ended if s.backend != victim_name and _ending(s) != DROPPED]
        assert strangers == [], strangers
        assert all(session.ended is None for session in survivors)
        held = sum(1 for s in ended if s.backend != victim_name)
        report(
            f"uvicorn --workers {WORKERS}, 120 sessions (30 websocket, 30 xhr_streaming, 30 xhr, 30 eventsource)",
            sessions_per_worker=dict(sorted((str(k), v) for k, v in owners.items())),
            requests_served_by_another_worker=f"{relayed} (in {relayed_sessions} sessions)",
            broadcast_round=first,
            killed=f"{victim_name} (SIGKILL): it owned {len(owned)} sessions, all ended; {held} others "
            "ended because their receiving request was open on it",
            ended=dict(sorted(endings.items())),
            survivors_after=after,
            requests_for_its_sessions_after_the_kill=dict(answers),
            sends_retried_on_a_stale_connection=sum(
                len(s.stale_retries) for s in survivors if isinstance(s, WorkerSession)
            ),
            new_sessions=len(newcomers),
        )


DROPPED = "connection to the killed worker dropped"


LOST = 'c[1006,"Server lost session"]'


async def _ask_after_death(session: Session, answers: Counter[str]) -> None:
    """A send and a poll for ``session`` on new connections (so, on the live workers)."""
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits, verify=SSL_CONTEXT) as http:
        response = await http.post(session.url + "/xhr_send", content=b'["0:late:0"]')
        answers[f"xhr_send: {response.status_code}"] += 1
        response = await http.post(session.url + "/xhr")
        answers[f"xhr: {response.text.strip()}"] += 1


def _ending(session: Session) -> str:
    if session.close_frame is not None:
        return f"close frame {list(session.close_frame)}"
    if "404" in str(session.ended):
        return "404 on a send"
    return DROPPED

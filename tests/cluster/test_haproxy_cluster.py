"""The cluster example for real: redis-server, three single-worker uvicorn processes and haproxy
(consistent hashing on ``/<prefix>/<server_id>``), with 120 sessions over websocket,
xhr-streaming, xhr-polling and eventsource through haproxy.

Checked: no request of a session reaches another process; every broadcast reaches every session
once and in its sender's order; a backend killed with SIGKILL or SIGTERM ends its own sessions
only (with a close frame on SIGTERM) and new sessions work at once; a Redis restart loses no
broadcast sent after it is back.  Each test prints what the clients saw (``pytest -s``).

The servers run on asyncio in their own processes (the Redis broker needs asyncio); the test's
own event loop only drives the clients, and the websocket client used here is asyncio's, so the
tests run on asyncio only.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from examples.cluster.launch import Backend, Cluster, running_cluster

from .client import TIMEOUT, TRANSPORTS, Session
from .crowd import Crowd, Delivery, full_round, misrouted, report

MISSING = [name for name in ("redis-server", "haproxy") if shutil.which(name) is None]

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        bool(MISSING) and os.environ.get("CI") != "true",
        reason=f"needs Debian's {' and '.join(MISSING)} (.ci/run installs them)",
    ),
]

SESSIONS_PER_TRANSPORT = 30  # 120 sessions
SERVER_IDS = 50
SHUTDOWN = (1001, "Server shutting down")
#: What another process answers for a session whose owner died (docs/deployment.md).
LOST = (1006, "Server lost session")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # see the module docstring


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path, 3, check_interval="500ms") as running:
        yield running


@asynccontextmanager
async def crowd_of(cluster: Cluster) -> AsyncIterator[Crowd]:
    """120 sessions of /broadcast through haproxy, 30 over each transport."""
    async with anyio.create_task_group() as task_group:
        crowd = Crowd(cluster.url, task_group)
        # Server ids from a small pool, so that many sessions share one: they must share a process.
        await crowd.open(
            [
                Session(cluster.url, transport, server_id=f"{secrets.randbelow(SERVER_IDS):03d}")
                for transport in TRANSPORTS
                for _ in range(SESSIONS_PER_TRANSPORT)
            ]
        )
        try:
            yield crowd
        finally:
            task_group.cancel_scope.cancel()


async def health(backend: Backend) -> dict[str, object]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        response = await http.get(f"http://127.0.0.1:{backend.port}/health")
        answer: dict[str, object] = response.json()
        return answer


async def wait_for_redis(cluster: Cluster, *, reached: bool) -> None:
    """Wait until every backend says it reaches Redis (or does not)."""
    with anyio.fail_after(TIMEOUT):
        for backend in cluster.backends:
            while (await health(backend))["redis"] is not reached:  # noqa: ASYNC110
                await anyio.sleep(0.05)  # another process's state: nothing to wait on but its answer


async def test_sessions_stick_to_their_process_and_broadcasts_reach_everyone_across_a_redis_restart(
    cluster: Cluster,
) -> None:
    async with crowd_of(cluster) as crowd:
        sessions = crowd.sessions
        per_backend = Counter(session.backend for session in sessions)
        assert set(per_backend) == {backend.name for backend in cluster.backends}, per_backend
        by_server_id: dict[str, set[str | None]] = {}
        for session in sessions:
            by_server_id.setdefault(session.server_id, set()).add(session.backend)
        assert all(len(backends) == 1 for backends in by_server_id.values()), by_server_id

        first = await full_round(crowd, sessions, sessions, "first", 3)
        # One more round: a duplicate of the first round would have arrived before it.
        second = await full_round(crowd, sessions, sessions, "second", 1)
        assert first == Delivery(expected=120 * 120 * 3, delivered=120 * 120 * 3)
        assert second == Delivery(expected=120 * 120, delivered=120 * 120)

        # Redis goes away: each process still delivers its own senders' broadcasts.
        cluster.redis.stop()
        await wait_for_redis(cluster, reached=False)
        await crowd.send_round(sessions, "during", 1)  # every send answered: nothing raised
        neighbours = {
            index: sum(1 for other in sessions if other.backend == session.backend)
            for index, session in enumerate(sessions)
        }
        await crowd.wait_received(sessions, "during", neighbours)
        dropped = [(await health(backend))["broker_dropped"] for backend in cluster.backends]

        cluster.redis.start()
        await wait_for_redis(cluster, reached=True)
        after = await full_round(crowd, sessions, sessions, "after", 2)
        assert after == Delivery(expected=120 * 120 * 2, delivered=120 * 120 * 2)
        # Nothing sent during the outage arrived late, and no one got more than its neighbours'.
        assert all(session.by_tag["during"] == neighbours[index] for index, session in enumerate(sessions))

        assert [session for session in sessions if session.ended] == []
        assert misrouted(sessions) == []
        report(
            "3 processes, 120 sessions (30 websocket, 30 xhr_streaming, 30 xhr, 30 eventsource)",
            sessions_per_process=dict(sorted(per_backend.items())),
            server_ids=f"{len(by_server_id)}, each on one process",
            misrouted_sessions=len(misrouted(sessions)),
            responses_checked=sum(session.responses for session in sessions),
            broadcast_round_1=first,
            broadcast_round_2=second,
            redis_down=f"each session got exactly its own process's senders' broadcasts; "
            f"dropped publications per process {dropped}",
            after_redis_restart=after,
        )


async def kill_one_backend(
    cluster: Cluster, signum: signal.Signals
) -> tuple[list[Session], list[Session], Counter[str]]:
    """Open 120 sessions, kill the first backend, check the rest; returns the victims, the
    survivors and how the victims' sessions ended."""
    victim = cluster.backends[0]
    async with crowd_of(cluster) as crowd:
        sessions = list(crowd.sessions)
        await full_round(crowd, sessions, sessions, "before", 1)
        victims = [session for session in sessions if session.backend == victim.name]
        survivors = [session for session in sessions if session.backend != victim.name]
        assert victims and survivors

        victim.stop(signum)
        with anyio.fail_after(TIMEOUT):
            for session in victims:
                await session.wait_ended()
        endings = Counter(
            f"{session.transport}: {session.ended}" + (f" {list(session.close_frame)}" if session.close_frame else "")
            for session in victims
        )

        # At once, before the health checks have noticed: new sessions on the victim's server ids.
        their_ids = sorted({session.server_id for session in victims})
        newcomers = [
            Session(cluster.url, transport, server_id=secrets.choice(their_ids))
            for transport in TRANSPORTS
            for _ in range(5)
        ]
        await crowd.open(newcomers)
        assert {session.backend for session in newcomers} <= {backend.name for backend in cluster.backends[1:]}

        everyone = survivors + newcomers
        after = await full_round(crowd, everyone, everyone, "after", 2)
        assert after == Delivery(expected=len(everyone) ** 2 * 2, delivered=len(everyone) ** 2 * 2)
        assert [session for session in everyone if session.ended] == []
        assert misrouted(everyone) == []
        report(
            f"{signum.name} to {victim.name} ({len(victims)} of 120 sessions)",
            killed_backend_sessions=dict(sorted(endings.items())),
            surviving_sessions_ended=0,
            misrouted_sessions=len(misrouted(everyone)),
            new_sessions_on_its_server_ids=f"{len(newcomers)} opened at once, on "
            f"{sorted({str(session.backend) for session in newcomers})}",
            broadcast_after_the_kill=after,
        )
        return victims, survivors, endings


async def test_sigkill_ends_only_the_killed_backends_sessions(cluster: Cluster) -> None:
    victims, _survivors, _endings = await kill_one_backend(cluster, signal.SIGKILL)
    # No process was left to say goodbye: the websocket drops, streams and polls are cut
    # (haproxy answers 502), or their next request reaches the process the balancer moved the
    # server id to, which knows the owner is dead and answers c[1006,"Server lost session"].
    assert all(session.close_frame in (None, LOST) for session in victims)


async def test_sigterm_closes_the_backends_sessions_with_a_close_frame(cluster: Cluster) -> None:
    victims, _survivors, endings = await kill_one_backend(cluster, signal.SIGTERM)
    for session in victims:
        if session.transport == "xhr" and (session.ended == "lost session" or session.close_frame == LOST):
            # Polled again just after its session was closed and forgotten (a new session), or
            # reached another process while the stopped one's owner record outlived it.
            continue
        assert session.close_frame == SHUTDOWN, (session, endings)

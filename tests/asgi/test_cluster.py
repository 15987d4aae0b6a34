"""Sessions served by whichever instance gets the request, over one MemoryBroker shared by
several apps (as if each were a process): see ``cluster_scenarios``.  The same scenarios run
over a real redis-server in ``tests/cluster/test_redis_relay.py``."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from sockjs_asgi import Broker, MemoryBroker, Metrics
from sockjs_asgi._broker import BrokerLink, Deliver
from sockjs_asgi._cluster import RemoteWriter
from sockjs_asgi.protocol.escaping import encode_string
from sockjs_asgi.protocol.session import Session
from sockjs_asgi.protocol.transports import TRANSPORTS

from . import cluster_scenarios
from .cluster_scenarios import SCENARIOS

pytestmark = pytest.mark.anyio


class Answers:
    """What a RemoteWriter publishes, in place of the cluster it belongs to."""

    instance = "owner"

    def __init__(self) -> None:
        self.published: list[list[Any]] = []

    def answer(self, origin: str, message: list[Any]) -> None:
        self.published.append(message)


async def test_a_relayed_receiver_s_writer_takes_back_what_the_relay_did_not_write() -> None:
    core = Session(disconnect_delay=5.0, now=0.0)
    core.attach()
    assert core.next_frame() == "o"
    answers = Answers()
    channel: Any = SimpleNamespace(core=core)
    writer = RemoteWriter(answers, channel, "relay", "r1", TRANSPORTS["xhr_streaming"], "", 4096)  # type: ignore[arg-type]
    for text in ("one", "two", "three"):
        core.send(encode_string(text))
        frame = core.next_frame()
        assert frame is not None and not await writer.write(frame)
    writer.released(1)  # the relay wrote the first frame only
    assert writer.is_finished
    # A frame the owner takes after that is not published: it goes back too, in its order.
    core.send(encode_string("four"))
    assert core.next_frame() == 'a["two","three","four"]'
    assert await writer.write('a["two","three","four"]')
    assert [message[2] for message in answers.published] == ['a["one"]', 'a["two"]', 'a["three"]']
    assert core.next_frame() == 'a["two","three","four"]'
    # A relay that does not say how many it wrote: all of them, as before it could.
    other = RemoteWriter(answers, channel, "relay", "r2", TRANSPORTS["xhr_streaming"], "", 4096)  # type: ignore[arg-type]
    assert not await other.write('a["five"]')
    other.released(None)
    assert core.next_frame() is None


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[scenario.__name__ for scenario in SCENARIOS])
async def test_scenario(scenario: Callable[[cluster_scenarios.MakeBroker], Awaitable[None]]) -> None:
    shared = MemoryBroker()

    def make_broker() -> Broker:
        return shared

    await scenario(make_broker)


class CountingLink(BrokerLink):
    """A MemoryBroker link that counts what it is asked to do."""

    def __init__(self, link: BrokerLink, counts: Counter[str]) -> None:
        self._link = link
        self.counts = counts

    @property
    def is_connected(self) -> bool:
        return self._link.is_connected

    @property
    def has_peers(self) -> bool:
        return self._link.has_peers

    def publish(self, topic: str, payload: bytes) -> None:
        self.counts["publish"] += 1
        self._link.publish(topic, payload)

    async def claim(self, key: str, value: bytes, ttl: float) -> bytes | None:
        self.counts["claim"] += 1
        return await self._link.claim(key, value, ttl)

    async def load(self, keys: Sequence[str]) -> list[bytes | None]:
        self.counts["load"] += 1
        return await self._link.load(keys)

    async def store(self, records: Mapping[str, bytes], ttl: float) -> None:
        self.counts["store"] += 1  # the once-a-second liveness record, not a request's cost
        await self._link.store(records, ttl)

    async def release(self, key: str, value: bytes) -> None:
        self.counts["release"] += 1
        await self._link.release(key, value)


class CountingBroker(Broker):
    def __init__(self, shared: MemoryBroker) -> None:
        self.shared = shared
        self.counts: Counter[str] = Counter()

    @asynccontextmanager
    async def connect(self, topics: Collection[str], deliver: Deliver, metrics: Metrics) -> AsyncIterator[BrokerLink]:
        async with self.shared.connect(topics, deliver, metrics) as link:
            yield CountingLink(link, self.counts)


def request_cost(counts: Counter[str]) -> dict[str, int]:
    return {name: count for name, count in counts.items() if name != "store" and count}


async def test_cost_nothing_on_the_owner_and_a_bounded_number_of_operations_when_relayed() -> None:
    shared = MemoryBroker()
    brokers: list[CountingBroker] = []

    def make_broker() -> Broker:
        brokers.append(CountingBroker(shared))
        return brokers[-1]

    async with cluster_scenarios.service(make_broker, count=2) as svc:
        owner, relay = brokers
        # Creating a session: one read (is it elsewhere?) and one claim of its owner record.
        assert await svc.post(0, "/000/c1/xhr") == (200, "o\n")
        assert request_cost(owner.counts) == {"load": 1, "claim": 1}
        owner.counts.clear()
        # Served where it lives: nothing at all, however many requests.
        for number in range(5):
            assert (await svc.post(0, "/000/c1/xhr_send", f'["{number}"]'.encode()))[0] == 204
            assert (await svc.post(0, "/000/c1/xhr"))[0] == 200
        assert request_cost(owner.counts) == {}
        assert request_cost(relay.counts) == {}
        # Relayed: the owner record and the owner's liveness are read once, then cached; each
        # send is one publication there and one back.
        for number in range(5):
            assert (await svc.post(1, "/000/c1/xhr_send", f'["r{number}"]'.encode()))[0] == 204
        assert request_cost(relay.counts) == {"load": 2, "publish": 5}
        assert request_cost(owner.counts) == {"publish": 5}
        # A relayed poll: one request, then one publication for "attached" and one per frame.
        relay.counts.clear()
        owner.counts.clear()
        assert await svc.post(1, "/000/c1/xhr") == (200, 'a["r0","r1","r2","r3","r4"]\n')
        assert request_cost(relay.counts) == {"publish": 1}
        assert request_cost(owner.counts) == {"publish": 2}


async def test_relayed_waiting_polls_leave_nothing_to_the_cycle_collector() -> None:
    """A poll relayed to the owner that waits for its frame is watched for a disconnect on both
    instances; neither watcher may leave a reference cycle behind (see ``start_watcher``)."""
    shared = MemoryBroker()
    async with cluster_scenarios.service(lambda: shared, count=2) as svc:
        assert await svc.post(0, "/000/g1/xhr") == (200, "o\n")

        async def round_trip(number: int) -> None:
            answers: list[tuple[int, str]] = []

            async def poll() -> None:
                answers.append(await svc.post(1, "/000/g1/xhr"))

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(poll)
                await anyio.wait_all_tasks_blocked()  # the poll waits, relayed
                assert (await svc.post(0, "/000/g1/xhr_send", f'["{number}"]'.encode()))[0] == 204
            assert answers == [(200, f'a["{number}"]\n')]

        await round_trip(0)  # first-use objects
        count = 20
        gc.collect()
        gc.disable()
        try:
            gc.collect()
            for number in range(1, count + 1):
                await round_trip(number)
            left = gc.collect()
        finally:
            gc.enable()
    assert left < count / 4, f"{left / count:.1f} objects per poll left to the cycle collector"

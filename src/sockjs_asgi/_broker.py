"""Brokers: how the processes serving one service reach each other.

A :class:`SockJSApp` holds the connections of its own process.  ``app.broadcast()`` delivers to
them directly and, when the service runs on several processes, also *publishes* the broadcast
through a broker; every other process gets it and delivers it to its own connections (rooms
are local membership: each process looks up the members it holds).  The sender skips its own
publications, so every matching connection gets a broadcast once.

The interface is deliberately small and byte-oriented, so that other kinds of traffic between
processes can travel on new topics later without changing it:

* :meth:`Broker.connect` is entered by :meth:`SockJSApp.run` for the lifetime of the service.
  It subscribes to a fixed set of topics and calls ``deliver(topic, payload)`` for every payload
  published on them by any *other* service instance, in the order each publisher published.
* :meth:`BrokerLink.publish` queues a payload and returns at once.  It never waits for the
  broker and never raises: a payload that cannot be sent (the broker is unreachable, or too
  much is queued) is dropped and counted in :class:`~sockjs_asgi.Metrics`.

``deliver`` runs in the event loop and must not block: it only queues work.

Besides publications, a link keeps *records*: small values under keys, each with a time to live,
shared by every instance (the session relay keeps who owns a session, and which instances are
alive, there).  A broker that keeps none raises :class:`RecordsUnavailable`, and so does one
that cannot reach its store at the moment; the service then serves each session on the process
that holds it, as with one process.
"""

from __future__ import annotations

import logging
import secrets
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING

import anyio

from ._hub import hand_out, push

if TYPE_CHECKING:
    from ._connection import Connection
    from ._hub import Hub
    from ._metrics import Metrics

__all__ = [
    "BROADCAST",
    "BroadcastRelay",
    "Broker",
    "BrokerLink",
    "Deliver",
    "MemoryBroker",
    "RecordsUnavailable",
    "decode_broadcast",
    "encode_broadcast",
]

logger = logging.getLogger("sockjs_asgi.broker")

#: Called with ``(topic, payload)`` for each payload another instance published.
Deliver = Callable[[str, bytes], None]

#: The topic that carries broadcasts.
BROADCAST = "broadcast"


class RecordsUnavailable(Exception):
    """The broker keeps no records, or cannot reach where it keeps them right now."""


class BrokerLink(ABC):
    """One service instance's connection to a broker, while :meth:`Broker.connect` is active."""

    @property
    @abstractmethod
    def is_connected(self) -> bool:
        """Whether publications currently reach the other instances."""

    @property
    def has_peers(self) -> bool:
        """Whether a publication may reach anyone at all (``False`` spares the encoding)."""
        return True

    @abstractmethod
    def publish(self, topic: str, payload: bytes) -> None:
        """Queue ``payload`` for every other instance subscribed to ``topic``.

        Returns at once; never raises.  Payloads of one link arrive in the order published.
        """

    # -- records (optional: a broker without them raises RecordsUnavailable) ---------------

    async def claim(self, key: str, value: bytes, ttl: float) -> bytes | None:
        """Store ``value`` under ``key`` for ``ttl`` seconds unless ``key`` holds a value.

        Returns ``None`` if this call stored it, else the value already there.
        """
        raise RecordsUnavailable(f"{type(self).__name__} keeps no records")

    async def load(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values under ``keys`` (``None`` where there is none), in one round trip."""
        raise RecordsUnavailable(f"{type(self).__name__} keeps no records")

    async def store(self, records: Mapping[str, bytes], ttl: float) -> None:
        """Store every record for ``ttl`` seconds (again, if they are there), in one round trip."""
        raise RecordsUnavailable(f"{type(self).__name__} keeps no records")

    async def release(self, key: str, value: bytes) -> None:
        """Remove ``key`` if it still holds ``value``."""
        raise RecordsUnavailable(f"{type(self).__name__} keeps no records")


class Broker(ABC):
    """Carries publications between the instances (processes) of one service.

    Give each service its own broker (or, for :class:`RedisBroker`, its own channel): every
    instance connected to a broker is taken to be the same service.
    """

    @abstractmethod
    def connect(
        self, topics: Collection[str], deliver: Deliver, metrics: Metrics
    ) -> AbstractAsyncContextManager[BrokerLink]:
        """Subscribe to ``topics`` for the duration of the block; see the module docstring."""


class MemoryBroker(Broker):
    """Within one process: the service instances connected to *this* broker object reach
    each other.

    Every :class:`SockJSApp` gets one of its own unless given a broker, so broadcasting stays
    in the process and costs nothing extra.  Give one ``MemoryBroker`` to several apps and they
    behave as the processes of one service would with :class:`RedisBroker` (tests use this).
    """

    def __init__(self) -> None:
        self._links: list[_MemoryLink] = []
        self._records: dict[str, tuple[bytes, float]] = {}  # key -> (value, expiry time)

    def _record(self, key: str) -> bytes | None:
        entry = self._records.get(key)
        if entry is None:
            return None
        if entry[1] <= anyio.current_time():
            del self._records[key]
            return None
        return entry[0]

    @asynccontextmanager
    async def connect(self, topics: Collection[str], deliver: Deliver, metrics: Metrics) -> AsyncIterator[BrokerLink]:
        link = _MemoryLink(self, frozenset(topics), deliver, metrics)
        self._links.append(link)
        metrics.broker_connected = 1
        try:
            yield link
        finally:
            self._links.remove(link)
            metrics.broker_connected = 0


class _MemoryLink(BrokerLink):
    def __init__(self, broker: MemoryBroker, topics: frozenset[str], deliver: Deliver, metrics: Metrics) -> None:
        self._broker = broker
        self.topics = topics
        self.deliver = deliver
        self._metrics = metrics

    @property
    def is_connected(self) -> bool:
        return self in self._broker._links

    @property
    def has_peers(self) -> bool:
        return len(self._broker._links) > 1

    def publish(self, topic: str, payload: bytes) -> None:
        self._metrics.broker_published += 1
        for other in list(self._broker._links):
            if other is not self and topic in other.topics:
                other._metrics.broker_received += 1
                try:
                    other.deliver(topic, payload)
                except Exception:  # one instance's fault must not reach another's handler
                    logger.exception("delivering a publication on %r failed", topic)

    async def claim(self, key: str, value: bytes, ttl: float) -> bytes | None:
        held = self._broker._record(key)
        if held is not None:
            return held
        self._broker._records[key] = (value, anyio.current_time() + ttl)
        return None

    async def load(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self._broker._record(key) for key in keys]

    async def store(self, records: Mapping[str, bytes], ttl: float) -> None:
        expiry = anyio.current_time() + ttl
        for key, value in records.items():
            self._broker._records[key] = (value, expiry)

    async def release(self, key: str, value: bytes) -> None:
        if self._broker._record(key) == value:
            del self._broker._records[key]


# -- broadcasts over a broker --------------------------------------------------------------


class BroadcastRelay:
    """Publishes a service's broadcasts and delivers the other instances' ones.

    A publication is ``b1|<origin>|<room length or ->|<room><message>`` in UTF-8 (lone
    surrogates kept): the version tag lets a later format coexist during a rolling upgrade, and
    the origin lets an instance skip its own publications, which it has already delivered.

    Another instance's broadcast is delivered as the sender's own process delivers one (see
    :func:`~sockjs_asgi._hub.deliver`): by one task of the relay, which writes the frame itself to
    every idle websocket instead of waking each receiver's task.  Broadcasts that arrived
    together are queued instead, so that each receiver's task writes them in one frame.  A write
    that cannot finish at once (a slow client) holds the relay's task only; until it finishes,
    later broadcasts are queued for the receivers' own tasks, so no receiver ever waits for
    another one's socket.
    """

    def __init__(self, broker: Broker, hub: Hub, metrics: Metrics) -> None:
        self.broker = broker
        self._hub = hub
        self._metrics = metrics
        self._link: BrokerLink | None = None
        self._origin = ""
        self._own_prefix = b""
        self._warned_detached = False
        self._routes: dict[str, Deliver] = {}
        # Broadcasts from the other instances, waiting for the delivering task: (room, message).
        self._inbox: deque[tuple[str | None, str]] = deque()
        self._arrived: anyio.Event | None = None
        # The delivering task waits for one slow socket (its inbox is then empty).
        self._waiting = False

    @property
    def link(self) -> BrokerLink | None:
        """The broker connection while the service runs."""
        return self._link

    @asynccontextmanager
    async def connected(self, routes: Mapping[str, Deliver] | None = None) -> AsyncIterator[None]:
        """Connect the broker for the duration of the block.

        ``routes`` subscribes the link to more topics, each delivered to its own callback (the
        broadcasts' topic is this relay's).
        """
        # A new origin for every run: a process restarted under the same app object is a new
        # instance.
        self._origin = secrets.token_hex(8)
        self._own_prefix = f"b1|{self._origin}|".encode()
        self._routes = dict(routes or {})
        self._inbox.clear()
        topics = (BROADCAST, *self._routes)
        async with (
            self.broker.connect(topics, self._deliver, self._metrics) as link,
            anyio.create_task_group() as task_group,
        ):
            task_group.start_soon(self._deliver_forever)
            self._link = link
            try:
                yield
            finally:
                self._link = None
                task_group.cancel_scope.cancel()

    def publish(self, message: str, room: str | None) -> None:
        """Send a broadcast to the other instances; never raises."""
        link = self._link
        if link is None:
            if not isinstance(self.broker, MemoryBroker):
                self._metrics.broker_dropped += 1
                if not self._warned_detached:
                    self._warned_detached = True
                    logger.warning(
                        "broadcast() outside SockJSApp.run(): the broker is not connected, so other "
                        "processes are not reached (does the server run the ASGI lifespan?)"
                    )
            return
        if not link.has_peers:
            return
        try:
            link.publish(BROADCAST, encode_broadcast(self._origin, room, message))
        except Exception:  # never into the handler, whatever a broker of one's own does
            logger.exception("%r could not publish a broadcast", self.broker)
            self._metrics.broker_dropped += 1

    def _deliver(self, topic: str, payload: bytes) -> None:
        if topic != BROADCAST:
            route = self._routes.get(topic)
            if route is not None:
                route(topic, payload)
            return
        if payload.startswith(self._own_prefix):
            return  # ours: delivered locally when it was sent
        decoded = decode_broadcast(payload)
        if decoded is None:
            logger.debug("ignored a publication on %r in an unknown format", topic)
            return
        room, message = decoded
        if self._waiting:
            # The delivering task waits for a slow socket: the receivers' own tasks write this
            # one (after what they have queued already, so the order holds).
            push(message, self._targets(room))
            return
        self._inbox.append(decoded)
        arrived = self._arrived
        if arrived is not None:
            self._arrived = None
            arrived.set()

    def _targets(self, room: str | None) -> Collection[Connection]:
        return self._hub.members(room)

    async def catch_up(self) -> None:
        """Deliver, in this task, every broadcast of the other instances that has arrived.

        Called by this instance's own broadcasts first, so that what a process received before
        it broadcasts reaches its connections before its own broadcast does.
        """
        inbox = self._inbox
        if len(inbox) > 1:
            # Several came together: queued, each receiver's own task writes them all in one
            # frame, which costs less than writing them here one frame each.
            while inbox:
                room, message = inbox.popleft()
                push(message, self._targets(room))
            return
        while inbox:
            room, message = inbox.popleft()
            try:
                walk, blocked = hand_out(message, self._targets(room))
                if blocked is not None:
                    self._waiting = True
                    # What arrived meanwhile goes to the receivers' tasks, in order, as what
                    # arrives while this task waits will.
                    while inbox:
                        room, message = inbox.popleft()
                        push(message, self._targets(room))
                    await blocked
                if walk.failure is not None:
                    raise walk.failure
            except Exception:  # one refused write must not stop the deliveries
                logger.exception("delivering a broadcast from another instance failed")
            finally:
                self._waiting = False

    @property
    def has_arrivals(self) -> bool:
        """Whether broadcasts of the other instances wait for :meth:`catch_up`."""
        return bool(self._inbox)

    async def _deliver_forever(self) -> None:
        while True:
            if not self._inbox:
                arrived = self._arrived = anyio.Event()
                await arrived.wait()
            await self.catch_up()


def encode_broadcast(origin: str, room: str | None, message: str) -> bytes:
    """A broadcast publication (see :class:`BroadcastRelay`)."""
    head = "b1|" + origin + ("|-|" if room is None else f"|{len(room)}|{room}")
    return (head + message).encode("utf-8", "surrogatepass")


def decode_broadcast(payload: bytes) -> tuple[str | None, str] | None:
    """``(room, message)`` from a broadcast publication, or ``None`` if it is not one."""
    try:
        text = payload.decode("utf-8", "surrogatepass")
        version, _origin, length, rest = text.split("|", 3)
        if version != "b1":
            return None
        if length == "-":
            return None, rest
        size = int(length)
        if not 0 <= size <= len(rest):
            return None
        return rest[:size], rest[size:]
    except ValueError:  # UnicodeDecodeError is one
        return None

"""Any process serves any request: sessions relayed to the process that owns them.

With a broker that keeps records (:class:`~sockjs_asgi.RedisBroker`), the requests of one
SockJS session may reach any process of the service (``uvicorn --workers N``, a balancer
without stickiness).  A session *belongs* to the process that runs its handler (its *owner*);
every other process serves the session's requests through the broker:

* The owner writes an **owner record** before it answers the session's first frame, so a send
  that follows the open frame to another process always finds it.  The record is keyed by a
  hash of the service and the session id (session ids never leave the owner otherwise: a
  session id is what lets a client use a session), holds the owner's instance id, lives as long
  as the session (``OWNER_TTL``, refreshed by the owner) and is removed when the session is
  forgotten.  Two processes that create the same session at once both *claim* the record; the
  broker lets one win and the other relays to it.
* Each instance keeps a **liveness record** with a short time to live (``LIVE_TTL``, refreshed
  every ``LIVE_INTERVAL``).  A session whose owner's liveness record is gone is reported closed
  (a close frame to a receiver, 404 to a send) instead of hanging.
* Each instance subscribes to a topic of its own.  A relaying process publishes a *request* on
  the owner's topic; the owner answers on the relay's topic.  Sends are applied by the owner in
  the order they arrive, each answered once the handler's queue has it, so the client gets
  204 only then.  A relayed receiver is attached on the owner, which runs the same pump as for a
  local one (heartbeats, response limit, 2010 for a second receiver) and publishes each frame;
  the relay writes them in the transport's shape.  A client that aborts a relayed receiver is
  reported to the owner at once, as a local abort would be seen.  A relay whose process dies is
  noticed through its liveness record and counts as an aborted receiver.

A request that finds its session in the local registry costs nothing of this.  A relayed one
costs at most: one read of the owner record (cached after the first), one read of the owner's
liveness (cached for ``LIVE_INTERVAL`` s), one publication of the request, and the owner's
publications of the answer (for a receiver: one per frame, plus one when the client aborts).
Creating a session costs one claim (a conditional write).

Messages are JSON arrays whose first element is ``FORMAT``, so that a later format can coexist
during a rolling upgrade.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import _http
from ._broker import BrokerLink, Deliver, RecordsUnavailable
from .protocol import frames
from .protocol.transports import TRANSPORTS, Kind, Transport

if TYPE_CHECKING:
    from ._app import SockJSApp
    from ._session import Channel

__all__ = ["GONE", "LIVE_TTL", "OWNER_TTL", "Cluster", "Lookup"]

logger = logging.getLogger("sockjs_asgi.cluster")

#: Version tag of the messages.
FORMAT = "c1"
#: Lifetime of an owner record; the owner writes its records again every third of it.
OWNER_TTL = 60.0
#: Lifetime of a liveness record, and how often each instance writes its own and reads those of
#: the instances it waits on.
LIVE_TTL = 3.0
LIVE_INTERVAL = 1.0
#: How long a relay waits for the owner's first answer before reporting the session lost.
FIRST_ANSWER_TIMEOUT = 10.0
#: How long a second receiver waits for a relayed one to leave before it is refused (2010):
#: the news of a client's abort crosses Redis, the client's next poll may come straight here.
REMOTE_RECEIVER_GRACE = 0.5
#: The close frame for a session whose owner is gone (sockjs-client's own words for it).
GONE = (1006, "Server lost session")

# Request kinds (relay -> owner) and answer kinds (owner -> relay).  RELEASE: the relaying
# process is stopping and ended the response cleanly (the client reconnects elsewhere), after
# writing as many frames as it says; the owner takes back the messages of the rest.
SEND, RECEIVE, ABORT, RELEASE = "s", "r", "x", "y"
ACK, UNKNOWN, REFUSED, ATTACHED, FRAME = "k", "n", "f", "a", "m"
ANSWERS = frozenset((ACK, UNKNOWN, REFUSED, ATTACHED, FRAME))
#: Put in a relay's queue when the owner is gone or unreachable.
LOST: list[Any] = [FORMAT, "lost"]
#: Put in a relayed receiver's queue when this process stops.
LEAVING: list[Any] = [FORMAT, "leaving"]


class Writer(Protocol):
    """Writes one receiving request's frames (``_http.FrameWriter``, or :class:`RemoteWriter`)."""

    before_last: Callable[[], None] | None
    is_finished: bool

    async def start(self) -> None: ...

    async def write(self, frame: str) -> bool: ...

    async def refuse(self, frame: str) -> None: ...

    async def end(self) -> None: ...


@dataclass
class Lookup:
    """Where a session is: ``state`` is ``"none"`` (no record), ``"dead"`` or ``"alive"``."""

    state: str
    owner: str = ""


@dataclass
class _Pending:
    """A relayed request waiting for the owner's answers."""

    owner: str
    answers: MemoryObjectSendStream[list[Any]]


@dataclass
class _RemoteReceiver:
    """A receiver attached on this (owning) process for a client of another process."""

    origin: str
    writer: RemoteWriter
    gone: anyio.Event = field(default_factory=anyio.Event)


class RemoteWriter:
    """The owner's side of a relayed receiver: publishes frames instead of writing them.

    It counts bytes as the relay's :class:`~sockjs_asgi._http.FrameWriter` does (same transport,
    callback and limit), so both agree on the last frame of a response, and the owner detaches
    before that frame leaves, as for a local receiver.

    It keeps the frames it published (a response's worth at most) until the relay says how
    many it wrote: a relay that leaves (its process stops) may not have had the last ones yet,
    and their messages go back to the session's queue for its next receiver.
    """

    def __init__(
        self, cluster: Cluster, channel: Channel, origin: str, rid: str, transport: Transport, callback: str, limit: int
    ):
        self._cluster = cluster
        self._channel = channel
        self._origin = origin
        self._rid = rid
        self._transport = transport
        self._callback = callback
        self._limit = limit if transport.kind is Kind.STREAMING else 1
        self._sent = 0
        self._published: list[str] = []
        self._released = False
        self.before_last: Callable[[], None] | None = None
        self.is_finished = False

    async def start(self) -> None:
        self._cluster.answer(self._origin, [ATTACHED, self._rid, self._cluster.instance])

    def released(self, written: int | None) -> None:
        """The relay ended the response cleanly, having written ``written`` of the frames
        published to it (``None``: a relay that does not say, taken as all of them)."""
        self.is_finished = True
        self._released = True
        if written is not None:
            self._take_back(self._published[written:])
        self._published = []

    def _take_back(self, unwritten: list[str]) -> None:
        messages = [message for frame in unwritten for message in frames.messages_of(frame)]
        self._channel.core.requeue(messages)

    async def write(self, frame: str) -> bool:
        if self._released:  # the relay left before this frame: its messages wait for the next receiver
            self._take_back([frame])
            return True
        self._published.append(frame)
        self._sent += len(self._transport.wrap(frame, self._callback).encode())
        self.is_finished = frames.is_close(frame) or self._sent >= self._limit
        if self.is_finished and self.before_last is not None:
            self.before_last()
        self._cluster.answer(self._origin, [FRAME, self._rid, frame, self._cluster.instance])
        return self.is_finished

    async def refuse(self, frame: str) -> None:
        self._cluster.answer(self._origin, [REFUSED, self._rid, frame])

    async def end(self) -> None:
        self.is_finished = True  # the relay ends its response itself


class Cluster:
    """One service instance's part in serving sessions from any process (module docstring)."""

    def __init__(self, app: SockJSApp, service: str) -> None:
        self._app = app
        self._service = service
        self.instance = ""
        self._link: Callable[[], BrokerLink | None] = lambda: None
        self._task_group: TaskGroup | None = None
        # Owner side.
        self._owned: dict[str, Channel] = {}
        self._claiming: dict[str, anyio.Event] = {}
        self._inboxes: dict[str, deque[list[Any]]] = {}
        self._remote: dict[tuple[str, str], _RemoteReceiver] = {}
        # Relay side.
        self._pending: dict[str, _Pending] = {}
        self._relayed_receivers: set[str] = set()
        self._owners: dict[str, str] = {}  # key -> owner instance, as last read
        self._seen_alive: dict[str, float] = {}  # instance -> when its liveness record was read
        self._records_down_logged = False

    # -- lifetime ----------------------------------------------------------------------------

    def routes(self, link: Callable[[], BrokerLink | None]) -> dict[str, Deliver]:
        """A new instance id for this run, and the topic to subscribe to for it."""
        self.instance = secrets.token_hex(8)
        self._link = link
        return {self.topic(self.instance): self._on_message}

    @asynccontextmanager
    async def running(self, task_group: TaskGroup) -> AsyncIterator[None]:
        """Keep this instance's records while the block runs, then remove its liveness."""
        self._task_group = task_group
        scope = anyio.CancelScope()
        # Alive for the others before the first request: a session created now names us.
        await task_group.start(self._maintain, scope)
        try:
            yield
        finally:
            scope.cancel()
            link = self._link()
            if link is not None and self.active:
                # Gone at once for the others, rather than once the record expires.
                with anyio.move_on_after(1, shield=True):
                    with suppress(RecordsUnavailable):
                        await link.release(self.live_key(self.instance), b"1")
            self._task_group = None
            self._fail_everything()

    @property
    def active(self) -> bool:
        """Whether other instances may hold sessions (otherwise nothing here costs anything)."""
        link = self._link()
        return link is not None and link.has_peers and self._task_group is not None

    # -- names -------------------------------------------------------------------------------

    @staticmethod
    def topic(instance: str) -> str:
        return f"to.{instance}"

    def key(self, session_id: str) -> str:
        """The owner record's key: a hash, so that the session id stays with the owner."""
        digest = hashlib.sha256(f"{self._service}\0{session_id}".encode("utf-8", "surrogatepass"))
        return "owner." + digest.hexdigest()[:40]

    @staticmethod
    def live_key(instance: str) -> str:
        return f"live.{instance}"

    # -- records -----------------------------------------------------------------------------

    async def _maintain(self, scope: anyio.CancelScope, *, task_status: TaskStatus[None]) -> None:
        """Write our liveness (and, less often, our owner records); watch the instances we wait on."""
        rounds = 0
        every = max(1, int(OWNER_TTL / 3 / LIVE_INTERVAL))
        with scope:
            while True:
                link = self._link()
                if link is not None:
                    records = {self.live_key(self.instance): b"1"}
                    if rounds % every == 0:
                        mine = self.instance.encode()
                        records.update(dict.fromkeys(self._owned, mine))
                    try:
                        await link.store(records, LIVE_TTL)
                        await self._check_peers(link)
                        self._records_down_logged = False
                    except RecordsUnavailable as exc:
                        self.records_unavailable(exc)
                        self._fail_everything()
                    if not link.is_connected:  # what was published meanwhile may be lost
                        self._fail_everything()
                if rounds == 0:
                    task_status.started()
                rounds += 1
                await anyio.sleep(LIVE_INTERVAL)

    async def _check_peers(self, link: BrokerLink) -> None:
        peers = sorted(
            {pending.owner for pending in self._pending.values()} | {r.origin for r in self._remote.values()}
        )
        if not peers:
            return
        values = await link.load([self.live_key(peer) for peer in peers])
        now = anyio.current_time()
        for peer, value in zip(peers, values, strict=True):
            if value is None:
                self._peer_gone(peer)
            else:
                self._seen_alive[peer] = now

    def records_unavailable(self, exc: Exception) -> None:
        """Log, once until the records are back, that sessions stay on their own process."""
        if not self._records_down_logged:
            self._records_down_logged = True
            logger.warning("%s: sessions are served on their own process only (%s)", self._service, exc)

    def _peer_gone(self, peer: str) -> None:
        self._seen_alive.pop(peer, None)
        for key in [key for key, owner in self._owners.items() if owner == peer]:
            del self._owners[key]
        for pending in self._pending.values():
            if pending.owner == peer:
                pending.answers.send_nowait(LOST)
        for remote in self._remote.values():
            if remote.origin == peer:
                remote.gone.set()

    def release_relayed_receivers(self) -> None:
        """This process stops: end the receivers it relays cleanly (their sessions live on)."""
        for rid in self._relayed_receivers:
            pending = self._pending.get(rid)
            if pending is not None:
                pending.answers.send_nowait(LEAVING)

    def _fail_everything(self) -> None:
        for pending in self._pending.values():
            pending.answers.send_nowait(LOST)
        for remote in self._remote.values():
            remote.gone.set()

    async def lookup(self, session_id: str) -> Lookup:
        """Who owns ``session_id``; raises :class:`RecordsUnavailable`."""
        link = self._link()
        if link is None:
            raise RecordsUnavailable("the broker is not connected")
        key = self.key(session_id)
        owner = self._owners.get(key)
        if owner is None:
            [value] = await link.load([key])
            if value is None:
                return Lookup("none")
            owner = value.decode()
        return await self._checked(key, owner)

    async def _checked(self, key: str, owner: str) -> Lookup:
        if owner == self.instance:  # ours by the record, but no longer here: it ended
            self._owners.pop(key, None)
            return Lookup("none")
        seen = self._seen_alive.get(owner)
        if seen is None or anyio.current_time() - seen > LIVE_INTERVAL:
            link = self._link()
            assert link is not None
            [alive] = await link.load([self.live_key(owner)])
            if alive is None:
                self._peer_gone(owner)
                return Lookup("dead", owner)
            self._seen_alive[owner] = anyio.current_time()
        if len(self._owners) >= 10_000:  # a cache: start again rather than grow without bound
            self._owners.clear()
        self._owners[key] = owner
        return Lookup("alive", owner)

    async def claim(self, channel: Channel, register: Callable[[], None]) -> Lookup | None:
        """Become the owner of a new session; ``None`` if we are, else where it already is.

        ``register`` (put the session in the local registry) runs once it is ours.  Until this
        returns, requests for the session wait (see :meth:`wait_claimed`).  Raises
        :class:`RecordsUnavailable` (the session is then served on this process only).
        """
        link = self._link()
        assert link is not None and channel.session_id is not None
        key = self.key(channel.session_id)
        claimed = self._claiming[key] = anyio.Event()
        try:
            held = await link.claim(key, self.instance.encode(), OWNER_TTL)
            if held is None:
                self._owned[key] = channel
                register()
                return None
            return await self._checked(key, held.decode())
        finally:
            del self._claiming[key]
            claimed.set()

    async def wait_claimed(self, session_id: str) -> None:
        """Wait while this process is claiming ``session_id``."""
        claimed = self._claiming.get(self.key(session_id))
        if claimed is not None:
            await claimed.wait()

    async def forget(self, channel: Channel) -> None:
        """The session is gone: remove its owner record."""
        if channel.session_id is None:
            return
        key = self.key(channel.session_id)
        if self._owned.get(key) is not channel:
            return
        del self._owned[key]
        link = self._link()
        if link is not None:
            try:
                await link.release(key, self.instance.encode())
            except RecordsUnavailable as exc:  # it expires by itself
                logger.debug("could not remove an owner record: %s", exc)

    # -- messages ----------------------------------------------------------------------------

    def answer(self, instance: str, message: list[Any]) -> None:
        self._publish(instance, message)

    def _publish(self, instance: str, message: list[Any]) -> None:
        link = self._link()
        if link is not None:
            link.publish(self.topic(instance), json.dumps([FORMAT, *message], separators=(",", ":")).encode())

    def _on_message(self, topic: str, payload: bytes) -> None:
        try:
            message = json.loads(payload)
            if not isinstance(message, list) or len(message) < 3 or message[0] != FORMAT:
                raise ValueError("not a message of this format")
            kind, rid = message[1], message[2]
        except ValueError:  # JSONDecodeError and UnicodeDecodeError are ones
            logger.debug("ignored a message on %r in an unknown format", topic)
            return
        body = message[1:]
        if kind in ANSWERS:
            pending = self._pending.get(rid)
            if pending is not None:
                pending.answers.send_nowait(body)
            elif kind in (ATTACHED, FRAME) and isinstance(body[-1], str):
                # Frames for a receiver this process no longer serves (its abort was lost, say
                # across a Redis reconnection): tell the owner again, or the session would
                # keep a receiver that nobody reads and never expire.
                self._publish(body[-1], [ABORT, rid, self.instance])
        elif kind in (ABORT, RELEASE):
            remote = self._remote.get((body[2], rid))
            if remote is not None:
                if kind == RELEASE:  # the response ended cleanly: a detach, not an abort
                    written = body[3] if len(body) > 3 and type(body[3]) is int else None
                    remote.writer.released(written)
                remote.gone.set()
        elif kind in (SEND, RECEIVE) and self._task_group is not None:
            if kind == SEND:
                self._queue_send(body)
            else:
                self._task_group.start_soon(self._serve_receiver, body)

    # -- owner side --------------------------------------------------------------------------

    async def _find(self, key: str) -> Channel | None:
        claimed = self._claiming.get(key)
        if claimed is not None:
            await claimed.wait()
        channel = self._owned.get(key)
        if channel is None or channel.core.state.value == "closed":
            return None
        return channel

    def _queue_send(self, body: list[Any]) -> None:
        # One queue per session, drained by one task: sends apply in the order they arrived.
        key = body[3]
        inbox = self._inboxes.get(key)
        if inbox is not None:
            inbox.append(body)
            return
        self._inboxes[key] = deque([body])
        assert self._task_group is not None
        self._task_group.start_soon(self._drain_sends, key)

    async def _drain_sends(self, key: str) -> None:
        inbox = self._inboxes[key]
        try:
            while inbox:
                _kind, rid, origin, _key, host, messages = inbox.popleft()
                channel = await self._find(key)
                if channel is None or not self._app._same_host(channel, host):
                    self.answer(origin, [UNKNOWN, rid])
                    continue
                await channel.deliver([str(message) for message in messages])
                self.answer(origin, [ACK, rid])
        finally:
            del self._inboxes[key]

    async def _serve_receiver(self, body: list[Any]) -> None:
        _kind, rid, origin, key, host, name, callback, limit = body
        transport = TRANSPORTS.get(name)
        channel = await self._find(key)
        if channel is None or transport is None or not transport.is_receiver:
            self.answer(origin, [UNKNOWN, rid])
            return
        writer = RemoteWriter(self, channel, origin, rid, transport, str(callback), int(limit))
        if not self._app._same_host(channel, host):
            await writer.refuse(self._app._other_address)
            return
        remote = self._remote[(origin, rid)] = _RemoteReceiver(origin, writer)
        try:
            await self._app._attach(channel, writer, remote.gone.wait)
        finally:
            del self._remote[(origin, rid)]

    # -- relay side --------------------------------------------------------------------------

    @asynccontextmanager
    async def _request(
        self, owner: str, message: list[Any]
    ) -> AsyncIterator[tuple[str, MemoryObjectReceiveStream[list[Any]]]]:
        rid = secrets.token_hex(8)
        send, receive = anyio.create_memory_object_stream[list[Any]](math.inf)
        self._pending[rid] = _Pending(owner, send)
        try:
            kind, *rest = message
            self._publish(owner, [kind, rid, self.instance, *rest])
            with send, receive:
                yield rid, receive
        finally:
            self._pending.pop(rid, None)

    async def relay_send(self, owner: str, session_id: str, host: str | None, messages: list[str]) -> bool:
        """Hand ``messages`` to the owner's handler; ``False``: the session is not there (404)."""
        async with self._request(owner, [SEND, self.key(session_id), host, messages]) as (_rid, answers):
            answer = await answers.receive()
        if answer[0] == UNKNOWN:
            self._owners.pop(self.key(session_id), None)
        return bool(answer[0] == ACK)

    async def relay_receiver(
        self,
        owner: str,
        session_id: str,
        host: str | None,
        writer: Writer,
        transport: Transport,
        callback: str,
        limit: int,
        wait_gone: Callable[[], Awaitable[None]],
    ) -> bool:
        """Serve a receiver from the owner's session; ``False``: the owner does not have it.

        ``writer`` is the request's :class:`~sockjs_asgi._http.FrameWriter`; ``wait_gone``
        returns when the client leaves.
        """
        key = self.key(session_id)
        request = [RECEIVE, key, host, transport.name, callback, limit]
        async with self._request(owner, request) as (rid, answers):
            answer = LOST
            with anyio.move_on_after(FIRST_ANSWER_TIMEOUT):
                answer = await answers.receive()
            if answer is LOST:
                await writer.refuse(frames.close(*GONE))
                return True
            if answer[0] == UNKNOWN:
                self._owners.pop(key, None)
                return False
            if answer[0] == REFUSED:
                await writer.refuse(answer[2])
                return True
            await self._stream(owner, rid, writer, answers, wait_gone)
        return True

    async def _stream(
        self,
        owner: str,
        rid: str,
        writer: Writer,
        answers: MemoryObjectReceiveStream[list[Any]],
        wait_gone: Callable[[], Awaitable[None]],
    ) -> None:
        aborted = False
        self._relayed_receivers.add(rid)

        def abort() -> None:
            nonlocal aborted
            if not aborted and not writer.is_finished:
                aborted = True
                self._publish(owner, [ABORT, rid, self.instance])

        try:
            async with anyio.create_task_group() as task_group:

                def gone() -> None:
                    abort()
                    task_group.cancel_scope.cancel()

                _http.start_watcher(task_group, wait_gone, gone)
                await writer.start()
                written = 0  # the owner's frames written to the client
                async for answer in answers:
                    if answer is LEAVING:
                        # How many frames were written: the owner takes back the messages of
                        # any it published after them.
                        self._publish(owner, [RELEASE, rid, self.instance, written])
                        aborted = True  # released, not aborted: nothing more to tell
                        await writer.end()
                        break
                    frame = frames.close(*GONE) if answer is LOST else answer[2]
                    finished = await writer.write(frame)
                    written += 1
                    if finished or answer is LOST:
                        break
                task_group.cancel_scope.cancel()
        except OSError:
            abort()
        finally:
            self._relayed_receivers.discard(rid)
            if not writer.is_finished:
                abort()

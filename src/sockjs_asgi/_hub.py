"""Who is connected: the live connections of a service, its rooms, and broadcasting.

A broadcast encodes and frames its message once, writes it at once to idle websockets and
queues it for every other receiver, so a slow or dead receiver never delays the others.  A
receiver whose queue is already far past ``max_pending_size`` (it stopped reading) is closed
with 1013 rather than let the queue grow without bound; nothing is dropped silently.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Iterable, Iterator
from typing import TYPE_CHECKING

import anyio

from ._immediate import start
from .protocol import frames
from .protocol.escaping import encode_string, utf8_length

if TYPE_CHECKING:
    from ._connection import Connection, _Link
    from ._metrics import Metrics

__all__ = ["Hub", "deliver", "hand_out", "push"]

#: A receiver is closed when a broadcast finds this many times ``max_pending_size`` queued.
OVERFLOW_FACTOR = 4
OVERFLOW = (1013, "Too far behind")


class Links(dict["Connection", "_Link"]):
    """Connections, each with its link (``conn._link``), in the order they came.

    What a broadcast walks: with the links beside the connections, it walks the links alone,
    without touching the connection objects (not even their reference counts).  With thousands
    of receivers, each of those is one more stretch of memory per receiver that is not in the
    CPU's caches.
    """

    __slots__ = ()


class Hub:
    """The live connections and rooms of one service."""

    def __init__(self) -> None:
        self.connections = Links()
        self._rooms: defaultdict[str, Links] = defaultdict(Links)
        self._memberships: defaultdict[Connection, set[str]] = defaultdict(set)

    def add(self, conn: Connection) -> None:
        self.connections[conn] = conn._link

    def remove(self, conn: Connection) -> None:
        self.connections.pop(conn, None)
        for room in self._memberships.pop(conn, ()):
            self._leave(conn, room)

    def join(self, conn: Connection, room: str) -> None:
        if conn in self.connections:
            self._rooms[room][conn] = conn._link
            self._memberships[conn].add(room)

    def leave(self, conn: Connection, room: str) -> None:
        self._memberships[conn].discard(room)
        self._leave(conn, room)

    def _leave(self, conn: Connection, room: str) -> None:
        members = self._rooms.get(room)
        if members is not None:
            members.pop(conn, None)
            if not members:
                del self._rooms[room]

    def rooms_of(self, conn: Connection) -> frozenset[str]:
        return frozenset(self._memberships.get(conn, ()))

    def room(self, name: str) -> frozenset[Connection]:
        return frozenset(self._rooms.get(name, ()))

    def members(self, room: str | None) -> Links:
        """Who a broadcast to ``room`` (``None``: everyone) goes to, as it walks them.

        The live mapping, not a copy: a broadcast takes the list of links it walks before it
        writes anything, so connections that come and go meanwhile do not change its walk.
        """
        if room is None:
            return self.connections
        members = self._rooms.get(room)
        return Links() if members is None else members

    def rooms(self) -> Iterator[str]:
        return iter(list(self._rooms))


def push(message: str, targets: Iterable[Connection], exclude: Connection | None = None) -> int:
    """Queue ``message`` for every open connection in ``targets`` without waiting; returns how many.

    For callers that cannot wait; :func:`deliver` is the faster way for those that can: every
    receiver queued here wakes its own task to write.
    """
    return _queue(message, encode_string(message), _links(targets), _link_of(exclude))


def _queue(message: str, encoded: str, links: Iterable[_Link], skip: _Link | None) -> int:
    """Queue ``message`` (``encoded`` as well) for every open link but ``skip``, counting it in
    each one's counters; returns how many."""
    size = utf8_length(message)
    count = 0
    for link in links:
        if link is skip or link.is_closed or _overflowing(link):
            continue
        count += 1
        metrics = link.metrics
        if metrics is not None:
            metrics.messages_out += 1
            metrics.bytes_out += size
        link.push(message, encoded)
    return count


def _links(targets: Iterable[Connection]) -> list[_Link]:
    """The links of ``targets``, read from the connections only if no :class:`Links` has them."""
    return list(targets.values()) if type(targets) is Links else [conn._link for conn in targets]


def _link_of(exclude: Connection | None) -> _Link | None:
    """The link of the connection a broadcast skips: the walk compares links, not connections."""
    return None if exclude is None else exclude._link


async def deliver(message: str, targets: Iterable[Connection], exclude: Connection | None = None) -> int:
    """Give ``message`` to every open connection in ``targets``; returns how many.

    The message is encoded and framed once.  Idle websockets get it written at once, by this
    task (see :meth:`Channel.claim <sockjs_asgi._session.Channel.claim>`); the others have it
    queued for their own task.  When a socket cannot take the frame at once (a slow client),
    every receiver after it has the message queued instead, and only then does this task wait
    for that one write: one slow client never delays the others.
    """
    walk, blocked = hand_out(message, targets, exclude)
    if blocked is not None:
        await blocked
    if walk.failure is not None:
        raise walk.failure
    return walk.count


def hand_out(
    message: str, targets: Iterable[Connection], exclude: Connection | None = None
) -> tuple[_Walk, Awaitable[None] | None]:
    """What :func:`deliver` does before it waits: ``(walk, blocked)``.

    ``blocked``, if not ``None``, is the one write that could not finish at once; the calling
    task must await it next (it is the rest of a call this task started).  Once the walk is
    over (at once, without ``blocked``), ``walk.count`` is how many receivers it gave the message
    to and ``walk.failure`` a write the server refused, after every other receiver got it.
    """
    encoded = encode_string(message)
    walk = _Walk(message, encoded, _links(targets), _link_of(exclude), shared=type(targets) is Links)
    blocked = start(walk.write())
    if blocked is not None:
        walk.queue_the_rest()
    return walk, blocked


class _Walk:
    """One broadcast's way through its receivers.

    :meth:`write` is a coroutine that :func:`hand_out` starts in the calling task with
    ``_immediate.start``: it writes the frame to every idle websocket with a plain ``await``
    each, and queues the message for every other receiver.  Should a socket be full, the
    coroutine waits there, ``start`` returns, and :meth:`queue_the_rest` queues the message for
    the receivers after it, so that no one waits behind a slow client; the caller then awaits
    the rest of the coroutine, which ends once that one write has.

    Per receiver, the walk does as little as it can: a :class:`Links` is one service's
    connections, which share its counters, so those are added to once per broadcast; every
    idle receiver is given the same message (one for framed receivers, one for raw ones), as
    a server only reads what it is given; and the walk remembers only which receiver it is
    writing to, its iterator being where the rest begins.
    """

    __slots__ = ("at", "count", "encoded", "failure", "links", "message", "rest", "shared", "skip", "stopped")

    def __init__(self, message: str, encoded: str, links: list[_Link], skip: _Link | None, *, shared: bool) -> None:
        self.message = message
        self.encoded = encoded
        #: The receivers' links: the walk reads these, not the connections.
        self.links = links
        #: The receivers the walk has not come to yet.
        self.rest = iter(links)
        #: The link of the connection the broadcast skips (the sender, say).
        self.skip = skip
        #: Whether every link has the same counters (one service's).
        self.shared = shared
        #: Receivers given the message (closed ones and the excluded one are not); final once
        #: the walk is over.
        self.count = 0
        self.failure: Exception | None = None
        #: The receiver being written to.
        self.at: _Link | None = None
        #: The walk waited for a full socket, and queue_the_rest() did the receivers after it.
        self.stopped = False

    async def write(self) -> None:
        message, encoded, skip = self.message, self.encoded, self.skip
        size = utf8_length(message)
        now = anyio.current_time()
        # The messages the server is given: every idle receiver gets the same one, of its kind.
        framed_text = frames.messages((encoded,))
        framed = {"type": "websocket.send", "text": framed_text}
        raw = {"type": "websocket.send", "text": message}
        count = 0
        # The counters are added once per broadcast, for the service most receivers belong to
        # (all of them, for a shared walk).
        metrics: Metrics | None = self.links[0].metrics if self.shared and self.links else None
        counted = 0
        shared = self.shared
        failed = False  # a write was refused: queue for the rest
        try:
            for link in self.rest:
                if link is skip:
                    continue
                # An idle, open socket is claimed at once; only the others need the checks
                # (closed, too far behind) that decide whether the message is queued.
                send = None if failed else link.claim(now)
                if send is None:
                    if link.is_closed or _overflowing(link):
                        continue
                    link.push(message, encoded)
                count += 1
                if not shared:
                    # The link's counters, the service's (the connection's own would be one
                    # more object to read per receiver).
                    if link.metrics is metrics:
                        counted += 1
                    elif metrics is None:
                        metrics, counted = link.metrics, 1
                    elif link.metrics is not None:
                        link.metrics.messages_out += 1
                        link.metrics.bytes_out += size
                if send is None:
                    continue
                self.at = link  # should this write wait
                if link.framed:
                    out, text = framed, framed_text
                else:
                    out, text = raw, message
                try:
                    await send(out)
                except OSError:  # the server reports the socket gone
                    link._socket_lost()
                except Exception as exc:
                    link.release(waited=True)
                    if self.stopped:
                        raise
                    self.failure, failed = exc, True  # the server refused: the others still get theirs
                except BaseException:
                    link.release(waited=True)
                    raise
                else:
                    if self.stopped:  # this write waited: queue_the_rest() did the others, the loop ends
                        link.release(waited=True)
                    else:
                        link.is_writing = False  # release(waited=False), inline
                if out.get("text") is not text:
                    # Something in front of the server changed what it was given: the next
                    # receiver gets a new one.
                    framed = {"type": "websocket.send", "text": framed_text}
                    raw = {"type": "websocket.send", "text": message}
        finally:
            if shared:
                counted = count
            if metrics is not None:
                metrics.messages_out += counted
                metrics.bytes_out += counted * size
            self.count += count

    def queue_the_rest(self) -> None:
        """The walk waits for a full socket: queue the message for every receiver after it."""
        assert self.at is not None
        self.at.is_parked = False  # its writer writes what is queued meanwhile, after this write
        self.stopped = True
        self.count += _queue(self.message, self.encoded, self.rest, self.skip)


def _overflowing(link: _Link) -> bool:
    """Close a receiver that fell too far behind; returns whether it did."""
    if link.pending_size > link.max_pending_size * OVERFLOW_FACTOR:
        link.close_now(*OVERFLOW)
        return True
    return False

"""Who is connected: the live connections of a service, its rooms, and broadcasting.

A broadcast encodes its message once and appends it to each receiver's queue without waiting,
so a slow or dead receiver never delays the others.  A receiver whose queue is already far
past ``max_pending_size`` (it stopped reading) is closed with 1013 rather than let the queue
grow without bound; nothing is dropped silently.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from .protocol.escaping import encode_string

if TYPE_CHECKING:
    from ._connection import Connection

__all__ = ["Hub", "push"]

#: A receiver is closed when a broadcast finds this many times ``max_pending_size`` queued.
OVERFLOW_FACTOR = 4
OVERFLOW = (1013, "Too far behind")


class Hub:
    """The live connections and rooms of one service."""

    def __init__(self) -> None:
        self.connections: set[Connection] = set()
        self._rooms: defaultdict[str, set[Connection]] = defaultdict(set)
        self._memberships: defaultdict[Connection, set[str]] = defaultdict(set)

    def add(self, conn: Connection) -> None:
        self.connections.add(conn)

    def remove(self, conn: Connection) -> None:
        self.connections.discard(conn)
        for room in self._memberships.pop(conn, ()):
            self._leave(conn, room)

    def join(self, conn: Connection, room: str) -> None:
        if conn in self.connections:
            self._rooms[room].add(conn)
            self._memberships[conn].add(room)

    def leave(self, conn: Connection, room: str) -> None:
        self._memberships[conn].discard(room)
        self._leave(conn, room)

    def _leave(self, conn: Connection, room: str) -> None:
        members = self._rooms.get(room)
        if members is not None:
            members.discard(conn)
            if not members:
                del self._rooms[room]

    def rooms_of(self, conn: Connection) -> frozenset[str]:
        return frozenset(self._memberships.get(conn, ()))

    def room(self, name: str) -> frozenset[Connection]:
        return frozenset(self._rooms.get(name, ()))

    def rooms(self) -> Iterator[str]:
        return iter(list(self._rooms))

    def broadcast(self, message: str, targets: Iterable[Connection], exclude: Connection | None) -> int:
        """Queue ``message`` for every open connection in ``targets``; returns how many."""
        return push(message, targets, exclude)


def push(message: str, targets: Iterable[Connection], exclude: Connection | None = None) -> int:
    """Queue ``message`` for every open connection in ``targets`` without waiting; returns how many."""
    encoded = encode_string(message)
    count = 0
    for conn in list(targets):
        if conn is exclude or conn.is_closed:
            continue
        if conn._push(message, encoded, OVERFLOW_FACTOR, OVERFLOW):
            count += 1
    return count

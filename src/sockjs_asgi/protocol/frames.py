"""The four server-to-client frames (PROTOCOL.md section 4).

One function builds each kind; none formats JSON by hand.  Messages are queued already encoded
(:func:`~sockjs_asgi.protocol.escaping.encode_string`) so that a message broadcast to many
sessions is encoded once, and :func:`messages` only joins the encoded strings.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable

from .escaping import encode_string

__all__ = [
    "ANOTHER_CONNECTION_STILL_OPEN",
    "CONNECTION_INTERRUPTED",
    "GO_AWAY",
    "HEARTBEAT",
    "OPEN",
    "close",
    "is_close",
    "messages",
    "messages_of",
]

#: The open frame, the first frame of every session.
OPEN = "o"
#: The heartbeat frame.
HEARTBEAT = "h"


def messages(encoded: Iterable[str]) -> str:
    """Build an ``a[...]`` frame from messages already passed through ``encode_string``."""
    return "a[" + ",".join(encoded) + "]"


def messages_of(frame: str) -> list[str]:
    """The encoded messages of an ``a[...]`` frame, as :func:`messages` was given them; none
    for any other frame."""
    if not frame.startswith("a"):
        return []
    return [encode_string(message) for message in json.loads(frame[1:])]


@functools.lru_cache(maxsize=128)
def close(code: int, reason: str) -> str:
    """Build a ``c[code,"reason"]`` frame.  Cached: every session builds one when it closes,
    and most close with one of a few reasons."""
    return "c[" + json.dumps(code) + "," + encode_string(reason) + "]"


def is_close(frame: str) -> bool:
    """Whether ``frame`` is a close frame."""
    return frame.startswith("c")


#: Sent to a second receiver of a session that already has one (PROTOCOL.md 7.2).
ANOTHER_CONNECTION_STILL_OPEN = close(2010, "Another connection still open")
#: The default close frame of the application.
GO_AWAY = close(3000, "Go away!")
#: Stored when the client aborted a receiving request (PROTOCOL.md 7.6).
CONNECTION_INTERRUPTED = close(1002, "Connection interrupted")

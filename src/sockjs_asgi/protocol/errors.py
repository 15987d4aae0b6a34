"""Errors raised by the protocol core.

::

    SockJSError
    ├── LocalProtocolError      the caller misused the API (a bug in the application)
    │   └── ConnectionClosed    send() or close() on a session that is already closed
    └── RemoteProtocolError     the client sent something the protocol forbids; carries the
                                HTTP status and body the protocol prescribes for it

The I/O side turns a :class:`RemoteProtocolError` into a response and never lets it reach the
application or another session.
"""

from __future__ import annotations

__all__ = ["ConnectionClosed", "LocalProtocolError", "RemoteProtocolError", "SockJSError"]


class SockJSError(Exception):
    """Base class of every error this library raises."""


class LocalProtocolError(SockJSError):
    """The application asked for something the protocol does not allow."""


class ConnectionClosed(LocalProtocolError):
    """The connection is closed: nothing more can be sent on it."""


class RemoteProtocolError(SockJSError):
    """The client broke the protocol.

    ``status`` and ``body`` are the HTTP answer the protocol prescribes (PROTOCOL.md section 8).
    """

    def __init__(self, body: str, *, status: int = 500) -> None:
        super().__init__(body)
        self.status = status
        self.body = body

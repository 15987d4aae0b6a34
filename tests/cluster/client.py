"""SockJS clients for the cluster tests, as sockjs-client behaves, that record everything.

Each :class:`Session` runs its transport's receiving loop (a websocket, a streaming response
reopened when it ends, or a poll after each poll) and records the messages, the close frame
or how it otherwise ended, and the ``x-backend`` header of every response it got: the cluster
example's processes name themselves there, so a request that reached another process than the
session's own shows up.

Like sockjs-client, a second open frame means "the server lost the session" (it answered from a
process that never saw it), and ends the session.
"""

from __future__ import annotations

import json
import secrets
import ssl
from collections import Counter
from dataclasses import dataclass, field

import anyio
import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

TRANSPORTS = ("websocket", "xhr_streaming", "xhr", "eventsource")
#: What xhr-streaming sends first, to defeat buffering in browsers.
PRELUDE = "h" * 2048
#: One for every client: building one takes tens of milliseconds of CPU (the CA bundle), which
#: for 120 clients at once held the event loop long enough for haproxy to time requests out.
SSL_CONTEXT = ssl.create_default_context()
#: Seconds for one request or websocket operation.
TIMEOUT = 15.0


class Ended(Exception):
    """The session is over; ``str()`` says how the client saw it end."""


@dataclass
class Session:
    """One client session of the ``/broadcast`` service, through the balancer."""

    base_url: str
    transport: str
    server_id: str = field(default_factory=lambda: f"{secrets.randbelow(1000):03d}")
    session_id: str = field(default_factory=lambda: secrets.token_hex(8))
    #: The process of the session's first response.
    backend: str | None = None
    #: Responses whose ``x-backend`` named another process than ``backend``.
    misrouted: list[str] = field(default_factory=list)
    received: list[str] = field(default_factory=list)
    #: How many messages arrived by tag: the middle part of ``sender:tag:number``.
    by_tag: Counter[str] = field(default_factory=Counter)
    close_frame: tuple[int, str] | None = None
    #: How the session ended, once it did: ``close frame``, ``lost session``, or a failure.
    ended: str | None = None
    sends: int = 0
    #: Responses (and websocket handshakes) whose ``x-backend`` was checked.
    responses: int = 0
    _socket: ClientConnection | None = None
    _http: httpx.AsyncClient | None = None
    _opened: anyio.Event = field(default_factory=anyio.Event)
    _changed: anyio.Event = field(default_factory=anyio.Event)
    _open_frames: int = 0

    @property
    def url(self) -> str:
        return f"{self.base_url}/broadcast/{self.server_id}/{self.session_id}"

    def __repr__(self) -> str:
        return f"<Session {self.transport} {self.server_id}/{self.session_id} on {self.backend} ended={self.ended!r}>"

    # -- what the server said ----------------------------------------------------------------

    def _response_from(self, backend: str | None) -> None:
        self.responses += 1
        if backend is None:
            self.misrouted.append("no x-backend header")
        elif self.backend is None:
            self.backend = backend
        elif backend != self.backend:
            self.misrouted.append(backend)

    def _frame(self, frame: str) -> None:
        if frame == "o":
            self._open_frames += 1
            if self._open_frames > 1:
                raise Ended("lost session")  # sockjs-client: 1006 "Server lost session"
            self._opened.set()
        elif frame.startswith("a"):
            messages = json.loads(frame[1:])
            self.received.extend(messages)
            self.by_tag.update(message.split(":")[1] for message in messages if message.count(":") == 2)
        elif frame.startswith("c"):
            code, reason = json.loads(frame[1:])
            self.close_frame = (code, reason)
            raise Ended("close frame")
        elif frame != "h":
            raise Ended(f"not a SockJS frame: {frame[:50]!r}")
        self._changed.set()
        self._changed = anyio.Event()

    def _end(self, how: str) -> None:
        if self.ended is None:
            self.ended = how
        self._opened.set()
        self._changed.set()

    async def wait_open(self) -> None:
        await self._opened.wait()
        if self.ended is not None:
            raise AssertionError(f"{self!r} ended before it opened")

    async def wait_for(self, predicate: object) -> None:
        """Wait until ``predicate(self)`` holds; fails if the session ends first."""
        assert callable(predicate)
        while not predicate(self):
            if self.ended is not None:
                raise AssertionError(f"{self!r} ended while waiting")
            await self._changed.wait()

    async def wait_ended(self) -> None:
        while self.ended is None:
            await self._changed.wait()

    # -- the transports ------------------------------------------------------------------------

    async def run(self) -> None:
        """Receive until the session ends; never raises.

        Each session has an HTTP client of its own, as each browser has its connections.
        """
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT, verify=SSL_CONTEXT) as http:
                self._http = http
                await self._receive(http)
        except Ended as exc:
            self._end(str(exc))
        except ConnectionClosed as exc:
            self._end(f"websocket closed without a close frame ({exc.rcvd.code if exc.rcvd else 'no close'})")
        except (httpx.HTTPError, WebSocketException, OSError) as exc:
            self._end(f"{type(exc).__name__}: {exc}")
        finally:
            self._end("stopped by the test")

    async def _receive(self, http: httpx.AsyncClient) -> None:
        if self.transport == "websocket":
            await self._run_websocket()
        elif self.transport == "xhr":
            await self._run_polling(http)
        else:
            await self._run_streaming(http)

    async def _run_websocket(self) -> None:
        ws_url = "ws" + self.url.removeprefix("http") + "/websocket"
        async with connect(ws_url, open_timeout=TIMEOUT, close_timeout=1, max_queue=None) as socket:
            assert socket.response is not None
            self._response_from(socket.response.headers.get("x-backend"))
            self._socket = socket
            try:
                async for frame in socket:
                    assert isinstance(frame, str)
                    self._frame(frame)
            except anyio.get_cancelled_exc_class():
                # The client's close would be cancelled too and leave the socket open until
                # the peer hangs up, which may be after the event loop is gone.
                socket.transport.abort()
                raise
        raise Ended("websocket closed without a close frame")

    def _check(self, response: httpx.Response) -> None:
        self._response_from(response.headers.get("x-backend"))
        if response.status_code != 200:
            raise Ended(f"HTTP {response.status_code}")

    async def _run_polling(self, http: httpx.AsyncClient) -> None:
        while True:
            response = await http.post(self.url + "/xhr")
            self._check(response)
            for line in response.text.splitlines():
                self._frame(line)

    async def _run_streaming(self, http: httpx.AsyncClient) -> None:
        method, suffix = ("POST", "/xhr_streaming") if self.transport == "xhr_streaming" else ("GET", "/eventsource")
        while True:  # a response ends at response_limit: open the next one, as the client does
            async with http.stream(method, self.url + suffix) as response:
                self._check(response)
                async for line in response.aiter_lines():
                    if self.transport == "eventsource":
                        if line.startswith("data: "):
                            self._frame(line[6:])
                    elif line and line != PRELUDE:
                        self._frame(line)

    async def send(self, *messages: str) -> None:
        """Send ``messages`` in one frame; raises :class:`AssertionError` if the server refuses."""
        payload = json.dumps(list(messages))
        if self.transport == "websocket":
            assert self._socket is not None
            await self._socket.send(payload)
        else:
            assert self._http is not None
            response = await self._http.post(self.url + "/xhr_send", content=payload)
            self._response_from(response.headers.get("x-backend"))
            if response.status_code != 204:
                answer = f"{response.status_code} {response.text!r} from {response.headers.get('x-backend')}"
                raise AssertionError(f"{self!r}: xhr_send answered {answer}")
        self.sends += 1

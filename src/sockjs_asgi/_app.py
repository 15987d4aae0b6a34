"""``SockJSApp``: the ASGI application serving one SockJS service.

It routes each request below the service prefix (PROTOCOL.md 1), answers the static endpoints,
and serves the session transports from a :class:`~sockjs_asgi._session.Registry`.

Where handlers run
------------------
A session over HTTP outlives the request that created it, so its handler needs a task that
outlives requests.  When the application runs inside :meth:`SockJSApp.run` (the ASGI lifespan
does this when the server sends it to us; hosts that own the lifespan call it themselves), the
handler runs in that task group.  Otherwise the request that created the session keeps running
it after its response is complete, the way background tasks run in Starlette.  Either way a
session's task also waits for the core's expiry deadline, so no janitor is needed.
"""

from __future__ import annotations

import logging
import secrets
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Literal, TypeVar

import anyio
from anyio.abc import TaskGroup
from starlette.requests import HTTPConnection

from . import _http, _loop, _websocket
from ._broker import BroadcastRelay, Broker, MemoryBroker, RecordsUnavailable
from ._cluster import GONE, REMOTE_RECEIVER_GRACE, Cluster, RemoteWriter, Writer
from ._connection import Connection
from ._hub import Hub, deliver
from ._metrics import Metrics
from ._options import DEFAULT_SOCKJS_URL, Authorize, Options, names
from ._session import Channel, Registry
from ._signals import on_termination
from ._types import Message, Receive, Scope, Send
from .protocol import http as wire
from .protocol.errors import ConnectionClosed, RemoteProtocolError
from .protocol.escaping import decode_messages
from .protocol.frames import close as close_frame
from .protocol.session import CloseReason
from .protocol.transports import Kind, Transport, validate_callback

__all__ = ["Handler", "SockJSApp"]

logger = logging.getLogger("sockjs_asgi")

_C = TypeVar("_C", bound=Channel)

# Enum members read per request, as globals (see protocol/session.py).
_WEBSOCKET, _SEND, _RAW_WEBSOCKET = Kind.WEBSOCKET, Kind.SEND, wire.Endpoint.RAW_WEBSOCKET

#: Answer to a request from another address than the session's, with ``verify_ip``.
OTHER_ADDRESS = close_frame(2010, "Attempted to connect to session from different IP")

#: How many (transport, origin) pairs keep their session response headers built.
HEADER_CACHE_SIZE = 256

#: The application's code: called once per connection, which ends when it returns.
Handler = Callable[[Connection], Awaitable[None]]


def sub_path(scope: Scope) -> str:
    """The request path below the service prefix.

    ASGI servers and Starlette's ``Mount`` put the prefix in ``root_path`` and keep ``path``
    whole; some older hosts strip it from ``path``.  Both are handled.
    """
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :]
    return path


class SockJSApp:
    """An ASGI application serving one SockJS service.

    ``handler`` is called with a :class:`Connection` for every client connection.  The options
    are keyword-only; their defaults are the protocol's:

    * ``sockjs_url``: the sockjs-client script loaded by the iframe page; it must be the same
      version as the page's client.
    * ``heartbeat_delay`` (25 s): a heartbeat frame goes out after this much silence.
    * ``disconnect_delay`` (5 s): a session with no receiving request for this long is closed.
    * ``response_limit`` (128 KiB): a streaming response ends after this many bytes of frames.
    * ``cookie_needed`` (False): set the ``JSESSIONID`` cookie for sticky load balancers.
    * ``verify_ip`` (False): requests of an HTTP session must come from the address that opened
      it; others are refused (receivers with a 2010 close frame, sends with 404).
    * ``disabled_transports`` (none): receiving transports to turn off, by URL name; disabling
      ``websocket`` also removes the raw ``/websocket`` endpoint.
    * ``authorize``: ``async def authorize(request: HTTPConnection) -> bool``, asked before a
      session is created; ``False`` answers 403 and no session is opened.
    * ``max_request_size`` (1 MiB): the largest send request body accepted.
    * ``max_pending_size`` (1 MiB): ``send()`` waits while this many characters wait for a client.
    * ``max_incoming_messages`` (1024): send requests wait while this many messages wait for
      the handler.
    * ``allowed_origins`` (None: any origin): the origins (``"https://app.example"``) whose pages
      may use the service.  A request from another origin gets 403 on ``/info`` and on every
      HTTP transport, without CORS headers, and a websocket is refused with 403 before it is
      accepted.  Pages of the service's own host are always allowed (the iframe transports run
      there), and the iframe page may only be framed by the listed origins.  A request with
      neither ``Origin`` nor ``Referer`` is let through (not a browser, or a same-origin
      ``GET``) unless ``Sec-Fetch-Site`` says another site sent it.  This protects users'
      browsers from other sites' pages; a client that is not a browser sends what headers it
      likes, so authenticate with ``authorize``.
    * ``cookie_secure`` (None: when the request came over HTTPS) and ``cookie_samesite``
      (``"lax"``; also ``"strict"``, ``"none"``, or None to leave it out): attributes of the
      ``cookie_needed`` cookie, which is always ``HttpOnly``.  A page on another site needs
      ``"none"``, which browsers accept only with ``Secure``.
    * ``max_sessions`` (None: no limit): the most sessions open at once, HTTP and websocket
      (raw included).  Past it a new session is refused with the close frame
      ``c[1013,"Too many sessions"]`` (which sockjs-client reports to ``onclose``), a raw
      websocket is accepted and closed with 1013; no handler runs.
    * ``broker`` (a :class:`MemoryBroker` of its own): carries :meth:`broadcast` to the other
      processes of the service; :class:`RedisBroker` does it through Redis.  The broker is
      connected while :meth:`run` is active (the ASGI lifespan).

    A misspelt option is a ``TypeError`` (and a type checker's error); a bad value raises
    ``TypeError`` or ``ValueError`` naming the option.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        sockjs_url: str = DEFAULT_SOCKJS_URL,
        heartbeat_delay: float = 25.0,
        disconnect_delay: float = 5.0,
        response_limit: int = 128 * 1024,
        cookie_needed: bool = False,
        verify_ip: bool = False,
        disabled_transports: Iterable[str] = (),
        authorize: Authorize | None = None,
        max_request_size: int = 1024 * 1024,
        max_pending_size: int = 1024 * 1024,
        max_incoming_messages: int = 1024,
        allowed_origins: Iterable[str] | None = None,
        cookie_secure: bool | None = None,
        cookie_samesite: Literal["lax", "strict", "none"] | None = "lax",
        max_sessions: int | None = None,
        broker: Broker | None = None,
    ) -> None:
        if not callable(handler):
            raise TypeError(f"handler must be an async callable, got {handler!r}")
        if broker is not None and not isinstance(broker, Broker):
            raise TypeError(f"broker must be a sockjs_asgi.Broker, got {broker!r}")
        self.handler = handler
        #: The validated options.
        self.options = Options(
            sockjs_url=sockjs_url,
            heartbeat_delay=heartbeat_delay,
            disconnect_delay=disconnect_delay,
            response_limit=response_limit,
            cookie_needed=cookie_needed,
            verify_ip=verify_ip,
            disabled_transports=names("disabled_transports", disabled_transports),
            authorize=authorize,
            max_request_size=max_request_size,
            max_pending_size=max_pending_size,
            max_incoming_messages=max_incoming_messages,
            allowed_origins=None if allowed_origins is None else names("allowed_origins", allowed_origins),
            cookie_secure=cookie_secure,
            cookie_samesite=cookie_samesite,
            max_sessions=max_sessions,
        )
        self.registry = Registry()
        #: Live connections and rooms.
        self.hub = Hub()
        #: Counters: see :class:`Metrics`.
        self.metrics = Metrics()
        #: Carries broadcasts to the service's other processes.
        self.broker: Broker = broker if broker is not None else MemoryBroker()
        self._relay = BroadcastRelay(self.broker, self.hub, self.metrics)
        # Serves sessions held by the service's other processes (a no-op with one process).
        self._cluster = Cluster(self, getattr(self.broker, "channel", ""))
        self._other_address = OTHER_ADDRESS
        self._task_group: TaskGroup | None = None
        #: Heartbeats for parked pumps, while ``run()`` is active (else each pump times its own).
        self._heartbeats: _http.Heartbeats | None = None
        #: The clock of run()'s loop, where the sessions live, for each new one (looking it up
        #: costs a task look-up).
        self._clock: Callable[[], float] | None = None
        #: The loop's ``call_soon`` under run() on asyncio, for each new websocket session (see
        #: ``_websocket._SocketChannel._wake_soon``); ``None`` otherwise.
        self._call_soon: Callable[[Callable[[], object]], object] | None = None
        # Created in the event loop that waits on it: an app may outlive one loop (tests run the
        # same module-level app on asyncio and then on trio).
        self._handler_returned: anyio.Event | None = None
        self._closing_all = False
        #: Websocket sessions (SockJS and raw) open now: with the registry's HTTP sessions,
        #: what ``max_sessions`` counts.
        self._websocket_sessions = 0
        self._iframe, self._etag = wire.iframe_page(self.options.sockjs_url)
        self._response_header_cache: dict[tuple[str, str | None], tuple[wire.Headers, _http.RawHeaders]] = {}

    def __repr__(self) -> str:
        return f"<SockJSApp {getattr(self.handler, '__qualname__', self.handler)!r}>"

    # -- who is connected ----------------------------------------------------------------

    @property
    def connections(self) -> frozenset[Connection]:
        """The connections whose handler is running."""
        return frozenset(self.hub.connections)

    def room(self, name: str) -> frozenset[Connection]:
        """The connections in room ``name`` (see :meth:`Connection.join`)."""
        return self.hub.room(name)

    async def broadcast(
        self,
        message: str,
        *,
        room: str | None = None,
        to: Iterable[Connection] | None = None,
        exclude: Connection | None = None,
    ) -> int:
        """Send ``message`` to every connection, or to those of ``room``, or to ``to``.

        The frame is encoded once.  Idle websockets get it at once, written by this call; every
        other receiver has it queued for its own task, so a slow client never delays the others
        (one that stopped reading long ago is closed with 1013 instead of buffering without
        bound).  The call itself waits only when a socket cannot take the frame at once, and then
        only for that one write, after every other receiver has the message; a client that
        stopped reading can hold it until the server gives up on the socket.  Returns how many
        connections *of this process* it was given to; ``exclude`` (say, the sender) is skipped.

        Without ``to``, the broadcast also goes through the :class:`Broker` to the service's
        other processes, which deliver it to their own connections (or their own members of
        ``room``) in the same way.  Publishing never waits and never raises; see the broker for
        its guarantees.  Broadcasts already received from other processes are delivered here
        first.
        ``to`` names connections of this process only.
        """
        if room is not None and to is not None:
            raise TypeError("broadcast() takes room or to, not both")
        if not isinstance(message, str):
            raise TypeError(f"messages are str, got {type(message).__name__}")
        if room is not None and not isinstance(room, str):
            raise TypeError(f"rooms are named by str, got {room!r}")
        if self._relay.has_arrivals:  # what the other processes broadcast before this goes first
            await self._relay.catch_up()
        if to is None:
            self._relay.publish(message, room)
        targets = self.hub.members(room) if to is None else to
        return await deliver(message, targets, exclude)

    # -- lifespan ------------------------------------------------------------------------

    @asynccontextmanager
    async def run(self, *, shutdown_timeout: float = 5.0) -> AsyncIterator[None]:
        """Own the sessions' tasks for the duration of the block.

        Shutdown begins when the block exits, or as soon as the process gets SIGINT or SIGTERM
        (see ``_signals``): every session gets a close frame (1001, "Server shutting down"),
        every streaming response ends, sessions are forgotten at once, and handlers get
        ``shutdown_timeout`` seconds to return before they are cancelled.
        """
        if self._task_group is not None:
            raise RuntimeError("SockJSApp.run() is already active")
        self._closing_all = False
        try:
            # The broker outlives the sessions' tasks, so that handlers may broadcast as they end,
            # and so that clients served through other processes get their close frames.
            routes = self._cluster.routes(lambda: self._relay.link)
            async with self._relay.connected(routes), anyio.create_task_group() as task_group:
                async with self._cluster.running(task_group):
                    self._task_group = task_group
                    self._heartbeats = _http.Heartbeats(self.options.heartbeat_delay)
                    self._clock = _loop.clock()
                    self._call_soon = _loop.call_soon()
                    task_group.start_soon(self._heartbeats.run)
                    try:
                        with on_termination(self.close_all):
                            yield
                    finally:
                        self._task_group = None
                        self._heartbeats = None
                        self._clock = None
                        self._call_soon = None
                        with anyio.CancelScope(shield=True):
                            self.close_all()
                            with anyio.move_on_after(shutdown_timeout):
                                while self.hub.connections:
                                    if self._handler_returned is None:
                                        self._handler_returned = anyio.Event()
                                    await self._handler_returned.wait()
                task_group.cancel_scope.cancel()
        finally:
            self.registry.clear()  # what the cancelled supervisors could not remove

    def lifespan(self, app: object = None) -> Any:
        """``run()`` in the shape Starlette and FastAPI take as ``lifespan=``."""
        return self.run()

    def close_all(self, code: int = CloseReason.SHUTDOWN[0], reason: str = CloseReason.SHUTDOWN[1]) -> None:
        """Close every connection and forget every session without waiting for its clients.

        ``run()`` calls this on shutdown; call it yourself if your host stops in another way.
        """
        self._closing_all = True
        # Receivers this process serves for sessions of other processes end without closing
        # them: their clients reconnect to a process that stays.
        self._cluster.release_relayed_receivers()
        for conn in list(self.hub.connections):
            conn._link.close_now(code, reason)
        for channel in self.registry:
            channel.expire_now()

    async def _serve_lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        started = False
        try:
            async with self.run():
                started = True
                await send({"type": "lifespan.startup.complete"})
                message = await receive()
        except BaseException as exc:
            # The server reports the message: say what failed (a broker that cannot start, say).
            phase = "shutdown" if started else "startup"
            await send({"type": f"lifespan.{phase}.failed", "message": str(exc) or f"{phase} failed"})
            raise
        await send({"type": "lifespan.shutdown.complete"})

    # -- dispatch ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._serve_lifespan(receive, send)
            return
        if kind == "websocket":
            # Dispatched here rather than in a method of its own: a websocket session awaits
            # this for its whole life, and every coroutine in that chain is memory it holds.
            serve = websocket_endpoint(self._route(scope))
            if serve is not None:
                await serve(self, scope, receive, send)
            else:
                await _websocket.deny(scope, receive, send, 404)
            return
        options = self.options
        found = wire.route(sub_path(scope), options.transports, has_raw_websocket=options.has_websocket)
        if found is None:
            await _http.not_found(send)
            return
        method = scope["method"]
        transport = found.transport
        if (
            transport is not None
            and transport.kind is not _WEBSOCKET
            and method in found.methods
            and options.allowed_origins is None
        ):
            # A session request that nothing below refuses: most of the traffic.
            assert found.session_id is not None
            await self._serve_session(transport, found.session_id, scope, receive, send)
            return
        is_websocket = found.endpoint is _RAW_WEBSOCKET or (
            found.transport is not None and found.transport.kind is _WEBSOCKET
        )
        if method not in found.methods:
            await _http.respond(send, 405, [("allow", ", ".join(found.methods))])
        elif (
            options.allowed_origins is not None
            and found.endpoint in (wire.Endpoint.INFO, wire.Endpoint.SESSION)
            and not self.is_origin_allowed(HTTPConnection(scope))
        ):
            # No CORS headers: the page of a refused origin is not to read the answer.
            body = b"Origin not allowed"
            await _http.respond(send, 403, wire.NO_CACHE, body, content_type="text/plain; charset=UTF-8")
        elif is_websocket:
            # An HTTP request reached a websocket URL: no valid Upgrade (PROTOCOL.md 6).
            body = b"Not a valid websocket request"
            await _http.respond(send, 400, body=body, content_type="text/plain; charset=UTF-8")
        elif found.endpoint is wire.Endpoint.GREETING:
            await _http.respond(send, 200, body=wire.GREETING.encode(), content_type="text/plain; charset=UTF-8")
        elif found.endpoint is wire.Endpoint.INFO:
            await self._serve_info(scope, send)
        elif found.endpoint is wire.Endpoint.IFRAME:
            await self._serve_iframe(scope, send)
        else:
            assert found.transport is not None and found.session_id is not None
            await self._serve_session(found.transport, found.session_id, scope, receive, send)

    def _route(self, scope: Scope) -> wire.Route | None:
        """Where a request goes: its route below the service prefix, or ``None`` (404)."""
        options = self.options
        return wire.route(sub_path(scope), options.transports, has_raw_websocket=options.has_websocket)

    # -- origins and limits ----------------------------------------------------------------

    def is_origin_allowed(self, request: HTTPConnection) -> bool:
        """Whether ``request`` comes from an origin that ``allowed_origins`` lets in."""
        allowed = self.options.allowed_origins
        if allowed is None:
            return True
        headers = request.headers
        return wire.origin_allowed(
            allowed,
            origin=headers.get("origin"),
            referer=headers.get("referer"),
            host=headers.get("host"),
            fetch_site=headers.get("sec-fetch-site"),
        )

    @property
    def is_full(self) -> bool:
        """Whether ``max_sessions`` sessions are open, so that new ones are refused."""
        limit = self.options.max_sessions
        return limit is not None and len(self.registry) + self._websocket_sessions >= limit

    # -- static endpoints ----------------------------------------------------------------

    def _cors(self, request: HTTPConnection) -> wire.Headers:
        return wire.cors_headers(*_cors_fields(request.scope))

    async def _serve_info(self, scope: Scope, send: Send) -> None:
        request = HTTPConnection(scope)
        if scope["method"] == "OPTIONS":
            headers = wire.preflight_headers(("OPTIONS", "GET"), time.time()) + self._cors(request)
            await _http.respond(send, 204, headers)
            return
        body = wire.info_body(
            websocket=self.options.has_websocket,
            cookie_needed=self.options.cookie_needed,
            entropy=secrets.randbits(32),
            transports=self.options.receiver_names,
            origins=wire.info_origins(self.options.allowed_origins),
        )
        headers = wire.NO_CACHE + self._cors(request)
        await _http.respond(send, 200, headers, body.encode(), content_type="application/json; charset=UTF-8")

    async def _serve_iframe(self, scope: Scope, send: Send) -> None:
        request = HTTPConnection(scope)
        # Several If-None-Match fields make one list (RFC 9110 5.3).
        if_none_match = ", ".join(request.headers.getlist("if-none-match"))
        if if_none_match and wire.etag_matches(if_none_match, self._etag):
            await _http.respond(send, 304)
            return
        headers = [*wire.cache_for_a_year(time.time()), ("etag", self._etag)]
        if self.options.allowed_origins is not None:
            # Another site's page could frame the iframe page and use the service through it,
            # with the service's own origin: only the listed origins may frame it.
            ancestors = " ".join(["'self'", *sorted(self.options.allowed_origins)])
            headers.append(("content-security-policy", f"frame-ancestors {ancestors}"))
        await _http.respond(send, 200, headers, self._iframe, content_type="text/html; charset=UTF-8")

    # -- session transports --------------------------------------------------------------

    def _session_headers(self, transport: Transport, request: HTTPConnection) -> wire.Headers:
        """CORS, cookie and the transport's own headers; caching headers are the caller's."""
        headers: wire.Headers = []
        if transport.has_cors:
            headers += self._cors(request)
        options = self.options
        if options.cookie_needed:
            secure = request.url.scheme == "https" if options.cookie_secure is None else options.cookie_secure
            if options.cookie_samesite == "none":
                secure = True  # browsers drop SameSite=None without Secure
            jsessionid = request.cookies.get("JSESSIONID")
            headers.append(wire.cookie_header(jsessionid, secure=secure, samesite=options.cookie_samesite))
        headers += transport.extra_headers
        return headers

    def _response_headers(self, transport: Transport, request: HTTPConnection) -> tuple[wire.Headers, _http.RawHeaders]:
        """A session response's headers: as strings (errors add to them), and encoded with the
        transport's Content-Type (the response itself).

        Both are built once per transport and origin and shared: never modify them.  Responses
        that set a cookie or echo the requested headers are built each time, and so are those of
        origins past the first :data:`HEADER_CACHE_SIZE` (``Origin`` is whatever clients send).
        """
        origin, requested = _cors_fields(request.scope)
        cacheable = not self.options.cookie_needed and requested is None
        key = (transport.name, origin if transport.has_cors else None)
        if cacheable:
            cached = self._response_header_cache.get(key)
            if cached is not None:
                return cached
        headers = wire.NO_CACHE + self._session_headers(transport, request)
        assert transport.content_type is not None  # every HTTP transport has one
        built = headers, _http.encode_headers([*headers, ("content-type", transport.content_type)])
        if cacheable and len(self._response_header_cache) < HEADER_CACHE_SIZE:
            self._response_header_cache[key] = built
        return built

    async def _serve_session(
        self, transport: Transport, session_id: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        request = HTTPConnection(scope)
        if scope["method"] == "OPTIONS":
            preflight = wire.preflight_headers(("OPTIONS", "POST"), time.time())
            await _http.respond(send, 204, self._session_headers(transport, request) + preflight)
            return
        headers, encoded = self._response_headers(transport, request)
        try:
            if transport.kind is _SEND:
                await self._serve_send(transport, session_id, request, receive, send, encoded)
            else:
                callback = ""
                if transport.needs_callback:
                    query = request.query_params
                    callback = validate_callback(query.get("c", query.get("callback")))
                await self._serve_receiver(transport, session_id, callback, request, receive, send, headers, encoded)
        except RemoteProtocolError as exc:
            await _http.error(send, exc, headers)
        except _http.Disconnected:
            logger.debug("client left during a %s request", transport.name)

    async def _serve_send(
        self,
        transport: Transport,
        session_id: str,
        request: HTTPConnection,
        receive: Receive,
        send: Send,
        encoded: _http.RawHeaders,
    ) -> None:
        limit, declared = self.options.max_request_size, _content_length(request)
        if declared is not None and declared > limit:
            body = await _http.read_body(receive, limit, declared=declared)  # refuses it
        else:
            first = await receive()
            whole = _http.whole_body(first, limit)
            body = await _http.read_body(receive, limit, first=first) if whole is None else whole
        try:
            payload = body.decode()
        except UnicodeDecodeError:
            raise RemoteProtocolError("Broken JSON encoding.") from None
        if transport.name == "jsonp_send" and wire.is_form(request.headers.get("content-type")):
            payload = urllib.parse.parse_qs(payload, keep_blank_values=True).get("d", [""])[0]
        messages = decode_messages(payload)
        channel = self.registry.get(session_id)
        if channel is None and self._cluster.active:
            await self._cluster.wait_claimed(session_id)
            channel = self.registry.get(session_id)
            if channel is None:
                # Held by another process, perhaps: hand the messages to it.
                if not await self._relay_send(session_id, request, messages):
                    await _http.not_found(send)
                    return
                start, body_message = _sent(transport, encoded)
                await send(start)
                await send(body_message)
                return
        if channel is None or (self.options.verify_ip and not self._same_client(channel, request)):
            await _http.not_found(send)
            return
        if not channel.deliver_now(messages):
            await channel.deliver(messages)
        start, body_message = _sent(transport, encoded)
        await send(start)
        await send(body_message)

    async def _relay_send(self, session_id: str, request: HTTPConnection, messages: list[str]) -> bool:
        try:
            found = await self._cluster.lookup(session_id)
        except RecordsUnavailable as exc:
            self._cluster.records_unavailable(exc)
            return False
        if found.state != "alive":
            return False
        host = request.client.host if request.client else None
        return await self._cluster.relay_send(found.owner, session_id, host, messages)

    async def _serve_receiver(
        self,
        transport: Transport,
        session_id: str,
        callback: str,
        request: HTTPConnection,
        receive: Receive,
        send: Send,
        headers: wire.Headers,
        encoded: _http.RawHeaders,
    ) -> None:
        limit = self.options.response_limit
        writer = _http.FrameWriter(send, transport, callback, encoded, limit=limit)
        cluster = self._cluster
        channel = self.registry.get(session_id)
        if channel is None and cluster.active:
            await cluster.wait_claimed(session_id)
            channel = self.registry.get(session_id)
        host_here = False
        if channel is not None and self.options.verify_ip and not self._same_client(channel, request):
            await writer.refuse(OTHER_ADDRESS)
            return
        if channel is None:
            if self._closing_all:  # the server is stopping: no new sessions
                await writer.refuse(close_frame(*CloseReason.SHUTDOWN))
                return
            host = request.client.host if request.client else None

            async def relay(owner: str) -> bool:
                wait_gone = lambda: _http.watch_disconnect(receive)  # noqa: E731
                return await cluster.relay_receiver(
                    owner, session_id, host, writer, transport, callback, limit, wait_gone
                )

            if cluster.active:
                # Held by another process, perhaps: serve it from there.
                try:
                    found = await cluster.lookup(session_id)
                except RecordsUnavailable as exc:
                    self._cluster.records_unavailable(exc)
                else:
                    if found.state == "dead":
                        await writer.refuse(close_frame(*GONE))
                        return
                    if found.state == "alive" and await relay(found.owner):
                        return
            if not await self._authorized(request):
                # With the transport's CORS headers, so that a cross-origin page sees the 403.
                await _http.respond(send, 403, headers, b"Forbidden", content_type="text/plain; charset=UTF-8")
                return
            if cluster.active:
                await cluster.wait_claimed(session_id)  # returns without a checkpoint if none is
            channel = self.registry.get(session_id)  # another request may have created it meanwhile
            if channel is None and self.is_full:
                await writer.refuse(close_frame(*CloseReason.TOO_MANY_SESSIONS))
                return
            if channel is None:
                channel = self._new_channel(session_id, transport.name, Channel)
                channel.client_host = host
                if cluster.active:
                    # The owner record goes in before the open frame goes out, so that whatever
                    # process the client's next request reaches finds the session.
                    new = channel
                    try:
                        holder = await cluster.claim(new, lambda: self.registry.add(new))
                    except RecordsUnavailable as exc:
                        cluster.records_unavailable(exc)
                        self.registry.add(channel)
                    else:
                        if holder is not None:  # another process created it meanwhile
                            if holder.state == "alive" and await relay(holder.owner):
                                return
                            await writer.refuse(close_frame(*GONE))
                            return
                else:
                    self.registry.add(channel)
                host_here = not self._spawn(channel, request)
        wait_gone = lambda: _http.watch_disconnect(receive)  # noqa: E731
        if not host_here:  # the common case, a session that exists: no task group to run
            await self._attach(channel, writer, wait_gone)
            return
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(self._host, channel, request)
            await self._attach(channel, writer, wait_gone)

    async def _attach(self, channel: Channel, writer: Writer, wait_gone: Callable[[], Awaitable[None]]) -> None:
        """Attach a receiver and pump the session's frames into ``writer`` until it is finished
        or ``wait_gone`` returns (the client left)."""
        refused = channel.attach()
        if refused is not None and self._cluster.active:  # perhaps a remote receiver, leaving
            refused = await channel.attach_within(REMOTE_RECEIVER_GRACE)
        if refused is not None:
            await writer.refuse(refused)
            return
        if type(writer) is _http.FrameWriter:
            channel.remote_receiver = False
            if not writer.is_streaming:
                frame = channel.next_frame()
                if frame is not None:
                    # A poll answered from what is pending: its one write ends the response,
                    # and the session is detached just before it goes out, so there is no
                    # disconnect to watch (no task, no cancel scope), and a client gone
                    # meanwhile aborted nothing.
                    start, last = writer.answer(frame)  # write(), inline: one coroutine fewer
                    channel.detach()  # as before_last would, before the answer goes out
                    try:
                        await writer.send(start)
                        await writer.send(last)
                    except OSError:  # the server reported the client gone while we wrote
                        pass
                    return
        else:
            channel.remote_receiver = isinstance(writer, RemoteWriter)
        attached = True
        interrupted = False

        def detach() -> None:
            nonlocal attached
            if attached:
                attached = False
                channel.detach(interrupted=interrupted)

        def gone() -> None:
            # The client is gone: detach at once, not once this request has unwound.  The client
            # may already be polling again (sockjs-protocol HandlingClose.test_abort_*), and it
            # must find the session free, not "Another connection still open".
            nonlocal interrupted
            interrupted = not writer.is_finished
            detach()

        async def write(frame: str) -> bool:
            try:
                return await writer.write(frame)
            except OSError:  # the server reported the client gone while we wrote
                gone()
                raise

        writer.before_last = detach
        try:
            async with anyio.create_task_group() as task_group:

                def client_left() -> None:
                    gone()
                    # A server may report the disconnect while it is still completing our last
                    # body message (hypercorn does, as it ends the stream): cancelling that send
                    # would interrupt the server's own clean-up, and under its trio worker the
                    # connection would then never be closed.  The pump returns after it anyway.
                    if not writer.is_finished:
                        task_group.cancel_scope.cancel()

                _http.start_watcher(task_group, wait_gone, client_left)
                await writer.start()
                await _http.pump(
                    channel,
                    write,
                    heartbeat_delay=self.options.heartbeat_delay,
                    is_attached=lambda: attached,
                    heartbeats=self._heartbeats,
                )
                task_group.cancel_scope.cancel()
        except OSError:
            gone()
        finally:
            detach()
            if interrupted:
                logger.debug("client aborted a %s request", channel.transport)

    # -- sessions and handlers -------------------------------------------------------------

    def _new_channel(self, session_id: str | None, transport: str, kind: type[_C]) -> _C:
        """A new channel: a :class:`Channel`, or for a websocket the subclass that serves it."""
        options = self.options
        return kind(
            session_id,
            transport,
            disconnect_delay=options.disconnect_delay,
            max_pending_size=options.max_pending_size,
            max_incoming_messages=options.max_incoming_messages,
            metrics=self.metrics,
            clock=self._clock,
        )

    def _same_client(self, channel: Channel, request: HTTPConnection) -> bool:
        # Its callers skip it unless verify_ip is set: the common case builds no client address.
        return self._same_host(channel, request.client.host if request.client else None)

    def _same_host(self, channel: Channel, host: str | None) -> bool:
        return not self.options.verify_ip or channel.client_host == host

    async def _authorized(self, request: HTTPConnection) -> bool:
        authorize: Authorize | None = self.options.authorize
        if authorize is None:
            return True
        return bool(await authorize(request))

    def _spawn(self, channel: Channel, request: HTTPConnection) -> bool:
        """Run the session's handler in ``run()``'s task group, if there is one."""
        if self._task_group is None:
            return False
        self._task_group.start_soon(self._host, channel, request)
        return True

    async def _host(self, channel: Channel, request: HTTPConnection) -> None:
        """Run an HTTP session: its handler, and its expiry."""

        async def supervise() -> None:
            await channel.supervise()
            self.registry.remove(channel)
            await self._cluster.forget(channel)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(supervise)
            conn = Connection(channel, request, channel.transport, self)
            await self.run_handler(channel, conn)

    async def run_handler(self, link: Channel | _websocket.RawLink, conn: Connection) -> None:
        """Run the handler for one connection and close the connection when it returns."""
        self._handler_starts(conn)
        try:
            await self.handler(conn)
        except Exception as exc:
            self._handler_raised(link, conn, exc)
        finally:
            self._handler_ended(conn)
        link.close_now(*CloseReason.GO_AWAY)

    # What run_handler does around the handler, for a caller that awaits the handler itself,
    # one coroutine fewer in the await chain of a long-lived session.

    def _handler_starts(self, conn: Connection) -> None:
        self.hub.add(conn)
        self.metrics.opened(conn.transport)

    def _handler_raised(self, link: Channel | _websocket.RawLink, conn: Connection, exc: Exception) -> None:
        if _is_connection_closed(exc):
            logger.debug("%r: the handler sent on a closed connection", conn)
        else:
            logger.error("%r: the handler raised; closing the connection", conn, exc_info=exc)
            link.close_now(*CloseReason.INTERNAL_ERROR)

    def _handler_ended(self, conn: Connection) -> None:
        self.hub.remove(conn)
        self.metrics.closed(conn.transport)
        if self._handler_returned is not None:
            self._handler_returned.set()
            self._handler_returned = None


def websocket_endpoint(
    found: wire.Route | None,
) -> Callable[[SockJSApp, Scope, Receive, Send], Coroutine[Any, Any, None]] | None:
    """What serves a websocket request routed to ``found``: the SockJS websocket transport, the
    raw endpoint, or nothing (404).  The caller keeps the function, not the route, which would
    otherwise live as long as the session, session id and all."""
    if found is None:
        return None
    if found.transport is not None and found.transport.kind is _WEBSOCKET:
        return _websocket.serve_session
    if found.endpoint is _RAW_WEBSOCKET:
        return _websocket.serve_raw
    return None


def _sent(transport: Transport, encoded: _http.RawHeaders) -> tuple[Message, Message]:
    """The answer to a send request that delivered its messages: its two ASGI messages, for
    the caller to send itself (no coroutine of its own).  Both answer text/plain, the send
    transports' Content-Type."""
    if transport.name == "jsonp_send":
        return _http.encoded_response(200, encoded, b"ok")
    return _http.encoded_response(204, encoded)


def _content_length(request: HTTPConnection) -> int | None:
    """The request's Content-Length, if it has a valid one."""
    value = _header(request.scope, b"content-length") or ""
    return int(value) if value.isascii() and value.isdigit() else None


def _cors_fields(scope: Scope) -> tuple[str | None, str | None]:
    """The request's first ``Origin`` and ``Access-Control-Request-Headers``, as :func:`_header`
    reads each, in one pass: every session request reads both."""
    origin = requested = None
    for key, value in scope["headers"]:
        if key == b"origin":
            if origin is None:
                origin = value.decode("latin-1")
        elif key == b"access-control-request-headers" and requested is None:
            requested = value.decode("latin-1")
    return origin, requested


def _header(scope: Scope, name: bytes) -> str | None:
    """The request's first ``name`` header (lower case), as ``HTTPConnection.headers.get``
    reads it, without building the ``Headers`` object: a hot path reads one or two."""
    for key, value in scope["headers"]:
        if key == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


def _is_connection_closed(exc: BaseException) -> bool:
    """Whether ``exc`` is ConnectionClosed, alone or as every leaf of exception groups
    (a handler's task group wraps what its tasks raise)."""
    group: tuple[BaseException, ...] | None = getattr(exc, "exceptions", None)
    if group is not None:
        return all(_is_connection_closed(inner) for inner in group)
    return isinstance(exc, ConnectionClosed)


def lifespan(*apps: SockJSApp) -> Callable[[object], Any]:
    """A ``lifespan=`` for Starlette or FastAPI that runs several services' ``run()``."""

    @asynccontextmanager
    async def combined(app: object) -> AsyncIterator[None]:
        async with run_all(apps):
            yield

    return combined


@asynccontextmanager
async def run_all(apps: Iterable[SockJSApp]) -> AsyncIterator[None]:
    """Every service's :meth:`SockJSApp.run`, for the duration of the block."""
    async with AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(app.run())
        yield

"""Real ASGI servers on 127.0.0.1, each in a background thread with its own event loop.

Every server listens on a socket bound to port 0, so the operating system picks a free port,
which is read back from the socket.  Start-up and shut-down are bounded; a server thread that
does not stop in time fails the test that used it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import socket
import threading
import warnings
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

STARTUP_TIMEOUT = 15.0
SHUTDOWN_TIMEOUT = 15.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


@dataclass(frozen=True)
class Running:
    """A server that is accepting connections."""

    name: str
    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # What it accepts inherits TCP_NODELAY (Linux).  asyncio sets the option only on connections
    # accepted from a socket made with IPPROTO_TCP, which this one is not: uvicorn, given it,
    # would leave Nagle's algorithm on where, binding a port itself, it turns it off.  (hypercorn,
    # given its descriptor, reads the protocol from it.)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    # Listening at once: a client that connects before the server accepts waits in the backlog.
    sock.listen(64)
    return sock


class _LifespanProbe:
    """Passes everything to ``app`` and reports when the lifespan startup completed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.started = threading.Event()

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def reporting_send(message: Message) -> None:
            await send(message)
            if message["type"] == "lifespan.startup.complete":
                self.started.set()

        await self.app(scope, receive, reporting_send)


def _load_uvicorn_protocols(http: str, ws: str) -> None:
    """Import uvicorn's protocol modules once, here, where their import-time deprecation
    warnings can be silenced: in the server thread the test suite's filterwarnings=error
    would turn them into crashes.  Only these two known warnings are ignored."""
    from uvicorn.config import HTTP_PROTOCOLS, WS_PROTOCOLS

    with warnings.catch_warnings():
        # uvicorn deprecates its legacy `websockets` implementation in favour of websockets-sansio.
        warnings.filterwarnings("ignore", "The `websockets` implementation is deprecated", UserWarning)
        # ... which is built on websockets.legacy, deprecated by websockets 14.
        warnings.filterwarnings("ignore", "websockets.legacy is deprecated", DeprecationWarning)
        for path in (HTTP_PROTOCOLS[http], WS_PROTOCOLS[ws]):
            assert path is not None
            importlib.import_module(path.partition(":")[0])


@contextlib.contextmanager
def _thread(name: str, run: Callable[[], None], stop: Callable[[], None], started: threading.Event) -> Iterator[None]:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run()
        except BaseException as exc:
            errors.append(exc)
        finally:
            started.set()  # never leave the test waiting for a server that died

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    if not started.wait(STARTUP_TIMEOUT):
        stop()
        raise RuntimeError(f"{name} did not start within {STARTUP_TIMEOUT} s")
    if errors:
        raise RuntimeError(f"{name} failed to start") from errors[0]
    try:
        yield
    finally:
        stop()
        thread.join(SHUTDOWN_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError(f"{name} did not stop within {SHUTDOWN_TIMEOUT} s")
        if errors:
            raise RuntimeError(f"{name} failed") from errors[0]


@contextlib.contextmanager
def run_uvicorn(app: ASGIApp, *, http: str, ws: str, graceful: int = 5) -> Iterator[Running]:
    import uvicorn

    _load_uvicorn_protocols(http, ws)
    probe = _LifespanProbe(app)
    config = uvicorn.Config(
        probe,
        http=http,
        ws=ws,
        loop="asyncio",
        lifespan="on",
        log_config=None,  # keep the test suite's logging as it is
        access_log=False,
        timeout_graceful_shutdown=graceful,
    )
    server = uvicorn.Server(config)
    sock = _listening_socket()
    port = sock.getsockname()[1]

    def stop() -> None:
        server.should_exit = True

    name = f"uvicorn-{http}-{ws}"
    try:
        with _thread(name, lambda: server.run(sockets=[sock]), stop, probe.started):
            yield Running(name, port)
    finally:
        sock.close()


@contextlib.contextmanager
def run_hypercorn(app: ASGIApp, *, worker: str, graceful: int = 5) -> Iterator[Running]:
    from hypercorn.config import Config

    probe = _LifespanProbe(app)
    config = Config()
    sock = _listening_socket()
    port = sock.getsockname()[1]
    # Hypercorn adopts the listening socket (and closes it at the end).
    config.bind = [f"fd://{sock.detach()}"]
    config.errorlog = logging.getLogger("hypercorn.error")  # propagate to the test's log capture
    config.accesslog = None
    config.graceful_timeout = graceful
    name = f"hypercorn-{worker}"

    if worker == "asyncio":
        from hypercorn.asyncio import serve as asyncio_serve

        loop = asyncio.new_event_loop()
        stopping = asyncio.Event()

        def run() -> None:
            try:
                loop.run_until_complete(asyncio_serve(probe, config, shutdown_trigger=stopping.wait))  # type: ignore[arg-type]
            finally:
                loop.close()

        def stop() -> None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stopping.set)

        with _thread(name, run, stop, probe.started):
            yield Running(name, port)
    elif worker == "trio":
        import trio
        from hypercorn.trio import serve as trio_serve

        tokens: list[trio.lowlevel.TrioToken] = []
        trio_stopping: list[trio.Event] = []

        async def main() -> None:
            tokens.append(trio.lowlevel.current_trio_token())
            trio_stopping.append(trio.Event())
            await trio_serve(probe, config, shutdown_trigger=trio_stopping[0].wait)  # type: ignore[arg-type]

        def stop_trio() -> None:
            if tokens:
                with contextlib.suppress(trio.RunFinishedError):
                    trio.from_thread.run_sync(trio_stopping[0].set, trio_token=tokens[0])

        with _thread(name, lambda: trio.run(main), stop_trio, probe.started):
            yield Running(name, port)
    else:
        raise ValueError(worker)

"""Real ASGI servers in a background thread, on 127.0.0.1 and a port the OS picks.

uvicorn runs on asyncio, hypercorn on trio.  Both are started and stopped with hard time
limits; a server that does not start or stop in time fails the fixture that owns it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from functools import partial

import hypercorn.config
import hypercorn.trio
import trio
import uvicorn
from starlette.types import ASGIApp

__all__ = ["HypercornThread", "ServerThread", "UvicornThread"]

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
#: How long a stopping server lets open responses (streams, long polls) finish.
GRACEFUL_TIMEOUT = 1


class ServerThread:
    """A server running in a daemon thread; ``url`` is set once it listens."""

    name = "server"

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.url = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._guarded_run, name=f"e2e-{self.name}", daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError(f"{self.name} did not start within {START_TIMEOUT} s")
        if self._error is not None:
            raise RuntimeError(f"{self.name} failed to start") from self._error
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._thread.is_alive():
            self._request_stop()
            self._thread.join(STOP_TIMEOUT)
        if self._thread.is_alive():
            self._force_stop()
            self._thread.join(STOP_TIMEOUT)
            if self._thread.is_alive():
                raise RuntimeError(f"{self.name} did not stop within {2 * STOP_TIMEOUT} s")
        if self._error is not None:
            raise RuntimeError(f"{self.name} crashed") from self._error

    def _guarded_run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    def _run(self) -> None:
        raise NotImplementedError

    def _request_stop(self) -> None:
        raise NotImplementedError

    def _force_stop(self) -> None:
        self._request_stop()


class UvicornThread(ServerThread):
    """uvicorn on asyncio, serving a socket bound here so that the port is known at once."""

    name = "uvicorn"

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Made without IPPROTO_TCP, so asyncio would leave Nagle's algorithm on for what it
        # accepts (uvicorn binding a port itself turns it off): they inherit this instead.
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(
            app,
            loop="asyncio",
            lifespan="on",
            log_config=None,  # leave logging alone: records reach pytest's capture
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_TIMEOUT,
        )
        self._server = uvicorn.Server(config)

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._socket.close()

    def __enter__(self) -> UvicornThread:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        # uvicorn has no readiness event; ``started`` turns true once it listens.
        while not self._server.started:
            if self._ready.is_set():
                raise RuntimeError("uvicorn failed to start") from self._error
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start within {START_TIMEOUT} s")
            time.sleep(0.01)
        return self

    def _request_stop(self) -> None:
        self._server.should_exit = True

    def _force_stop(self) -> None:
        self._server.force_exit = True


class HypercornThread(ServerThread):
    """hypercorn on trio; the port is read from the address it reports once it listens."""

    name = "hypercorn"

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self._config = hypercorn.config.Config()
        self._config.bind = ["127.0.0.1:0"]
        self._config.graceful_timeout = GRACEFUL_TIMEOUT
        self._config.accesslog = None
        self._stop: trio.Event | None = None
        self._token: trio.lowlevel.TrioToken | None = None

    def _run(self) -> None:
        trio.run(self._main)

    async def _main(self) -> None:
        self._stop = trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            serve = partial(hypercorn.trio.serve, self.app, self._config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]
            binds: list[str] = await nursery.start(serve)
            self.url = binds[0]
            self._ready.set()

    def _request_stop(self) -> None:
        if self._stop is not None and self._token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)

"""Real ASGI servers in subprocesses, and a small synchronous SockJS client, for the tests.

Each server runs as ``python -m <server>`` with its output in a temporary file, in a process
group of its own so that teardown can kill it along with any worker it forked.  Where the
server can adopt a listening socket (uvicorn ``--fd``, hypercorn ``fd://``, daphne ``--fd``) we
bind 127.0.0.1 port 0 ourselves and hand the socket over: no race for the port and no log to
parse, and a request made before the server is up simply waits in the backlog.  Granian takes
only a port, so it gets one found by binding port 0 and closing the socket again.

The client side is synchronous (``websockets.sync`` and ``httpx.Client``): the servers run in
other processes, so an event loop in the test would add nothing but another backend to care
about.  Every call has a timeout; pytest-timeout is the hard limit above them.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
from uvicorn.config import WS_PROTOCOLS
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

__all__ = [
    "DAPHNE",
    "GRANIAN",
    "HYPERCORN",
    "TIMEOUT",
    "UVICORN",
    "RunningServer",
    "Server",
    "eventsource_echo",
    "raw_websocket_echo",
    "serve",
    "session_url",
    "websocket_echo",
    "websocket_refusal",
    "xhr_polling_echo",
    "xhr_streaming_echo",
]

ROOT = Path(__file__).resolve().parents[2]

#: Seconds for any one network operation of a test; pytest's own timeout is 60.
TIMEOUT = 10.0
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Server:
    """How to run one ASGI server.

    ``denial_response``: whether the server implements the ASGI ``websocket.http.response``
    extension, so that a refused websocket gets the application's own status.
    """

    name: str
    options: tuple[str, ...] = ()
    denial_response: bool = True
    adopts_socket: bool = True

    @property
    def known_noise(self) -> tuple[str, ...]:
        """Error lines this server logs when nothing went wrong."""
        if self.name == "uvicorn" and "wsproto" not in self.options and "websockets" not in self.options:
            # websockets-sansio (also what "auto" picks) forgets that a denial response
            # completed the handshake and logs this after every refused websocket, although
            # the client got our 403 (uvicorn PR #3138).  The other implementations are quiet,
            # so a handshake we really left incomplete still shows up in the matrix.
            return ("ASGI callable returned without completing handshake.",)
        return ()

    @property
    def id(self) -> str:
        return "-".join([self.name, *(option for option in self.options if not option.startswith("-"))])

    def command(self, app: str, *, fd: int | None, port: int) -> list[str]:
        python = [sys.executable, "-m", self.name]
        if self.name == "uvicorn":
            # --lifespan on: a failing lifespan must stop the server, not be ignored.
            return [*python, app, "--fd", str(fd), "--lifespan", "on", "--log-level", "warning", *self.options]
        if self.name == "hypercorn":
            return [*python, app, "--bind", f"fd://{fd}", "--log-level", "warning", *self.options]
        if self.name == "daphne":
            return [*python, "--fd", str(fd), "-v", "0", *self.options, app]
        if self.name == "granian":
            return [
                *python,
                "--interface",
                "asgi",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--log-level",
                "warning",
                *self.options,
                app,
            ]
        if self.name == "sockjs_asgi":  # our own command line, which serves a handler on uvicorn
            return [*python, app, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *self.options]
        raise ValueError(f"unknown server {self.name!r}")


#: uvicorn over each websocket implementation it has (websockets-sansio since 0.35) and both
#: HTTP parsers.
UVICORN = [
    Server("uvicorn", ("--ws", ws, "--http", http))
    for ws in ("websockets", "websockets-sansio", "wsproto")
    if ws in WS_PROTOCOLS
    for http in ("h11", "httptools")
]
#: hypercorn on asyncio and on trio.
HYPERCORN = [Server("hypercorn", ("--worker-class", worker)) for worker in ("asyncio", "trio")]
#: granian's ASGI interface; see the matrix tests for its websocket denial.
GRANIAN = Server("granian", adopts_socket=False)
#: daphne has no denial-response extension: a refused websocket is closed before its accept,
#: which daphne answers with 403.
DAPHNE = Server("daphne", denial_response=False)


@dataclass
class RunningServer:
    """A server process listening on ``base_url``."""

    server: Server
    base_url: str
    process: subprocess.Popen[bytes]
    _log: IO[bytes]

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url.removeprefix("http")

    def log(self, since: int = 0) -> str:
        """What the server wrote from byte ``since`` of its output on."""
        self._log.flush()
        self._log.seek(since)
        return self._log.read().decode(errors="replace")

    def log_size(self) -> int:
        self._log.flush()
        return self._log.seek(0, os.SEEK_END)

    def errors(self, since: int = 0) -> list[str]:
        """The lines of the server's output from ``since`` on that report an error."""
        noise = self.server.known_noise
        return [
            line
            for line in self.log(since).splitlines()
            if ("Traceback" in line or "ERROR" in line) and not any(text in line for text in noise)
        ]


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    # Accepted connections inherit TCP_NODELAY (Linux).  uvicorn adopts the socket as a Unix one
    # and would leave Nagle's algorithm on, unlike when it binds a port: a response written in
    # two pieces would wait for the client's delayed ACK.  (hypercorn sets the option on the
    # sockets it binds itself, as here.)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # Non-blocking, as Twisted requires of a socket it adopts (daphne --fd): O_NONBLOCK belongs
    # to the open file, which the server shares, and a blocking accept() stalls its reactor.
    sock.setblocking(False)
    return sock


def _free_port() -> int:
    # Races with anything else that binds a port meanwhile; only for servers that must bind
    # the port themselves.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(running: RunningServer, path: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if running.process.poll() is not None:
            raise RuntimeError(
                f"{running.server.id} exited with {running.process.returncode} before serving:\n{running.log()}"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"{running.server.id} did not serve {path} in {START_TIMEOUT} s:\n{running.log()}")
        try:
            response = httpx.get(running.base_url + path, timeout=remaining)
        except httpx.TransportError:
            time.sleep(0.05)  # polling another process: nothing to wait on but the port
            continue
        if response.status_code != 200:
            raise RuntimeError(f"{running.server.id}: GET {path} answered {response.status_code}:\n{running.log()}")
        return


def _die_with_the_tests() -> None:
    # Runs in the child before exec: on Linux, have the kernel kill the server if the test
    # process dies without its teardown (SIGKILL, pytest-timeout's thread method).  Only the
    # server's main process gets this: granian's forked worker then outlives it, since granian
    # does not watch its parent.  Every other ending runs the teardown, which kills the group.
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # every server stops gracefully on Ctrl-C
            with suppress(subprocess.TimeoutExpired):
                process.wait(STOP_TIMEOUT)
    finally:
        # Its own process group (start_new_session): this reaches workers it forked and
        # nothing else.
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(STOP_TIMEOUT)


@contextmanager
def serve(server: Server, app: str, *, ready_path: str) -> Iterator[RunningServer]:
    """Run ``server`` with the application ``app`` ("module:attribute") for the block.

    Returns once ``GET ready_path`` answers 200; the server is killed on the way out, whatever
    happened.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryFile() as log:
        listener = _listening_socket() if server.adopts_socket else None
        try:
            port = listener.getsockname()[1] if listener is not None else _free_port()
            fd = listener.fileno() if listener is not None else None
            process = subprocess.Popen(
                server.command(app, fd=fd, port=port),
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=() if fd is None else (fd,),
                start_new_session=True,
                preexec_fn=_die_with_the_tests,
            )
        finally:
            if listener is not None:
                listener.close()  # the server has its own copy now
        try:
            running = RunningServer(server, f"http://127.0.0.1:{port}", process, log)
            _wait_ready(running, ready_path)
            yield running
        finally:
            _stop(process)


# -- a synchronous SockJS client ------------------------------------------------------------


def session_url(service_url: str) -> str:
    """A new session's URL below ``service_url``: ``<service>/<server id>/<session id>``."""
    return f"{service_url}/{secrets.randbelow(1000):03d}/{secrets.token_hex(8)}"


def websocket_refusal(url: str, *, headers: dict[str, str] | None = None) -> tuple[int, bytes] | None:
    """Open a websocket to ``url`` and close it again: ``None`` if it opened, else the HTTP
    status and body the server refused it with."""
    try:
        with connect(url, additional_headers=headers, open_timeout=TIMEOUT, close_timeout=TIMEOUT):
            return None
    except InvalidStatus as exc:
        return exc.response.status_code, bytes(exc.response.body or b"")


def _expect(what: str, actual: object, expected: object) -> None:
    # Plain asserts in this module are not rewritten by pytest: say what went wrong ourselves.
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


def websocket_echo(url: str, message: str = "hi", *, headers: dict[str, str] | None = None) -> None:
    """Over the websocket transport at ``url`` (a session's ``.../websocket``): open, send
    ``message``, get it back."""
    with connect(url, additional_headers=headers, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as socket:
        _expect("first frame", socket.recv(timeout=TIMEOUT), "o")
        socket.send(json.dumps([message]))
        _expect("echo frame", socket.recv(timeout=TIMEOUT), "a" + json.dumps([message]))


def raw_websocket_echo(url: str, message: str = "hi") -> None:
    """Over the raw ``/websocket`` endpoint: messages travel verbatim, without framing."""
    with connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as socket:
        socket.send(message)
        _expect("echo", socket.recv(timeout=TIMEOUT), message)


def xhr_polling_echo(client: httpx.Client, session: str, message: str = "hi") -> None:
    """Over xhr polling at ``session`` (a session URL): open, send, poll the message back."""
    opened = client.post(session + "/xhr")
    _expect("opening poll", (opened.status_code, opened.text), (200, "o\n"))
    sent = client.post(session + "/xhr_send", content=json.dumps([message]))
    _expect("xhr_send", (sent.status_code, sent.text), (204, ""))
    polled = client.post(session + "/xhr")
    _expect("second poll", (polled.status_code, polled.text), (200, "a" + json.dumps([message]) + "\n"))


def xhr_streaming_echo(client: httpx.Client, session: str, message: str = "hi") -> None:
    """Over xhr-streaming at ``session``: frames arrive while the response is still open."""
    with client.stream("POST", session + "/xhr_streaming") as response:
        _expect("status", response.status_code, 200)
        lines = response.iter_lines()
        _expect("prelude", next(lines), "h" * 2048)  # defeats browsers' buffering
        _expect("first frame", next(lines), "o")
        sent = client.post(session + "/xhr_send", content=json.dumps([message]))
        _expect("xhr_send", (sent.status_code, sent.text), (204, ""))
        _expect("echo frame", next(lines), "a" + json.dumps([message]))


def eventsource_echo(client: httpx.Client, session: str, message: str = "hi") -> None:
    """Over eventsource at ``session``: each frame is one ``data:`` event."""
    with client.stream("GET", session + "/eventsource") as response:
        _expect("status", response.status_code, 200)
        _expect("content type", response.headers["content-type"], "text/event-stream")
        events = (line for line in response.iter_lines() if line)
        _expect("first event", next(events), "data: o")
        sent = client.post(session + "/xhr_send", content=json.dumps([message]))
        _expect("xhr_send", (sent.status_code, sent.text), (204, ""))
        _expect("echo event", next(events), "data: a" + json.dumps([message]))

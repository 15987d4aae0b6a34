"""Start and stop the cluster example: redis-server, N uvicorn processes and haproxy, on
127.0.0.1, each with its output in a private directory.

Used by ``python -m examples.cluster`` (``nox -s cluster``) and by the integration tests, which
also kill and restart its parts.  Needs Debian's ``redis-server`` and ``haproxy`` on the PATH.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A free 127.0.0.1 port, for programs that must bind it themselves (haproxy, Redis).

    Another program may take it before they do: it comes from the range the kernel also picks
    outgoing connections' ports from.  :func:`start_on_a_free_port` chooses again then.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def listening_socket(port: int = 0) -> socket.socket:
    """A socket listening on 127.0.0.1:``port`` (0: one the system chooses), for a uvicorn to
    adopt with ``--fd``: bound before the program starts, its port cannot be taken meanwhile, and
    a request made while the program starts waits in the backlog instead of failing.

    It has ``TCP_NODELAY``, which the connections it accepts inherit (Linux).  uvicorn adopts a
    descriptor as a Unix socket, so the event loop does not set it on them, and a response
    written in two parts then waits for the client's delayed acknowledgement: about 40 ms per
    request of a kept-alive connection.
    """
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    return listener


def _die_with_parent() -> None:
    # In the child before exec: the kernel kills it if the launcher dies without cleaning up.
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class PortTaken(RuntimeError):
    """A program exited because its port was taken (see :func:`free_port`)."""


def wait_ready(what: str, check: Callable[[], bool], part: Process) -> None:
    """Wait until ``check()`` holds; fail with what ``part``'s current run wrote to its log if
    its program exits or time runs out."""
    process = part.process
    assert process is not None
    deadline = time.monotonic() + START_TIMEOUT
    while not check():
        if process.poll() is not None:
            output = _log_since(part.log, part.log_start)
            error = PortTaken if "address already in use" in output.lower() else RuntimeError
            raise error(f"{what} exited with {process.returncode}:\n{output}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready in {START_TIMEOUT} s:\n{_log_since(part.log, part.log_start)}")
        time.sleep(0.05)  # another process: nothing to wait on but its port


def _log_since(log: Path, offset: int) -> str:
    with log.open("rb") as file:
        file.seek(offset)
        return file.read().decode(errors="replace")


def start_on_a_free_port(part: Process, start: Callable[[], None], attempts: int = 5) -> None:
    """Give ``part`` a port from :func:`free_port` and ``start()`` it; should another program
    take the port first, choose another and start again."""
    for attempt in range(1, attempts + 1):
        part.port = free_port()
        try:
            start()
        except PortTaken:
            if attempt == attempts:
                raise
        else:
            return


def http_ok(port: int, path: str) -> bool:
    """Whether ``GET path`` on 127.0.0.1:``port`` answers 200."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
            return sock.recv(64).startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))
    except OSError:
        return False


@dataclass
class Process:
    """One program of the cluster, restartable under the same name, port and log."""

    name: str
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    #: Where the current run of the program began writing its log.
    log_start: int = 0

    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _spawn(self, command: list[str], env: dict[str, str] | None = None, pass_fds: tuple[int, ...] = ()) -> None:
        with self.log.open("ab") as out:
            self.log_start = out.tell()
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=pass_fds,
                start_new_session=True,  # Ctrl-C reaches the launcher only, which stops us in order
                preexec_fn=_die_with_parent,
            )

    def _spawn_uvicorn(self, app: str, options: list[str], env: dict[str, str]) -> None:
        """Start uvicorn serving ``app`` (from this checkout) with ``options`` and ``env`` added
        to the environment, on a socket bound here: port 0 binds one the system chooses, and
        restarts bind the same."""
        listener = listening_socket(self.port)
        self.port = listener.getsockname()[1]
        env = {
            **os.environ,
            **env,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        command = [sys.executable, "-m", "uvicorn", app, "--fd", str(listener.fileno()), "--log-level", "warning"]
        try:
            self._spawn(command + options, env, pass_fds=(listener.fileno(),))
        finally:
            listener.close()  # uvicorn has its own

    def send_signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
        """Send ``signum`` and wait for the exit (SIGKILL after ``timeout``); the exit status."""
        if self.process is None:
            return None
        self.send_signal(signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            return self.process.wait(timeout)


@dataclass
class Redis(Process):
    """redis-server without persistence: pub/sub needs none."""

    def start(self) -> None:
        self._spawn(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.log.parent),
            ]
        )
        wait_ready("redis-server", self._pong, self)

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16) == b"+PONG\r\n"
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@dataclass
class Backend(Process):
    """One single-worker uvicorn serving ``examples.cluster.app:app``; it adopts a socket bound
    here, so a request made while it starts waits in the backlog instead of failing.  Port 0:
    the first start binds one the system chooses, and restarts bind the same."""

    redis_url: str = ""
    app: str = "examples.cluster.app:app"

    def start(self) -> None:
        env = {"BACKEND_NAME": self.name, "REDIS_URL": self.redis_url}
        self._spawn_uvicorn(self.app, ["--lifespan", "on", "--timeout-graceful-shutdown", "5"], env)
        wait_ready(f"backend {self.name}", lambda: http_ok(self.port, "/health"), self)


@dataclass
class UvicornWorkers(Process):
    """``uvicorn APP --workers N``: one socket, bound here as for a :class:`Backend`, from which
    the kernel hands each new connection to whichever worker accepts it first."""

    app: str = "examples.cluster.app:app"
    workers: int = 3
    options: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        """Start the supervisor; the caller waits for the workers, as it knows how to ask each."""
        self._spawn_uvicorn(self.app, ["--workers", str(self.workers), *self.options], self.env)

    def send_signal(self, signum: int) -> None:
        """Signal the supervisor and its workers, all of its process group (so :meth:`stop`
        stops them all): a worker outlives a supervisor that is killed (it is the supervisor's
        child, not ours)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)


def haproxy_config(port: int, backends: list[Backend], *, check_interval: str = "2s") -> str:
    """haproxy in front of ``backends``: see docs/deployment.md for every line."""
    servers = "\n".join(f"    server {backend.name} 127.0.0.1:{backend.port}" for backend in backends)
    return f"""\
global
    maxconn 4096
    log stdout format raw local0

defaults
    mode http
    log global
    option httplog
    option redispatch
    retries 2
    timeout connect 2s
    timeout client 65s
    timeout server 65s
    timeout tunnel 1h
    timeout http-request 10s
    timeout queue 5s

frontend sockjs
    bind 127.0.0.1:{port}
    maxconn 4000
    default_backend sockjs

backend sockjs
    balance uri depth 2
    hash-type consistent
    option httpchk GET /health
    http-check expect status 200
    default-server check inter {check_interval} fall 2 rise 2
{servers}
"""


@dataclass
class Haproxy(Process):
    config: Path = field(default_factory=Path)

    def start(self) -> None:
        self._spawn(["haproxy", "-db", "-f", str(self.config)])
        wait_ready("haproxy", lambda: http_ok(self.port, "/echo/info"), self)


@dataclass
class Cluster:
    """Everything the example runs; ``url`` is haproxy's."""

    redis: Redis
    backends: list[Backend]
    haproxy: Haproxy

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.haproxy.port}"

    def stop(self) -> None:
        """Stop in the order that lets clients see it: backends (close frames through the
        balancer), then haproxy, then Redis."""
        for backend in self.backends:
            backend.send_signal(signal.SIGTERM)
        for part in [*self.backends, self.haproxy, self.redis]:
            part.stop()


@contextlib.contextmanager
def running_cluster(workdir: Path, size: int = 3, *, check_interval: str = "2s") -> Iterator[Cluster]:
    """Start the cluster with ``size`` backends, logs and configuration in ``workdir``; stop it
    on the way out, whatever happened."""
    redis = Redis("redis", 0, workdir / "redis.log")
    backends: list[Backend] = []
    config = workdir / "haproxy.cfg"
    haproxy = Haproxy("haproxy", 0, workdir / "haproxy.log", config=config)
    cluster = Cluster(redis, backends, haproxy)

    def start_haproxy() -> None:
        config.write_text(haproxy_config(haproxy.port, backends, check_interval=check_interval))
        haproxy.start()

    try:
        # Each port is chosen as its program starts (the backends' by the system): chosen all at
        # once, the last ones stayed free for seconds while the first programs connected out.
        start_on_a_free_port(redis, redis.start)
        for index in range(1, size + 1):
            backend = Backend(f"s{index}", 0, workdir / f"s{index}.log", redis_url=redis.url)
            backends.append(backend)
            backend.start()
        start_on_a_free_port(haproxy, start_haproxy)
        yield cluster
    finally:
        cluster.stop()

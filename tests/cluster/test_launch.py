"""The cluster launcher's ports: a program whose port another one took first gets a new one.

``free_port()`` answers a port that is free when asked; the program binds it later, and in
between the kernel may give it to an outgoing connection.  Taken ports are simulated here by
holding a listening socket on the port offered first.  A socket the launcher binds for uvicorn
to adopt gives what it accepts ``TCP_NODELAY``.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
from examples.cluster import launch

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs Debian's redis-server (.ci/run installs it)"
)


def offering(monkeypatch: pytest.MonkeyPatch, first: int) -> list[int]:
    """Make ``free_port()`` answer ``first``, then free ports; returns what it answered."""
    answered: list[int] = []
    real = launch.free_port

    def free_port() -> int:
        port = real() if answered else first
        answered.append(port)
        return port

    monkeypatch.setattr(launch, "free_port", free_port)
    return answered


def test_a_program_whose_port_was_taken_starts_on_another(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        answered = offering(monkeypatch, taken)
        server = launch.Redis("redis", 0, tmp_path / "redis.log")
        launch.start_on_a_free_port(server, server.start)
        try:
            assert answered[0] == taken and len(answered) == 2
            assert server.port == answered[1] != taken
            assert server._pong()
            assert "address already in use" in (tmp_path / "redis.log").read_text().lower()  # the first try
        finally:
            server.stop()


class Refusing(launch.Process):
    """A program that exits at once for another reason than its port."""

    def start(self) -> None:
        self._spawn(["redis-server", "--port", str(self.port), "--no-such-option", "yes"])
        launch.wait_ready("refusing", lambda: False, self)


def test_other_failures_are_reported_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "refusing.log"
    log.write_text("an earlier run: Address already in use\n")  # not this run's output
    answered = offering(monkeypatch, launch.free_port())
    part = Refusing("refusing", 0, log)
    with pytest.raises(RuntimeError, match="refusing exited") as raised:
        launch.start_on_a_free_port(part, part.start)
    assert not isinstance(raised.value, launch.PortTaken)
    assert "an earlier run" not in str(raised.value)
    assert len(answered) == 1  # not tried again


def test_a_port_taken_every_time_fails_in_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        monkeypatch.setattr(launch, "free_port", lambda: taken)
        server = launch.Redis("redis", 0, tmp_path / "redis.log")
        with pytest.raises(launch.PortTaken, match="redis-server exited"):
            launch.start_on_a_free_port(server, server.start, attempts=2)
        assert server.process is not None and server.process.poll() is not None


def test_connections_to_an_adopted_socket_have_tcp_nodelay() -> None:
    # uvicorn --fd serves the socket as a Unix one and leaves Nagle's algorithm on for what it
    # accepts (44 ms against 0.6 ms per xhr round trip, measured): the listener's option is
    # what they inherit.
    with launch.listening_socket() as listener, socket.create_connection(listener.getsockname(), timeout=5) as client:
        accepted, _ = listener.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0  # not by default

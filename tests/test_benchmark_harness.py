"""The benchmark harness's server start: a server whose port another program took first starts
again on another port.

``free_port()`` answers a port that is free when asked, and the server binds it a moment later,
while the load generators' connections take their source ports from the same range.  Such a
port (bound, not listening) is simulated here by a socket bound to the port offered first.  The
server is the standard library's HTTP server, which exits when its port is taken.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from benchmarks import harness
from examples.cluster import launch


def http_server(port: int) -> list[str]:
    return [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]


def test_a_server_whose_port_was_taken_starts_on_another(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        taken = holder.getsockname()[1]
        answered: list[int] = []
        real = launch.free_port  # what the harness calls

        def free_port() -> int:
            answered.append(real() if answered else taken)
            return answered[-1]

        monkeypatch.setattr(harness, "free_port", free_port)
        port, process = harness.start_server(http_server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert answered[0] == taken and port == answered[1] != taken
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                client.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
                assert client.recv(16).startswith(b"HTTP/1.0 200")
        finally:
            harness.stop(process)


def test_a_server_that_keeps_exiting_is_given_up_on() -> None:
    def exits(port: int) -> list[str]:
        return [sys.executable, "-c", "raise SystemExit(3)"]

    with pytest.raises(harness.ExitedEarly, match="exited with 3"):
        harness.start_server(exits, attempts=2)

"""A minimal HTTP/1.x client over a raw socket, for what httpx hides: the exact framing of a
response (HTTP/1.0 streaming), aborting a request whose answer has not started, and sending a
body faster than the server reads it.  Every socket operation has a timeout."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

TIMEOUT = 10.0


@dataclass
class Head:
    """A response's status line and headers (names lower-cased)."""

    version: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)


class RawConnection:
    """One TCP connection to 127.0.0.1:``port``."""

    def __init__(self, port: int, *, timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._buffer = b""

    def close(self) -> None:
        self.sock.close()

    def abort(self) -> None:
        """Close with a TCP reset, as a browser aborting a request may."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_head(self, method: str, path: str, *, version: str = "1.1", headers: dict[str, str] | None = None) -> None:
        lines = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def request(self, method: str, path: str, body: bytes | None = None, *, version: str = "1.1") -> None:
        headers = {} if body is None else {"Content-Length": str(len(body))}
        self.send_head(method, path, version=version, headers=headers)
        if body:
            self.sock.sendall(body)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self._buffer += data
        return bool(data)

    def read_line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            if not self._fill():
                raise ConnectionError("connection closed mid-line")
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    def read_head(self) -> Head:
        version, status, *_ = self.read_line().decode("latin-1").split(" ", 2)
        head = Head(version, int(status))
        while line := self.read_line():
            name, _, value = line.decode("latin-1").partition(":")
            head.headers[name.strip().lower()] = value.strip()
        return head

    def read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if not self._fill():
                raise ConnectionError(f"connection closed with {len(self._buffer)} of {size} bytes")
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def read_chunk(self) -> bytes:
        """One chunk of a chunked body (b"" for the last)."""
        size = int(self.read_line().split(b";")[0], 16)
        data = self.read_exactly(size)
        assert self.read_line() == b""
        return data

    def read_until_close(self) -> bytes:
        """Everything until the server closes the connection."""
        while self._fill():
            pass
        data, self._buffer = self._buffer, b""
        return data

    def read_body(self, head: Head) -> bytes:
        """The body, by whichever framing the head announced (RFC 9112 6.3)."""
        if head.status in (204, 304) or head.status < 200:
            return b""
        if head.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while chunk := self.read_chunk():
                chunks.append(chunk)
            return b"".join(chunks)
        if "content-length" in head.headers:
            return self.read_exactly(int(head.headers["content-length"]))
        return self.read_until_close()


def exchange(port: int, method: str, path: str, body: bytes | None = None) -> tuple[Head, bytes]:
    """One request on a fresh connection: the response head and its whole body."""
    with RawConnection(port) as conn:
        conn.request(method, path, body)
        head = conn.read_head()
        return head, conn.read_body(head)

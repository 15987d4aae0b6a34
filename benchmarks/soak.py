"""Churn and soak: many SockJS sessions opened and abandoned against a real uvicorn (``nox -s soak``).

``python -m benchmarks.soak [--sessions N] [--concurrency C]`` starts ``uvicorn benchmarks.soak:app``
(uvicorn's defaults) on 127.0.0.1, and drives it over raw sockets: every session is opened on one
transport in turn (websocket, xhr, xhr_streaming, eventsource, htmlfile, jsonp, the raw
``/websocket``), may send a message, and is then abandoned: the socket is dropped without a
close frame or a final poll, so the server must notice and expire it.  The service's handler
echoes and joins one of 64 rooms, so rooms are churned too.

Before the run (after a warm-up) and after it (once every abandoned session has expired) the
server reports what it holds: sessions, connections, rooms, asyncio tasks, Python objects and
its RSS (also after ``malloc_trim``, which tells a leak from memory the allocator keeps); and
every 10,000 sessions of the run, what it holds under load.  The run passes when nothing is
left (the same task count as at the baseline, no session, connection or room), the object count
is back to the baseline (within 1%), and the RSS under load grew by at most 5% from the first of
those checkpoints to the last, and ends within 25% of the baseline.  A leak grows with every
session; what the allocator keeps after the warm-up's peak does not (between runs with no leak
the settled RSS was 1.01 to 1.15 times the baseline, while the RSS under load stayed flat).
Prints the figures; exits 1 on failure.
Not part of CI: 100,000 sessions take minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import itertools
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from sockjs_asgi import Connection, SockJSApp

ROOT = Path(__file__).resolve().parent.parent
ROOMS = 64
STATS_PATH = "/_soak/stats"
TRANSPORTS = ("websocket", "xhr", "xhr_streaming", "eventsource", "htmlfile", "jsonp", "raw_websocket")
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
TIMEOUT = 30.0

# -- the server side ------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


joined = itertools.count()


async def handler(conn: Connection) -> None:
    conn.join(f"room-{next(joined) % ROOMS}")
    async for message in conn:
        await conn.send(message)


service = SockJSApp(handler)


def rss_kib() -> int:
    """This process's resident set size, from /proc (Linux)."""
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    assert match is not None
    return int(match.group(1))


def trimmed_rss_kib() -> int:
    """RSS once glibc has handed its free heap pages back (``malloc_trim``): what the process
    still uses, without the high-water mark the allocator keeps."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_kib()


def stats() -> dict[str, int]:
    gc.collect()
    return {
        "sessions": len(service.registry),
        "connections": len(service.hub.connections),
        "rooms": len(list(service.hub.rooms())),
        # This request's own task is among them; the baseline counts it the same way.
        "tasks": len(asyncio.all_tasks()),
        "rss_kib": rss_kib(),
        # Python-level figures, to tell a leak (they grow) from allocator fragmentation (RSS alone).
        "objects": len(gc.get_objects()),
        "blocks": sys.getallocatedblocks(),
        "trimmed_rss_kib": trimmed_rss_kib(),  # last: it changes the RSS read above
    }


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The soak service under ``/soak``, and its statistics at ``/_soak/stats``."""
    if scope["type"] == "http" and scope["path"] == STATS_PATH:
        body = json.dumps(stats()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if scope["type"] != "lifespan":
        path: str = scope["path"]
        if not path.startswith("/soak"):
            await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        scope = dict(scope, root_path=scope.get("root_path", "") + "/soak")
    await service(scope, receive, send)


# -- the client side ------------------------------------------------------------------------


class Client:
    """Opens and abandons sessions over raw sockets."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.failures: list[str] = []

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    @staticmethod
    def _drop(writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()  # no FIN handshake, no close frame: abandoned

    async def _request(self, method: str, path: str, body: bytes = b"") -> bytes:
        """A whole request/response on its own connection (Content-Length responses only)."""
        reader, writer = await self._open()
        try:
            head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
            writer.write(head.encode() + body)
            headers = await reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"content-length: (\d+)", headers, re.IGNORECASE)
            return await reader.readexactly(int(match.group(1))) if match else b""
        finally:
            writer.close()

    async def _stream_until(self, method: str, path: str, marker: bytes) -> None:
        reader, writer = await self._open()
        try:
            body = "Content-Length: 0\r\n" if method == "POST" else ""
            writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{body}\r\n".encode())
            data = b""
            while marker not in data:
                chunk = await reader.read(65536)
                if not chunk:
                    raise ConnectionError(f"{path}: closed before {marker!r}")
                data += chunk
        finally:
            self._drop(writer)

    async def _websocket(self, path: str, expect_open: bool) -> None:
        reader, writer = await self._open()
        try:
            writer.write(
                (
                    f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(f"{path}: {head[:40]!r}")
            if expect_open:
                frame = await reader.readexactly(3)
                if frame != b"\x81\x01o":
                    raise ConnectionError(f"{path}: first frame {frame!r}")
            payload = b'["soak"]' if expect_open else b"soak"
            mask = os.urandom(4)
            masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
            writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
            await writer.drain()
        finally:
            self._drop(writer)

    async def session(self, index: int) -> None:
        transport = TRANSPORTS[index % len(TRANSPORTS)]
        base = f"/soak/{index % 1000:03d}/{uuid.uuid4().hex}"
        if transport == "websocket":
            await self._websocket(base + "/websocket", expect_open=True)
        elif transport == "raw_websocket":
            await self._websocket("/soak/websocket", expect_open=False)
        elif transport == "xhr":
            if await self._request("POST", base + "/xhr") != b"o\n":
                raise ConnectionError("xhr: no open frame")
            await self._request("POST", base + "/xhr_send", b'["soak"]')
        elif transport == "jsonp":
            if await self._request("GET", base + "/jsonp?c=cb") != b'/**/cb("o");\r\n':
                raise ConnectionError("jsonp: no open frame")
            await self._request("POST", base + "/jsonp_send", b'["soak"]')
        elif transport == "xhr_streaming":
            await self._stream_until("POST", base + "/xhr_streaming", b"o\n")
        elif transport == "eventsource":
            await self._stream_until("GET", base + "/eventsource", b"data: o\r\n")
        else:
            await self._stream_until("GET", base + "/htmlfile?c=cb", b'p("o")')

    async def run(
        self, count: int, concurrency: int, progress: Callable[[int], Awaitable[None]] | None = None
    ) -> float:
        """Open and abandon ``count`` sessions, ``concurrency`` at a time; returns the seconds taken."""
        next_index = 0
        done = 0

        async def worker() -> None:
            nonlocal next_index, done
            while next_index < count:
                index = next_index
                next_index += 1
                try:
                    await asyncio.wait_for(self.session(index), TIMEOUT)
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError) as exc:
                    self.failures.append(f"{TRANSPORTS[index % len(TRANSPORTS)]}: {exc!r}")
                done += 1
                if progress is not None and done % 10_000 == 0:
                    await progress(done)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.monotonic() - started

    async def stats(self) -> dict[str, int]:
        result: dict[str, int] = json.loads(await self._request("GET", STATS_PATH))
        return result

    async def settled(self, timeout: float) -> dict[str, int]:
        """The server's statistics once it holds no session, connection or room (or at timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            current = await self.stats()
            if (current["sessions"], current["connections"], current["rooms"]) == (0, 0, 0):
                return current
            if time.monotonic() > deadline:
                return current
            await asyncio.sleep(0.5)  # a driver polling a remote server, not a test


LOG = ROOT / ".cache" / "soak" / "uvicorn.log"


def start_server(uvicorn: str) -> tuple[subprocess.Popen[bytes], int]:
    """uvicorn with its defaults, logging to a file (read for its port, and for errors)."""
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}")
    LOG.parent.mkdir(parents=True, exist_ok=True)
    with LOG.open("wb") as log:
        process = subprocess.Popen(
            [uvicorn, "benchmarks.soak:app", "--host", "127.0.0.1", "--port", "0", "--no-access-log"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        match = re.search(r"running on http://127\.0\.0\.1:(\d+)", LOG.read_text(errors="replace"), re.IGNORECASE)
        if match:
            return process, int(match.group(1))
        time.sleep(0.1)
    process.kill()
    raise SystemExit(f"uvicorn did not start; see {LOG}")


async def soak(port: int, sessions: int, concurrency: int, warmup: int) -> bool:
    client = Client(port)
    cold = await client.stats()
    await client.run(warmup, concurrency)
    baseline = await client.settled(60)

    under_load: list[float] = []

    async def progress(done: int) -> None:
        current = await client.stats()
        under_load.append(current["rss_kib"])
        print(f"  {done:>7} sessions: {current}", flush=True)

    elapsed = await client.run(sessions, concurrency, progress)
    after_run = await client.stats()
    final = await client.settled(60)
    rss_ratio = final["rss_kib"] / baseline["rss_kib"]
    trimmed_ratio = final["trimmed_rss_kib"] / baseline["trimmed_rss_kib"]
    leftovers = {
        key: final[key] - (baseline[key] if key == "tasks" else 0)
        for key in ("sessions", "connections", "rooms", "tasks")
    }
    print(f"sessions: {sessions} in {elapsed:.1f} s = {sessions / elapsed:.0f} sessions/s ({concurrency} at a time)")
    print(f"failed sessions: {len(client.failures)}" + (f", first: {client.failures[:3]}" if client.failures else ""))
    print(f"server at start:        {cold}")
    print(f"baseline (after {warmup} warm-up sessions, settled): {baseline}")
    print(f"right after the run:    {after_run}")
    print(f"settled after the run:  {final}")
    print(f"RSS after / baseline: {rss_ratio:.3f} (after malloc_trim: {trimmed_ratio:.3f}); leftovers: {leftovers}")
    print(f"Python objects after / baseline: {final['objects']} / {baseline['objects']}")
    errors = LOG.read_text(errors="replace").count("Traceback")
    print(f"tracebacks in the server's log: {errors} ({LOG})")
    growth = under_load[-1] / under_load[0] if len(under_load) > 1 else 1.0
    print(f"RSS under load, last checkpoint / first: {growth:.3f}")
    objects_ratio = final["objects"] / baseline["objects"]
    ok = (
        all(value == 0 for value in leftovers.values())
        and growth <= 1.05
        and rss_ratio <= 1.25
        and objects_ratio <= 1.01
        and not client.failures
        and not errors
    )
    print("PASS" if ok else "FAIL")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=10_000)
    parser.add_argument("--uvicorn", default=str(Path(sys.executable).parent / "uvicorn"))
    args = parser.parse_args()
    process, port = start_server(args.uvicorn)
    try:
        ok = asyncio.run(soak(port, args.sessions, args.concurrency, args.warmup))
    finally:
        process.terminate()
        process.wait(TIMEOUT)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

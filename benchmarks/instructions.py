"""Instructions per unit of work on the hot paths, in-process: ``python -m benchmarks.instructions``.

Time on a shared machine drifts; the number of instructions a CPU executes for the same work
does not.  Each workload runs in a child process under ``valgrind --tool=callgrind`` twice,
with ``n`` and with ``2n`` units of work: the difference, divided by ``n``, is what one unit
costs, with the interpreter's start-up and the imports taken out.  Each is reported beside a
bare-ASGI reference doing the same job over the same in-memory sockets, whose own work (the
fake socket's) is in both figures.

* ``broadcast``: one message to 500 idle SockJS websocket sessions, per receiver; the
  reference is a loop of ``await send(message)`` over the same sockets.
* ``raw-echo`` and ``ws-echo``: 20 sessions with 10 messages in flight, per message, on the
  raw ``/websocket`` and on the SockJS websocket transport; the reference echoes each message
  as it comes.  The sockets hand over what is queued without waiting, as uvicorn's do.
* ``xhr``: an ``xhr_send`` and an ``xhr`` poll, per round trip, through the benchmark's
  services; the reference is ``benchmarks/apps/bare.py``.
* ``setup``: a SockJS websocket session opened, its ``o`` read and the socket closed by the
  client, per session, one after the other; the reference accepts, sends ``o`` and waits for
  the close.  What the cycle collector does for the objects a session leaves is in the count.

Needs valgrind (``apt-get install valgrind``); a run takes about a minute per workload.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from sockjs_asgi import Connection, SockJSApp
from sockjs_asgi._types import Message, Receive, Scope, Send

from .apps import bare as bare_app
from .apps.sockjs_asgi_app import app as services

SESSIONS = 20
IN_FLIGHT = 10
RECEIVERS = 500
TEXT = "echo-0123456789abcdefghijklmnopq"  # 32 characters, as in every benchmark
_sessions = itertools.count()


class Socket:
    """One end of an in-memory websocket: what the server reads, and a count of what it wrote."""

    def __init__(self, *, framed: bool) -> None:
        self.inbox: MemoryObjectSendStream[Message]
        self._outbox: MemoryObjectReceiveStream[Message]
        self.inbox, self._outbox = anyio.create_memory_object_stream[Message](math.inf)
        self.framed = framed
        self.received = 0
        self.wanted = 0
        self.arrived: anyio.Event | None = None

    def close(self) -> None:
        self.inbox.close()
        self._outbox.close()

    async def receive(self) -> Message:
        try:
            return self._outbox.receive_nowait()
        except anyio.WouldBlock:
            return await self._outbox.receive()

    async def send(self, message: Message) -> None:
        if message["type"] != "websocket.send":
            return
        text: str = message["text"]
        if not self.framed:
            self.received += 1
        elif text.startswith("a"):
            self.received += text.count('","') + 1
        if self.arrived is not None and self.received >= self.wanted:
            self.arrived.set()


def websocket_scope(path: str) -> Scope:
    return {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "scheme": "ws",
        "subprotocols": [],
    }


async def echo(conn: Connection) -> None:
    async for message in conn:
        await conn.send(message)


async def listen(conn: Connection) -> None:
    async for _ in conn:
        pass


async def bare_echo(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "text": message["text"]})


async def run_echo(units: int, *, raw: bool, reference: bool) -> None:
    """``units`` bursts of IN_FLIGHT messages on each of SESSIONS sessions."""
    service = SockJSApp(echo)
    app: Callable[[Scope, Receive, Send], Awaitable[None]] = bare_echo if reference else service
    framed = not raw and not reference
    path = "/websocket" if raw else "/000/session/websocket"
    payload = f'["{TEXT}"]' if framed else TEXT

    sockets: list[Socket] = []

    async def session(task_group: Any) -> None:
        socket = Socket(framed=framed)
        sockets.append(socket)
        socket.inbox.send_nowait({"type": "websocket.connect"})
        task_group.start_soon(app, websocket_scope(path), socket.receive, socket.send)
        for _ in range(units):
            socket.wanted, socket.arrived = socket.received + IN_FLIGHT, anyio.Event()
            for _ in range(IN_FLIGHT):
                socket.inbox.send_nowait({"type": "websocket.receive", "text": payload})
            await socket.arrived.wait()
        socket.inbox.send_nowait({"type": "websocket.disconnect", "code": 1000})

    async with service.run(), anyio.create_task_group() as servers, anyio.create_task_group() as clients:
        for _ in range(SESSIONS):
            clients.start_soon(session, servers)
    for socket in sockets:
        socket.close()


async def run_broadcast(units: int, *, reference: bool) -> None:
    """``units`` broadcasts to RECEIVERS idle sessions."""
    service = SockJSApp(listen)
    sockets = [Socket(framed=True) for _ in range(RECEIVERS)]
    async with service.run(), anyio.create_task_group() as servers:
        for number, socket in enumerate(sockets):
            socket.inbox.send_nowait({"type": "websocket.connect"})
            servers.start_soon(service, websocket_scope(f"/000/s{number}/websocket"), socket.receive, socket.send)
        await anyio.wait_all_tasks_blocked()
        if reference:
            sends = [socket.send for socket in sockets]
            for _ in range(units):
                message = {"type": "websocket.send", "text": f'a["{TEXT}"]'}
                for send in list(sends):
                    await send(message)
        else:
            for _ in range(units):
                await service.broadcast(TEXT)
        for socket in sockets:
            socket.inbox.send_nowait({"type": "websocket.disconnect", "code": 1000})
    for socket in sockets:
        socket.close()


async def bare_open(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "o"})
    while (await receive())["type"] != "websocket.disconnect":
        pass


async def run_setup(units: int, *, reference: bool) -> None:
    """``units`` websocket sessions, one after the other: opened, ``o`` read, closed by the client."""
    service = SockJSApp(listen)
    app: Callable[[Scope, Receive, Send], Coroutine[Any, Any, None]] = bare_open if reference else service
    async with service.run():
        for number in range(units):
            socket = Socket(framed=False)  # counts every frame: the "o"
            socket.wanted, socket.arrived = 1, anyio.Event()
            socket.inbox.send_nowait({"type": "websocket.connect"})
            async with anyio.create_task_group() as server:
                server.start_soon(app, websocket_scope(f"/000/s{number}/websocket"), socket.receive, socket.send)
                await socket.arrived.wait()
                socket.inbox.send_nowait({"type": "websocket.disconnect", "code": 1000})
            socket.close()


async def http_request(app: Any, path: str, body: bytes) -> bytes:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    pieces: list[bytes] = []
    asked = False

    async def receive() -> Message:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": body, "more_body": False}
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            pieces.append(message.get("body", b""))

    await app(scope, receive, send)
    return b"".join(pieces)


async def run_xhr(units: int, *, reference: bool) -> None:
    """``units`` round trips: an xhr_send, then an xhr poll that finds the echo waiting."""
    app = bare_app.app if reference else services
    async with services.services["/echo"].run():
        base = f"/echo/000/session{next(_sessions)}"  # a new one each run: the reference keeps them
        if await http_request(app, base + "/xhr", b"") != b"o\n":
            raise RuntimeError("the session did not open")
        for _ in range(units):
            await http_request(app, base + "/xhr_send", f'["{TEXT}"]'.encode())
            await anyio.lowlevel.checkpoint()  # the handler echoes
            await anyio.lowlevel.checkpoint()
            if not (await http_request(app, base + "/xhr", b"")).startswith(b"a"):
                raise RuntimeError("the poll found no message")


WORKLOADS: dict[str, tuple[str, Callable[[int, bool], Awaitable[None]]]] = {
    "broadcast": ("receiver", lambda units, reference: run_broadcast(units, reference=reference)),
    "raw-echo": ("message", lambda units, reference: run_echo(units, raw=True, reference=reference)),
    "ws-echo": ("message", lambda units, reference: run_echo(units, raw=False, reference=reference)),
    "xhr": ("round trip", lambda units, reference: run_xhr(units, reference=reference)),
    "setup": ("session", lambda units, reference: run_setup(units, reference=reference)),
}

#: Units per workload and their size: bursts or broadcasts or round trips, and what one is worth.
UNITS = {
    "broadcast": (20, RECEIVERS),
    "raw-echo": (20, SESSIONS * IN_FLIGHT),
    "ws-echo": (20, SESSIONS * IN_FLIGHT),
    "xhr": (300, 1),
    "setup": (200, 1),
}


def run_workload(name: str, units: int, reference: bool) -> None:
    """Run one workload in this process (the child's side)."""
    _, workload = WORKLOADS[name]
    # uvloop, as the servers of the benchmark run, where it is installed (nox -s bench's venv).
    uvloop = importlib.util.find_spec("uvloop") is not None
    anyio.run(lambda: workload(units, reference), backend_options={"use_uvloop": uvloop})


def instructions(name: str, units: int, reference: bool) -> int:
    """The instructions a child process executes to run ``units`` of a workload."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        "--child",
        name,
        str(units),
        "reference" if reference else "ours",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # the environment is inherited
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{name} failed under valgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_unit(name: str, reference: bool) -> float:
    units, size = UNITS[name]
    once, twice = instructions(name, units, reference), instructions(name, 2 * units, reference)
    return (twice - once) / (units * size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", nargs="*", help=f"only these, of {', '.join(WORKLOADS)} (default: all)")
    parser.add_argument("--child", nargs=3, metavar=("WORKLOAD", "UNITS", "WHO"), help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.child:
        name, units, who = arguments.child
        run_workload(name, int(units), who == "reference")
        return 0
    unknown = [name for name in arguments.workload if name not in WORKLOADS]
    if unknown:
        parser.error(f"no workload {', '.join(unknown)}; there are {', '.join(WORKLOADS)}")
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    print(f"{'workload':<10} {'unit':<11} {'sockjs-asgi':>12} {'bare ASGI':>10} {'ratio':>6}")
    for name in arguments.workload or list(WORKLOADS):
        ours, reference = per_unit(name, False), per_unit(name, True)
        unit, _ = WORKLOADS[name]
        print(f"{name:<10} {unit:<11} {ours:>12,.0f} {reference:>10,.0f} {ours / reference:>6.2f}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

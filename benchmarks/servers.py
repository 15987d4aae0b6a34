"""The servers the suite compares: one row each, so that a variant is one more row.

Every server listens on 127.0.0.1 at the port it is given and serves the same three services
(see :mod:`benchmarks.apps.sockjs_asgi_app`); ``kind`` says whether it speaks SockJS or is the
bare-ASGI reference (raw websocket messages, an ``o`` on accept).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parent.parent
NPM_PREFIX = ROOT / ".cache" / "bench-npm"
NPM_PACKAGES = ("ws@8.18.3", "sockjs@0.3.24")

Kind = Literal["sockjs", "bare"]


#: uvicorn's websocket implementations, as its ``--ws`` names them.  The default is ``auto``,
#: what a user who does not choose gets: uvicorn picks one by what is installed
#: (:func:`resolved_uvicorn_ws` says which).
UVICORN_WS = ("auto", "websockets", "websockets-sansio", "wsproto")
#: The environment variable that chooses one, for every uvicorn server of a run.
UVICORN_WS_VARIABLE = "BENCH_UVICORN_WS"

#: The protocol classes behind ``--ws auto``, by the name ``--ws`` gives each.
_WS_CLASSES = {
    "WebSocketProtocol": "websockets",
    "WebSocketsSansIOProtocol": "websockets-sansio",
    "WSProtocol": "wsproto",
}


def uvicorn_ws() -> str:
    return os.environ.get(UVICORN_WS_VARIABLE, UVICORN_WS[0])


def resolved_uvicorn_ws() -> str:
    """The implementation the uvicorn servers of this run use: ``auto`` resolved as uvicorn
    resolves it (uvicorn 0.54 with websockets installed: ``websockets-sansio``)."""
    chosen = uvicorn_ws()
    if chosen != "auto":
        return chosen
    from uvicorn.protocols.websockets.auto import AutoWebSocketsProtocol

    name = getattr(AutoWebSocketsProtocol, "__name__", None)
    return _WS_CLASSES.get(name or "", f"unknown ({name})")


def uvicorn(app: str) -> Callable[[int], list[str]]:
    """uvicorn with uvloop and httptools, one worker, as recommended for production, and the
    websocket implementation of ``--uvicorn-ws``."""

    def command(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host=127.0.0.1",
            f"--port={port}",
            "--loop=uvloop",
            "--http=httptools",
            f"--ws={uvicorn_ws()}",
            "--log-level=warning",
            "--no-access-log",
        ]

    return command


def python_module(module: str) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        return [sys.executable, "-m", module, str(port)]

    return command


def node(script: str) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        return ["node", str(ROOT / "benchmarks" / "apps" / script), str(port)]

    return command


@dataclass(frozen=True)
class Server:
    """How to start one server under test."""

    name: str
    kind: Kind
    command: Callable[[int], list[str]]
    description: str
    #: Extra environment for the server process (say, a broker's address).
    env: dict[str, str] = field(default_factory=dict)


REFERENCE = Server(
    "bare-asgi",
    "bare",
    uvicorn("benchmarks.apps.bare:app"),
    "bare ASGI apps (websocket and HTTP) doing the same job, on the same uvicorn",
)

SERVERS: tuple[Server, ...] = (
    REFERENCE,
    Server(
        "sockjs-asgi",
        "sockjs",
        uvicorn("benchmarks.apps.sockjs_asgi_app:app"),
        "sockjs-asgi on uvicorn (uvloop, httptools, --uvicorn-ws)",
    ),
    Server(
        "sockjs-node",
        "sockjs",
        node("sockjs_node.js"),
        "sockjs-node (npm sockjs) on node's http server",
    ),
    Server(
        "aiohttp-sockjs",
        "sockjs",
        python_module("benchmarks.apps.aiohttp_sockjs_app"),
        "aiohttp-sockjs (PyPI sockjs) on aiohttp with uvloop",
    ),
)


def install_npm_packages() -> None:
    """The load generator's and sockjs-node's npm packages, into a git-ignored folder."""
    if all((NPM_PREFIX / "node_modules" / name.split("@")[0] / "package.json").exists() for name in NPM_PACKAGES):
        return
    command = ["npm", "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(NPM_PREFIX), *NPM_PACKAGES]
    subprocess.run(command, check=True)

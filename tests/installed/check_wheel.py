"""Checks the installed wheel, not the checkout: run by ``nox -s build`` as ``python -I check_wheel.py``.

It imports sockjs_asgi from site-packages, reads the installed metadata, then serves a handler
from a fresh directory with the installed ``python -m sockjs_asgi`` and speaks SockJS to it
over xhr polling.  Standard library only, so that nothing but the wheel and its dependencies
needs to be installed.  Exits non-zero, saying why, on the first failure.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

TIMEOUT = 30.0
CHECKOUT = Path(__file__).resolve().parents[2]

HANDLER = """
from sockjs_asgi import Connection


async def echo(conn: Connection) -> None:
    async for message in conn:
        await conn.send(message)
"""


def check(what: str, condition: bool) -> None:
    if not condition:
        sys.exit(f"check_wheel: {what}")
    print(f"ok: {what}")


def listening_port(process: subprocess.Popen[bytes], log: Path) -> int:
    """The port the server bound: it is given port 0, and uvicorn logs the one it got."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        found = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        if process.poll() is not None:
            sys.exit(f"check_wheel: the server exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)  # another process: nothing to wait on but its log
    sys.exit(f"check_wheel: the server logged no port within {TIMEOUT} s")


def request(url: str, data: bytes | None = None) -> tuple[int, str]:
    with urllib.request.urlopen(
        urllib.request.Request(url, data=data, method="POST" if data is not None else "GET"), timeout=TIMEOUT
    ) as response:
        status: int = response.status
        return status, response.read().decode()


def wait_until_serving(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"check_wheel: the server exited with {process.returncode}")
        try:
            request(url)
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.05)  # another process: nothing to wait on but its port
    sys.exit(f"check_wheel: nothing served {url} within {TIMEOUT} s")


def main() -> None:
    import sockjs_asgi

    installed = Path(sockjs_asgi.__file__).resolve()
    check(f"imported from site-packages ({installed})", installed.is_relative_to(sysconfig.get_paths()["purelib"]))
    check("not imported from the checkout", not installed.is_relative_to(CHECKOUT / "src"))
    check("py.typed is installed", (installed.parent / "py.typed").is_file())
    check(
        "sockjs_asgi.protocol and .multiplex are installed",
        (installed.parent / "protocol" / "session.py").is_file() and (installed.parent / "multiplex.py").is_file(),
    )

    meta = metadata.metadata("sockjs-asgi")
    check(f"metadata version {meta['Version']} is __version__", meta["Version"] == sockjs_asgi.__version__)
    classifiers = set(meta.get_all("Classifier") or [])
    for version in ("3.10", "3.11", "3.12", "3.13"):
        check(f"classifier for Python {version}", f"Programming Language :: Python :: {version}" in classifiers)
    check("Typing :: Typed", "Typing :: Typed" in classifiers)
    check("project URLs", any(url.startswith("Source, https://") for url in meta.get_all("Project-URL") or []))

    with tempfile.TemporaryDirectory() as directory:
        Path(directory, "installed_echo.py").write_text(HANDLER)
        log = Path(directory, "server.log")
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sockjs_asgi",
                    "installed_echo:echo",
                    "--port",
                    "0",
                    "--prefix",
                    "/echo",
                    "--log-level",
                    "info",
                ],
                cwd=directory,
                env={key: value for key, value in os.environ.items() if key != "PYTHONPATH"},
                stdout=out,
                stderr=out,
            )
        try:
            base = f"http://127.0.0.1:{listening_port(process, log)}/echo"
            wait_until_serving(process, base + "/info")
            check("the greeting", request(base) == (200, "Welcome to SockJS!\n"))
            info = json.loads(request(base + "/info")[1])
            check("/info", info["websocket"] is True)
            session = f"{base}/000/installedcheck"
            check("a session opens", request(session + "/xhr", b"") == (200, "o\n"))
            check("xhr_send", request(session + "/xhr_send", json.dumps(["hello"]).encode())[0] == 204)
            check("the echo comes back", request(session + "/xhr", b"") == (200, 'a["hello"]\n'))
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    print("the installed wheel works")


if __name__ == "__main__":
    main()

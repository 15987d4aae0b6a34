"""Fixtures of the browser tests: Chromium, sockjs-client from npm, and real servers.

Outside CI a missing Chromium or npm skips these tests with a message saying how to install
them; under ``CI=true`` the same fixtures fail instead, so that CI never skips them silently.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from playwright.sync_api import BrowserContext, Playwright, sync_playwright

from .harness import Harness
from .servers import UvicornThread
from .services import TestServices, build_app

REPO_ROOT = Path(__file__).resolve().parents[2]
NPM_PREFIX = REPO_ROOT / ".cache" / "npm"
SOCKJS_CLIENT = "sockjs-client@1.6.1"
SOCKJS_CLIENT_JS = NPM_PREFIX / "node_modules" / "sockjs-client" / "dist" / "sockjs.min.js"
MULTIPLEX_CLIENT = "websocket-multiplex@0.1.0"
MULTIPLEX_CLIENT_JS = NPM_PREFIX / "node_modules" / "websocket-multiplex" / "multiplex_client.js"
NPM_TIMEOUT = 50.0

#: The flags this machine needs: no sandbox as root, and no background connections to hosts
#: the closed network refuses (python.md, "Known to work").
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

HarnessFactory = Callable[[str, str], Harness]


def unavailable(message: str) -> NoReturn:
    """Skip, or fail under CI, where a test can never be skipped (STYLE.md, Tests)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: the browser tests must run, not skip)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    path = shutil.which("chromium")
    if path is None:
        unavailable("Chromium is not installed: `apt-get install chromium` (never `playwright install`)")
    return path


def npm_file(package: str, path: Path) -> Path:
    """``path``, from ``package`` installed from npm into .cache/npm on first use."""
    if not path.is_file():
        npm = shutil.which("npm")
        if npm is None:
            hint = f"`apt-get install npm`, then `npm install --prefix .cache/npm {package}`"
            unavailable(f"npm is not installed: {hint}")
        command = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(NPM_PREFIX), package]
        result = subprocess.run(command, capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False)
        if result.returncode != 0 or not path.is_file():
            pytest.fail(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return path


@pytest.fixture(scope="session")
def sockjs_client_js() -> Path:
    """sockjs-client's browser build, installed from npm into .cache/npm on first use."""
    return npm_file(SOCKJS_CLIENT, SOCKJS_CLIENT_JS)


@pytest.fixture(scope="session")
def multiplex_client_js() -> Path:
    """The websocket-multiplex client library (its browser file), from npm like sockjs-client."""
    return npm_file(MULTIPLEX_CLIENT, MULTIPLEX_CLIENT_JS)


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    with sync_playwright() as instance:
        yield instance


@pytest.fixture(scope="session")
def browser(
    playwright_driver: Playwright, chromium_executable: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrowserContext]:
    """One headless Chromium with a fresh profile for the whole run; tests open their own pages."""
    context = playwright_driver.chromium.launch_persistent_context(
        tmp_path_factory.mktemp("chromium-profile"),
        executable_path=chromium_executable,
        headless=True,
        args=CHROMIUM_ARGS,
        timeout=30_000,
    )
    context.set_default_timeout(15_000)
    yield context
    context.close()


@dataclass
class Site:
    """A running server: its origin and the services it serves."""

    url: str
    services: TestServices


@pytest.fixture(scope="session")
def sockjs_site(sockjs_client_js: Path) -> Iterator[Site]:
    """uvicorn serving the SockJS services (and, for same-origin tests, the page)."""
    app, services = build_app(sockjs_client_js)
    with UvicornThread(app) as server:
        yield Site(server.url, services)


@pytest.fixture(scope="session")
def page_site(sockjs_client_js: Path) -> Iterator[Site]:
    """A second uvicorn, another origin, serving the page for the cross-origin tests."""
    app, services = build_app(sockjs_client_js)
    with UvicornThread(app) as server:
        yield Site(server.url, services)


@pytest.fixture
def open_page(browser: BrowserContext) -> Iterator[HarnessFactory]:
    """Opens harness pages (page origin, service origin); closes them after the test."""
    harnesses: list[Harness] = []

    def factory(page_url: str, service_url: str) -> Harness:
        harness = Harness(browser.new_page(), page_url, service_url)
        harnesses.append(harness)
        return harness

    yield factory
    for harness in harnesses:
        harness.page.close()


def is_hypercorn_close_race(record: logging.LogRecord) -> bool:
    """hypercorn's own race, which no application can prevent: its trio TCPServer sends every
    byte under a lock except the ``send_eof()`` of ``_close()``, so when a client's websocket
    close arrives while the application sends ``websocket.close``, the locked ``send_all`` in
    ``protocol_send`` raises ``trio.BusyResourceError`` (hypercorn 0.18)."""
    text = record.exc_text or ""
    return record.name == "hypercorn.error" and "BusyResourceError" in text and "in protocol_send" in text


@pytest.fixture(autouse=True)
def no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail a test during which a server or the library logged an error."""
    caplog.set_level(logging.WARNING)
    yield
    errors = [
        f"{record.name}: {record.getMessage()}\n{record.exc_text or ''}"
        for when in ("setup", "call")
        for record in caplog.get_records(when)
        if record.levelno >= logging.ERROR and not is_hypercorn_close_race(record)
    ]
    if errors:
        pytest.fail("the server logged errors:\n" + "\n".join(errors), pytrace=False)

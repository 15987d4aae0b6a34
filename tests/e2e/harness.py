"""The Python side of ``static/harness.js``: one browser page running SockJS clients.

Every call into the page has a time limit in the page itself, shorter than pytest's, so a
failure arrives as an assertion that says what happened rather than as a timeout.  The page's
console and uncaught errors are kept for failure messages.
"""

from __future__ import annotations

import base64
import itertools
import uuid
from dataclasses import dataclass
from typing import Any

from playwright.sync_api import ConsoleMessage, Error, Page

__all__ = ["CONNECT_TIMEOUT", "ClientRefused", "Harness", "Opened", "encode"]

#: Milliseconds, in the page: opening a connection, and waiting for messages or a close.
CONNECT_TIMEOUT = 10_000
WAIT_TIMEOUT = 20_000

_tokens = itertools.count(1)


def encode(message: str) -> str:
    """A message as base64 of its UTF-16LE code units, lone surrogates included."""
    return base64.b64encode(message.encode("utf-16-le", "surrogatepass")).decode("ascii")


class ClientRefused(Exception):
    """sockjs-client closed with 2000 "All transports failed" before trying any transport:
    it does not offer the requested transport in this situation."""


@dataclass
class Opened:
    """An open client connection in the page."""

    id: int
    transport: str
    token: str


class Harness:
    """A page with the test harness loaded, connecting to the services at ``service_url``."""

    def __init__(self, page: Page, page_url: str, service_url: str) -> None:
        self.page = page
        self.service_url = service_url
        self.log: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", self._page_error)
        page.goto(page_url + "/")
        page.wait_for_function("() => window.E2E !== undefined && window.SockJS !== undefined")

    def _console(self, message: ConsoleMessage) -> None:
        self.log.append(f"console.{message.type}: {message.text}")

    def _page_error(self, error: Error) -> None:
        self.log.append(f"page error: {error.message}")

    def describe(self) -> str:
        """The page's console, for failure messages."""
        return "\n".join(self.log[-30:]) or "(the page logged nothing)"

    def _call(self, expression: str, *args: Any) -> Any:
        return self.page.evaluate(expression, list(args))

    def try_open(self, service: str, transport: str) -> tuple[dict[str, Any], str]:
        """Try to open ``service`` over ``transport``: the page's report, and the token."""
        token = f"{next(_tokens)}-{uuid.uuid4().hex[:8]}"
        url = f"{self.service_url}{service}?token={token}"
        return dict(self._call("([url, t, ms]) => E2E.open(url, t, ms)", url, transport, CONNECT_TIMEOUT)), token

    def open(self, service: str, transport: str) -> Opened:
        """Open ``service`` (``"/echo"``) over ``transport`` only, with a fresh token."""
        result, token = self.try_open(service, transport)
        url = f"{self.service_url}{service}?token={token}"
        closed = result["closed"]
        if not result["opened"]:
            if closed is not None and closed["code"] == 2000 and closed["reason"] == "All transports failed":
                raise ClientRefused(f"sockjs-client refused {transport!r} for {url}: {closed}")
            state = "timed out" if not result["settled"] else f"closed before opening: {closed}"
            raise AssertionError(f"{transport} to {url} {state}\n{self.describe()}")
        assert result["transport"] == transport, f"asked for {transport!r}, the client chose {result['transport']!r}"
        return Opened(int(result["id"]), transport, token)

    def round_trip(self, opened: Opened, messages: list[str]) -> None:
        """Send ``messages`` and assert that the same come back, in order."""
        encoded = [encode(message) for message in messages]
        report = self._call("([id, m, ms]) => E2E.roundTrip(id, m, ms)", opened.id, encoded, WAIT_TIMEOUT)
        problems: list[str] = report["problems"]
        if problems or not report["complete"]:
            shown = "\n".join(problems[:20])
            raise AssertionError(
                f"{opened.transport}: sent {report['sent']}, got {report['received']} back"
                f" (complete: {report['complete']}, closed: {report['closed']});"
                f" {len(problems)} problem(s):\n{shown}\n{self.describe()}"
            )

    def send(self, opened: Opened, text: str) -> None:
        self._call("([id, text]) => E2E.send(id, text)", opened.id, text)

    def wait_closed(self, opened: Opened) -> tuple[dict[str, Any], list[str]]:
        """The client's close event and every message it received, once it closes."""
        result = self._call("([id, ms]) => E2E.waitClosed(id, ms)", opened.id, WAIT_TIMEOUT)
        closed = result["closed"]
        assert closed is not None, f"{opened.transport}: the client never closed\n{self.describe()}"
        return closed, list(result["messages"])

    def wait_heartbeat(self, opened: Opened, timeout_ms: int) -> dict[str, Any]:
        """Wait for the next heartbeat frame: ``{"heartbeats": n, "messages": n, "closed": ...}``."""
        return dict(self._call("([id, ms]) => E2E.waitHeartbeat(id, ms)", opened.id, timeout_ms))

    def close(self, opened: Opened) -> dict[str, Any]:
        """Close from the client; returns the client's close event."""
        closed = self._call("([id, ms]) => E2E.close(id, ms)", opened.id, WAIT_TIMEOUT)
        assert closed is not None, f"{opened.transport}: close() did not close\n{self.describe()}"
        return dict(closed)

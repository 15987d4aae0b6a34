"""The chat demo (examples/chat) in two browser pages over two different transports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from examples.chat.app import app, chat_service
from playwright.sync_api import BrowserContext, Page, expect

from .servers import UvicornThread

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def chat_url(sockjs_client_js: Path) -> Iterator[str]:
    # sockjs_client_js: the demo serves the npm copy when it is there (else it redirects to a CDN).
    with UvicornThread(app) as server:
        yield server.url


def join(browser: BrowserContext, url: str, name: str, transport: str) -> Page:
    page = browser.new_page()
    page.set_viewport_size({"width": 900, "height": 720})
    page.goto(url + "/")
    page.fill("#name", name)
    page.select_option("#transport", transport)
    page.click("#connect")
    expect(page.locator("#status")).to_have_text(f"Connected via {transport}.")
    return page


def test_chat_reaches_everyone(browser: BrowserContext, chat_url: str, tmp_path: Path) -> None:
    alice = join(browser, chat_url, "alice", "websocket")
    bob = join(browser, chat_url, "bob", "xhr-polling")
    try:
        expect(alice.locator("#log")).to_contain_text("bob joined (xhr)")
        assert len(chat_service.connections) == 2

        text = "Hello from alice 👋 </script> <b>not bold</b>"
        alice.fill("#message", text)
        alice.click("#send")
        for page in (alice, bob):
            expect(page.locator("#log li").last).to_have_text(f"alice:{text}")

        bob.fill("#message", "hi alice")
        bob.press("#message", "Enter")
        expect(alice.locator("#log li").last).to_have_text("bob:hi alice")
        # Text is shown as text: the message's markup made no element.
        assert alice.locator("#log b").count() == 0

        screenshot = tmp_path / "chat.png"
        alice.screenshot(path=str(screenshot), full_page=True)
        assert screenshot.stat().st_size > 0

        bob.click("#disconnect")
        expect(bob.locator("#status")).to_have_text("Closed: 1000 Normal closure.")
        expect(alice.locator("#log li").last).to_have_text("bob left")
    finally:
        alice.close()
        bob.close()

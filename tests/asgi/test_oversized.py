"""Oversized send bodies (issue #7, item 3): the client must be able to read the 413.

A client that writes its whole body before reading (most do) would write into a connection
the server closes under it once the application has answered, and the reset can destroy the
413.  So an oversized body is read to its end and thrown away before the 413, up to
``DRAIN_LIMIT``; past it, or when the declared Content-Length is past it, the 413 says
``Connection: close``.  The real-server side is in tests/integration/test_real_edges.py.
"""

from __future__ import annotations

import anyio
import pytest

from sockjs_asgi import SockJSApp, _http
from sockjs_asgi.testing import TestClient

from .support import TIMEOUT, Message, Recorder, Scope, http_scope, session_url

pytestmark = pytest.mark.anyio

LIMIT = 64
CHUNK = b"x" * 1000


class Upload:
    """One send request whose body comes in ``chunks`` messages of CHUNK; records how many the
    application read and what it answered."""

    def __init__(self, app: SockJSApp, path: str, chunks: int, *, content_length: int | None = None) -> None:
        self.app = app
        self.chunks = chunks
        self.read = 0
        self.sent: list[Message] = []
        headers = [] if content_length is None else [(b"content-length", str(content_length).encode())]
        self.scope: Scope = http_scope("POST", path, headers=headers)

    async def receive(self) -> Message:
        if self.read == self.chunks:
            return {"type": "http.disconnect"}
        self.read += 1
        return {"type": "http.request", "body": CHUNK, "more_body": self.read < self.chunks}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    async def run(self) -> tuple[int, dict[bytes, bytes], bytes]:
        with anyio.fail_after(TIMEOUT):
            await self.app(self.scope, self.receive, self.send)
        start, body = self.sent
        assert body["more_body"] is False
        return start["status"], dict(start["headers"]), body["body"]


@pytest.mark.parametrize("transport", ["xhr_send", "jsonp_send"])
async def test_an_oversized_body_is_read_to_its_end_before_the_413(transport: str) -> None:
    app = SockJSApp(Recorder(), max_request_size=LIMIT)
    upload = Upload(app, f"{session_url()}/{transport}", chunks=500)
    status, headers, body = await upload.run()
    assert (status, body) == (413, b"Payload too large.")
    assert upload.read == 500  # all of it, so the client is never cut off while it writes
    assert b"connection" not in headers  # the connection stays usable


async def test_draining_stops_at_the_drain_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_http, "DRAIN_LIMIT", 100 * len(CHUNK))
    app = SockJSApp(Recorder(), max_request_size=LIMIT)
    upload = Upload(app, f"{session_url()}/xhr_send", chunks=1000)
    status, headers, _ = await upload.run()
    assert status == 413
    assert 100 <= upload.read <= 101
    assert headers[b"connection"] == b"close"


async def test_a_body_declared_past_the_drain_limit_is_refused_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_http, "DRAIN_LIMIT", 100 * len(CHUNK))
    app = SockJSApp(Recorder(), max_request_size=LIMIT)
    upload = Upload(app, f"{session_url()}/xhr_send", chunks=1000, content_length=1000 * len(CHUNK))
    status, headers, _ = await upload.run()
    assert (status, upload.read) == (413, 0)
    assert headers[b"connection"] == b"close"


async def test_a_body_declared_within_the_drain_limit_is_drained() -> None:
    app = SockJSApp(Recorder(), max_request_size=LIMIT)
    upload = Upload(app, f"{session_url()}/xhr_send", chunks=50, content_length=50 * len(CHUNK))
    status, headers, _ = await upload.run()
    assert (status, upload.read) == (413, 50)
    assert b"connection" not in headers


async def test_the_session_survives_an_oversized_send() -> None:
    recorder = Recorder()
    app = SockJSApp(recorder, max_request_size=LIMIT)
    async with TestClient(app) as client:
        url = session_url()
        assert (await client.request("POST", url + "/xhr")).body == b"o\n"
        status, _, _ = await Upload(app, url + "/xhr_send", chunks=20).run()
        assert status == 413
        assert (await client.request("POST", url + "/xhr_send", body=b'["a"]')).status == 204
        assert await recorder.wait_for(1) == ["a"]

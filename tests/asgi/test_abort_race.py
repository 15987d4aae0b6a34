"""A receiver that aborts, and the next receiver that arrives at once (issue #7, item 1).

sockjs-protocol HandlingClose.test_abort_xhr_polling and test_abort_xhr_streaming close the
waiting request and poll again immediately.  Once the application has been told
``http.disconnect`` for the waiting request, that request must no longer count as "another
connection still open": the next receiver gets the session (or its 1002 close frame, as the
abort closed it), never ``c[2010,...]``.  These tests repeat that exchange with a varying number
of scheduler steps between the disconnect and the next request, on asyncio and trio.
"""

from __future__ import annotations

import json
import random

import anyio
import anyio.lowlevel
import pytest

from sockjs_asgi import SockJSApp
from sockjs_asgi.testing import TestClient

from .support import ANOTHER_CONNECTION, INTERRUPTED, TIMEOUT, ManualRequest, Message, Recorder, session_url

pytestmark = pytest.mark.anyio

ROUNDS = 60
#: The receiving transports: the one that aborts may stream; the next one polls, so that its
#: answer is complete when the session or its close frame is written.
RECEIVERS = ("xhr", "xhr_streaming", "eventsource", "htmlfile?c=cb", "jsonp?c=cb")
POLLERS = ("xhr", "jsonp?c=cb")


class AbortedRequest(ManualRequest):
    """A request whose client goes away; records the moment the app was told so."""

    def __init__(self, app: SockJSApp, method: str, path: str) -> None:
        super().__init__(app, method, path)
        self.disconnect_delivered = anyio.Event()

    async def receive(self) -> Message:
        message = await super().receive()
        if message["type"] == "http.disconnect":
            self.disconnect_delivered.set()
        return message


def frame_of(transport: str, body: str) -> str:
    """The one frame of a polling answer (jsonp wraps it in a JSON string)."""
    if transport.startswith("jsonp"):
        prefix, _, rest = body.partition("(")
        assert prefix == "/**/cb" and rest.endswith(");\r\n"), body
        frame = json.loads(rest[: -len(");\r\n")])
        assert isinstance(frame, str)
        return frame
    return body.removesuffix("\n")


def method_of(transport: str) -> str:
    return "POST" if transport.startswith("xhr") else "GET"


async def test_next_receiver_after_abort_is_never_refused() -> None:
    rng = random.Random(7)
    app = SockJSApp(Recorder())
    refused: list[tuple[int, str, str, int]] = []
    with anyio.fail_after(TIMEOUT * 3):
        async with TestClient(app) as client, anyio.create_task_group() as task_group:
            for round_number in range(ROUNDS):
                url = session_url()
                first, next_ = rng.choice(RECEIVERS), rng.choice(POLLERS)
                assert (await client.request("POST", f"{url}/xhr")).text == "o\n"
                waiting = AbortedRequest(app, method_of(first), f"{url}/{first}")
                task_group.start_soon(waiting.run)
                await anyio.wait_all_tasks_blocked()  # the request is attached and waiting
                waiting.abort()
                await waiting.disconnect_delivered.wait()
                steps = rng.randrange(4)
                for _ in range(steps):
                    await anyio.lowlevel.checkpoint()
                reply = await client.request(method_of(next_), f"{url}/{next_}")
                frame = frame_of(next_, reply.text)
                if frame == ANOTHER_CONNECTION:
                    refused.append((round_number, first, next_, steps))
                else:
                    assert frame in ("o", INTERRUPTED)
                await waiting.returned.wait()
    assert refused == []

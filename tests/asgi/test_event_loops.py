"""One SockJSApp may serve one event loop after another (a test suite running the same
module-level app on asyncio and on trio does): nothing bound to a loop outlives it."""

from __future__ import annotations

import anyio
import pytest

from sockjs_asgi import SockJSApp
from sockjs_asgi.testing import TestClient

from .support import TIMEOUT, echo, session_url


@pytest.mark.parametrize("transport", ["websocket", "xhr", "xhr_streaming"])
def test_one_app_serves_one_event_loop_after_another(transport: str) -> None:
    app = SockJSApp(echo)
    url = session_url()

    async def use() -> None:
        with anyio.fail_after(TIMEOUT):
            async with TestClient(app) as client:
                async with client.connect(transport=transport) as conn:
                    await conn.send("hi")
                    assert await conn.receive() == "hi"
                # Left open at shutdown, under the same id every time.
                assert (await client.request("POST", url + "/xhr")).body == b"o\n"
            assert len(app.registry) == 0

    for backend in ("asyncio", "trio", "asyncio"):
        anyio.run(use, backend=backend)

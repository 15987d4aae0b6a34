"""In-process micro-benchmarks of the hot paths (``python -m benchmarks.micro``), as ratios to a reference.

Absolute numbers depend on the machine; the ratios say how our code compares with the
simplest thing that could do the same job:

* ``encode``: ``encode_string`` (the protocol's escape set, UTF-8 kept) against
  ``json.dumps(ensure_ascii=True)``, which escapes everything outside ASCII.
* ``frame``: packing 100 queued messages into one ``a[...]`` frame against ``json.dumps`` of
  the list.
* ``poll``: an in-process xhr send + poll round trip through the whole ASGI app against a
  bare ASGI app that answers the same two requests with fixed bytes.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable

import anyio

from sockjs_asgi import Connection, SockJSApp
from sockjs_asgi._types import Receive, Scope, Send
from sockjs_asgi.protocol import frames
from sockjs_asgi.protocol.escaping import encode_string
from sockjs_asgi.testing import TestClient

TEXTS = ["hello world", "Grüße aus Köln — ünïcödé", "emoji 😀 and \u2028 separators", '{"json": [1, 2, 3]}'] * 25


def best_of(function: Callable[[], object], *, repeat: int = 5, number: int = 200) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            function()
        times.append((time.perf_counter() - start) / number)
    return min(times)


def encode_ours() -> None:
    for text in TEXTS:
        encode_string(text)


def encode_reference() -> None:
    for text in TEXTS:
        json.dumps(text)


ENCODED = [encode_string(text) for text in TEXTS]


def frame_ours() -> None:
    frames.messages(ENCODED)


def frame_reference() -> None:
    "a" + json.dumps(TEXTS, separators=(",", ":"))


async def echo(conn: Connection) -> None:
    async for message in conn:
        await conn.send(message)


async def fixed(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    status, body = (204, b"") if scope["path"].endswith("xhr_send") else (200, b'a["x"]\n')
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def poll_round_trips(app: object, count: int) -> float:
    async with TestClient(app, lifespan=False) as client:  # type: ignore[arg-type]
        await client.request("POST", "/000/bench/xhr")
        start = time.perf_counter()
        for _ in range(count):
            await client.request("POST", "/000/bench/xhr_send", body=b'["x"]')
            await client.request("POST", "/000/bench/xhr")
        return (time.perf_counter() - start) / count


def main() -> None:
    results = {
        "encode": (best_of(encode_ours), best_of(encode_reference)),
        "frame": (best_of(frame_ours, number=2000), best_of(frame_reference, number=2000)),
    }
    ours = [anyio.run(poll_round_trips, SockJSApp(echo), 300) for _ in range(3)]
    reference = [anyio.run(poll_round_trips, fixed, 300) for _ in range(3)]
    results["poll"] = (statistics.median(ours), statistics.median(reference))
    print(f"{'benchmark':<10} {'ours (us)':>12} {'reference (us)':>16} {'ratio':>8}")
    for name, (mine, ref) in results.items():
        print(f"{name:<10} {mine * 1e6:>12.2f} {ref * 1e6:>16.2f} {mine / ref:>8.2f}")


if __name__ == "__main__":
    main()

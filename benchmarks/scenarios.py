"""The scenarios and the figures reported from them: tables, so that a scenario is one more row.

A :class:`Scenario` says what the load generator (``loadgen.js``) does, at full size and at the
smoke size CI runs, and how its output becomes figures; a :class:`Figure` is one row of the
report, a figure of one scenario, reported for each server as a ratio to the reference.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .servers import Kind

#: (warm-up, measured) seconds of every timed scenario, at full and at smoke size.
TIMING = {False: {"warmup": 1.0, "duration": 5.0}, True: {"warmup": 0.2, "duration": 0.6}}


@dataclass(frozen=True)
class Snapshot:
    """A process at one mark of the load generator."""

    time: float
    #: CPU time of all its threads.
    cpu_seconds: float
    #: How long its main thread (the event loop) has been busy: running, or runnable and waiting
    #: for its core while another process had it.  Near 100% of a window, the process was the
    #: bottleneck, whether it got the core or not.
    busy_seconds: float
    rss_kib: float


def share(marks: Mapping[str, Snapshot], field: str) -> float | None:
    """How much of the measured window went to ``field`` (cpu or busy), in cores."""
    start, end = marks.get("start"), marks.get("end")
    if start is None or end is None or end.time <= start.time:
        return None
    used: float = getattr(end, field) - getattr(start, field)
    return used / (end.time - start.time)


@dataclass(frozen=True)
class Run:
    """What one load-generator run produced: its result line and both processes at each mark."""

    result: Mapping[str, Any]
    marks: Mapping[str, Snapshot]
    loadgen_marks: Mapping[str, Snapshot]


Metrics = dict[str, float]


def per_cpu(run: Run, metrics: Metrics) -> Metrics:
    """Add the rate per second of server CPU: what a core could do, however busy the machine."""
    cpu = share(run.marks, "cpu_seconds")
    if "rate" in metrics and cpu:
        metrics["rate_per_cpu"] = metrics["rate"] / cpu
    return metrics


def rate(run: Run) -> Metrics:
    return per_cpu(run, {"rate": run.result["count"] / run.result["seconds"]})


def broadcast_metrics(run: Run) -> Metrics:
    metrics = per_cpu(run, {"rate": run.result["deliveries"] / run.result["seconds"]})
    latencies = sorted(run.result["latencies"])
    if latencies:
        metrics["p99"] = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
        metrics["p50"] = statistics.median(latencies)
    return metrics


def rss_per_session(run: Run) -> Metrics:
    grown = run.marks["loaded"].rss_kib - run.marks["base"].rss_kib
    return {"rss": grown / run.result["count"]}


def websocket(kind: Kind, service: str, *, raw: bool = False) -> dict[str, Any]:
    """Where a websocket goes and what it speaks: SockJS framing, or raw messages."""
    if kind == "bare":
        return {"path": f"/{service}/000/{{session}}/websocket", "framing": "raw", "hello": True}
    if raw:
        return {"path": f"/{service}/websocket", "framing": "raw", "hello": False}
    return {"path": f"/{service}/000/{{session}}/websocket", "framing": "sockjs", "hello": True}


@dataclass(frozen=True)
class Scenario:
    """One load-generator run per server and round."""

    name: str
    #: What the scenario stresses (for docs/benchmarks.md).
    stresses: str
    #: The load generator's configuration for a server kind; the bool is "smoke size".
    config: Callable[[Kind, bool], dict[str, Any]]
    metrics: Callable[[Run], Metrics]
    #: The load generator is stopped after this many seconds.
    timeout: float = 120.0
    #: Each server runs beside the reference, at the same time (``harness.run_pair``), unless
    #: the run is ``--sequential``.  Not for memory, which a neighbour cannot skew, nor for the
    #: broadcasts: a broadcast's latency is their figure too, and sharing the core would be
    #: part of it; and two load generators receiving every delivery saturate their core.
    paired: bool = True


@dataclass(frozen=True)
class Figure:
    """One row of the report."""

    scenario: str
    metric: str
    label: str
    unit: str
    higher_is_better: bool = True
    #: Show the absolute value of every server, not only the reference's.
    absolute: bool = False
    #: What sockjs-asgi (:data:`TARGETED`) should reach, from issue #8.
    target: Target | None = None


@dataclass(frozen=True)
class Target:
    """A bound on a figure's ratio to the reference, or on the figure itself."""

    bound: float
    on_ratio: bool = True

    def is_met(self, figure: Figure, ratio: float | None, value: float | None) -> bool | None:
        """Whether it is met; ``None`` without the figure."""
        measured = ratio if self.on_ratio else value
        if measured is None:
            return None
        return measured >= self.bound if figure.higher_is_better else measured <= self.bound

    def text(self, figure: Figure) -> str:
        sign = ">=" if figure.higher_is_better else "<="
        return f"{sign} {self.bound:g}x" if self.on_ratio else f"{sign} {self.bound:g} {figure.unit}"


def sized(full: dict[str, Any], smoke: dict[str, Any]) -> Callable[[bool], dict[str, Any]]:
    """Parameters at full or smoke size, with the timing (which ``full`` may override)."""
    return lambda is_smoke: {**TIMING[is_smoke], **(smoke if is_smoke else full)}


def echo_config(raw: bool) -> Callable[[Kind, bool], dict[str, Any]]:
    size = sized({"sessions": 100, "inflight": 10}, {"sessions": 10, "inflight": 10})
    return lambda kind, smoke: {"mode": "echo", **websocket(kind, "echo", raw=raw), **size(smoke)}


def broadcast_config(sessions: int, duration: float) -> Callable[[Kind, bool], dict[str, Any]]:
    # Long enough for a p99 over more than a handful of messages when a broadcast takes a second.
    size = sized({"sessions": sessions, "duration": duration}, {"sessions": sessions // 20})
    # The receivers are the load generator's minimal websocket client ("light"): a delivery
    # costs it about a third less CPU than through `ws` (see docs/benchmarks.md).
    return lambda kind, smoke: {"mode": "broadcast", "light": True, **websocket(kind, "broadcast"), **size(smoke)}


def idle_config(raw: bool) -> Callable[[Kind, bool], dict[str, Any]]:
    # Opened with the minimal client too, which spends half of `ws`'s CPU on a handshake and
    # leaves the server the bottleneck while the sessions open.
    return lambda kind, smoke: {
        "mode": "idle",
        "light": True,
        **websocket(kind, "echo", raw=raw),
        **({"warm": 20, "sessions": 100} if smoke else {"warm": 200, "sessions": 2000}),
    }


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "ws-echo",
        "the websocket transport's per-message path both ways: decoding a client frame, the "
        "handler's receive and send, encoding and packing what is pending into one frame",
        echo_config(raw=False),
        rate,
    ),
    Scenario(
        "ws-raw",
        "the raw /websocket endpoint: the same echo without SockJS framing, so the cost of the "
        "connection object and its queues alone",
        echo_config(raw=True),
        rate,
    ),
    Scenario(
        "xhr-polling",
        "HTTP request handling: routing, session lookup, xhr_send body decoding, waking a "
        "waiting poll, one response per message",
        lambda kind, smoke: {"mode": "polling", "path": "/echo", **sized({"clients": 100}, {"clients": 10})(smoke)},
        rate,
    ),
    Scenario(
        "xhr-streaming",
        "the streaming writer: many small messages to 100 open responses, the response limit "
        "and the reconnections it causes",
        lambda kind, smoke: {
            "mode": "streaming",
            "path": "/flood",
            "batch": 50,
            **sized({"receivers": 100}, {"receivers": 10})(smoke),
        },
        rate,
    ),
    Scenario(
        "broadcast-1000",
        "fan-out: one message encoded once and queued to 1,000 websocket sessions, the wake-ups and writes that follow",
        broadcast_config(1000, 5.0),
        broadcast_metrics,
        paired=False,
    ),
    Scenario(
        "broadcast-5000",
        "the same fan-out to 5,000 sessions, where per-receiver allocations and garbage collection dominate",
        broadcast_config(5000, 10.0),
        broadcast_metrics,
        paired=False,
    ),
    Scenario(
        "idle",
        "memory held by an open websocket session doing nothing: objects, tasks and buffers per session",
        idle_config(raw=False),
        rss_per_session,
        paired=False,
    ),
    Scenario(
        "idle-raw",
        "the same for raw /websocket connections, which have no SockJS session: the connection "
        "object, and whatever else each holds",
        idle_config(raw=True),
        rss_per_session,
        paired=False,
    ),
    Scenario(
        "setup",
        "session setup and teardown: the websocket handshake, creating and registering a "
        "session, starting and ending its handler",
        lambda kind, smoke: {
            "mode": "setup",
            **websocket(kind, "echo"),
            **sized({"concurrency": 50}, {"concurrency": 5})(smoke),
        },
        rate,
    ),
)

#: The server the targets are for.
TARGETED = "sockjs-asgi"

FIGURES: tuple[Figure, ...] = (
    Figure(
        "ws-echo",
        "rate",
        "ws-echo: 100 sessions x 10 in flight, 32-byte messages",
        "msg/s",
        target=Target(1.5),
    ),
    Figure("ws-raw", "rate", "raw /websocket echo, same load", "msg/s", target=Target(0.95)),
    Figure(
        "xhr-polling",
        "rate",
        "xhr-polling: 100 clients, xhr_send + poll per round trip",
        "round trips/s",
        target=Target(0.9),
    ),
    Figure(
        "xhr-streaming",
        "rate",
        "xhr-streaming: 100 receivers flooded with 32-byte messages",
        "msg/s",
        target=Target(1.8),
    ),
    Figure(
        "broadcast-1000",
        "rate",
        "broadcast to 1,000 websocket sessions, one message at a time",
        "deliveries/s",
        target=Target(0.95),
    ),
    Figure("broadcast-5000", "rate", "broadcast to 5,000 websocket sessions", "deliveries/s", target=Target(0.95)),
    Figure(
        "idle",
        "rss",
        "idle websocket sessions: RSS per session",
        "KiB",
        higher_is_better=False,
        absolute=True,
        target=Target(21, on_ratio=False),
    ),
    Figure(
        "idle-raw",
        "rss",
        "idle raw /websocket connections: RSS per connection",
        "KiB",
        higher_is_better=False,
        absolute=True,
    ),
    Figure("setup", "rate", "session setup: connect, o, close", "sessions/s", target=Target(0.95)),
    Figure(
        "broadcast-5000",
        "p99",
        "broadcast to 5,000: time until all have it, p99",
        "ms",
        higher_is_better=False,
        absolute=True,
        target=Target(1.2),
    ),
)

#: The same work per second of server CPU: on a shared machine, where a server does not get its
#: whole core, this is the steadier measure of what one core can do.
EFFICIENCY: tuple[Figure, ...] = tuple(
    Figure(f.scenario, "rate_per_cpu", f.label, f"{f.unit} per CPU-s") for f in FIGURES if f.metric == "rate"
)

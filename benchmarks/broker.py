"""``python -m benchmarks.broker`` (``nox -s bench-broker``): what broadcasting through Redis
costs, and what a second process buys.

The broadcast scenario of the main suite (one message at a time from one session; the next goes
out once every session has it; deliveries per second), against sockjs-asgi on uvicorn in three
setups, alternating in each round, each on fresh processes:

* ``memory-1``: one process, the default in-memory broker;
* ``redis-1``: one process, broadcasting through a :class:`~sockjs_asgi.RedisBroker` (it still
  delivers locally; it also publishes each broadcast and gets it back from Redis);
* ``redis-2``: two processes on one Redis, each holding half the sessions (the load generator
  opens them on each process in turn); the sender's process delivers to its half, the other
  process to the other half.

With two cores, the one-process setups pin the server and the load generator to a core each,
as the main suite does. ``redis-2`` has three busy processes for two cores: the servers get a
core each and the load generator (and Redis) run where they can, so its figure is what this
machine can show, an underestimate of two processes with a core each. Each run also reports the
servers' CPU time per delivery, which does not depend on how the cores were shared.

Needs Debian's ``redis-server`` and node (``nox -s bench`` installs the load generator's npm
packages).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio
from examples.cluster.launch import Redis

from sockjs_asgi import RedisBroker, SockJSApp

from .apps.sockjs_asgi_app import shout
from .harness import LOADGEN, Cores, free_port, node_env, snapshot, stop, wait_for_port
from .scenarios import TIMING, Run, Snapshot, broadcast_metrics
from .servers import ROOT, install_npm_packages, uvicorn

SETUPS = {"memory-1": (1, False), "redis-1": (1, True), "redis-2": (2, True)}
APP = "benchmarks.apps.sockjs_asgi_app:app"


@dataclass
class Result:
    setup: str
    deliveries_per_second: float
    p50_ms: float
    #: Server CPU time per broadcast in the measured window, for each server process.
    cpu_ms_per_broadcast: list[float]
    loadgen_cpu: float

    @property
    def capacity(self) -> float:
        """Broadcasts per second if each server process had a core of its own: the busiest
        process bounds a closed loop."""
        return 1000 / max(self.cpu_ms_per_broadcast)


@contextmanager
def servers(count: int, redis_url: str | None, cores: Cores, log: IO[bytes]) -> Iterator[list[tuple[int, int]]]:
    """``count`` uvicorn processes of the benchmark app: their (port, pid)."""
    env = {**node_env(), **({"BENCH_REDIS_URL": redis_url} if redis_url else {})}
    pins = [cores.server, cores.loadgen] if count == 2 else [cores.server]
    with ExitStack() as stack:
        running = []
        for index in range(count):
            port = free_port()
            process = subprocess.Popen(
                cores.pin(pins[index], uvicorn(APP)(port)), cwd=ROOT, env=env, stdout=log, stderr=log
            )
            stack.callback(stop, process)
            wait_for_port(port, process, timeout=30)
            running.append((port, process.pid))
        yield running


def loadgen(
    config: dict[str, Any], pids: list[int], core: int | None, log: IO[bytes]
) -> tuple[dict[str, Any], dict[str, list[Snapshot]]]:
    """The load generator to its end, with every server process's CPU at each of its marks."""
    command = ["node", str(LOADGEN), json.dumps(config)]
    if core is not None:
        command = ["taskset", "-c", str(core), *command]
    process = subprocess.Popen(command, cwd=ROOT, env=node_env(), stdout=subprocess.PIPE, stderr=log, text=True)
    assert process.stdout is not None
    marks: dict[str, list[Snapshot]] = {}
    result: dict[str, Any] | None = None
    try:
        for line in process.stdout:
            message = json.loads(line)
            if "mark" in message:
                marks[message["mark"]] = [snapshot(pid) for pid in pids]
            elif "result" in message:
                result = message["result"]
        process.wait(120)
    finally:
        stop(process)
    if result is None:
        raise RuntimeError(f"the load generator exited with {process.returncode} and no result")
    return result, marks


def run(setup: str, sessions: int, duration: float, redis_url: str, cores: Cores, log: IO[bytes]) -> Result:
    count, through_redis = SETUPS[setup]
    with servers(count, redis_url if through_redis else None, cores, log) as running:
        ports = [port for port, _pid in running]
        config = {
            "mode": "broadcast",
            "path": "/broadcast/000/{session}/websocket",
            "framing": "sockjs",
            "hello": True,
            "sessions": sessions,
            "port": ports[0],
            "ports": ports,
            **TIMING[False],
            "duration": duration,
        }
        # Two processes share the cores with the load generator: let the scheduler place it.
        result, marks = loadgen(config, [pid for _port, pid in running], cores.loadgen if count == 1 else None, log)
    metrics = broadcast_metrics(Run(result, {}, {}))
    broadcasts = result["count"]
    cpu = [
        1000 * (end.cpu_seconds - start.cpu_seconds) / broadcasts
        for start, end in zip(marks["start"], marks["end"], strict=True)
    ]
    return Result(setup, metrics["rate"], metrics.get("p50", float("nan")), cpu, float(result["cpu"]))


async def publishing_cost(redis_url: str | None, count: int) -> float:
    """CPU microseconds this process spends per broadcast on the broker alone (no session):
    encoding, publishing and getting its own publication back, which it skips."""
    app = SockJSApp(shout, broker=RedisBroker(redis_url, channel="bench-cost") if redis_url else None)
    async with app.run():
        with anyio.fail_after(60):
            start = time.process_time()
            for _ in range(count):
                await app.broadcast("0123456789abcdefghijklmnopqrstuv")
            while redis_url and app.metrics.broker_received < count:  # noqa: ASYNC110
                await anyio.sleep(0.001)  # the broker's own task: poll its counter
            used = time.process_time() - start
    return 1e6 * used / count


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.broker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=TIMING[False]["duration"], help="measured seconds per run")
    arguments = parser.parse_args()
    install_npm_packages()
    cores = Cores.pick()
    results: dict[str, list[Result]] = {setup: [] for setup in SETUPS}
    with (
        tempfile.TemporaryDirectory(prefix="bench-broker-") as workdir,
        (Path(workdir) / "bench.log").open("wb") as log,
    ):
        redis = Redis("redis", free_port(), Path(workdir) / "redis.log")
        redis.start()
        try:
            costs = {
                name: statistics.median(anyio.run(publishing_cost, url, 5000) for _ in range(3))
                for name, url in (("memory", None), ("redis", redis.url))
            }
            print(json.dumps({"cpu_us_per_broadcast_without_sessions": costs}), flush=True)
            for round_ in range(arguments.rounds):
                order = list(SETUPS) if round_ % 2 == 0 else list(reversed(SETUPS))
                for setup in order:
                    result = run(setup, arguments.sessions, arguments.duration, redis.url, cores, log)
                    results[setup].append(result)
                    print(json.dumps(result.__dict__), flush=True)
        finally:
            redis.stop()
    median = {setup: statistics.median(r.deliveries_per_second for r in runs) for setup, runs in results.items()}
    capacity = {setup: statistics.median(r.capacity for r in runs) for setup, runs in results.items()}
    print(
        f"\n{arguments.sessions} websocket sessions, {arguments.rounds} rounds, load average {os.getloadavg()[0]:.1f}"
    )
    columns = ["setup", "deliveries/s (median)", "p50 per broadcast", "server CPU per broadcast", "capacity"]
    print("| " + " | ".join([*columns, "load generator CPU"]) + " |")
    print("|---|---|---|---|---|---|")
    for setup, runs in results.items():
        cpu = " + ".join(
            f"{statistics.median(r.cpu_ms_per_broadcast[i] for r in runs):.2f}" for i in range(SETUPS[setup][0])
        )
        print(
            f"| {setup} | {median[setup]:,.0f} | {statistics.median(r.p50_ms for r in runs):.1f} ms | {cpu} ms "
            f"| {capacity[setup] * arguments.sessions:,.0f} deliveries/s "
            f"| {statistics.median(r.loadgen_cpu for r in runs):.0%} |"
        )
    print(f"\nbroker alone, CPU per broadcast: memory {costs['memory']:.1f} µs, redis {costs['redis']:.1f} µs")
    for label, value in (
        ("redis-1 / memory-1, deliveries/s", median["redis-1"] / median["memory-1"]),
        ("redis-1 / memory-1, capacity", capacity["redis-1"] / capacity["memory-1"]),
        ("redis-2 / redis-1, deliveries/s", median["redis-2"] / median["redis-1"]),
        ("redis-2 / memory-1, deliveries/s", median["redis-2"] / median["memory-1"]),
        ("redis-2 / memory-1, capacity", capacity["redis-2"] / capacity["memory-1"]),
    ):
        print(f"{label}: {value:.2f}")


if __name__ == "__main__":
    main()

"""``python -m benchmarks.broker`` (``nox -s bench-broker``): what broadcasting through Redis
costs, and what a second process buys.

Two scenarios of websocket sessions of the ``/broadcast`` service (every message a session sends
goes to every session), each against sockjs-asgi on uvicorn in three setups, alternating in each
round, each on fresh processes:

* ``latency``: the main suite's broadcast scenario. One session sends; the next message goes
  once every session has the last one. One broadcast is in flight, so the rate is bounded by the
  time one broadcast takes to reach everyone.
* ``throughput``: ``--senders`` sessions (spread over the processes) each keep ``--inflight``
  broadcasts on their way, so that the servers, not the round trips, bound the rate.

The setups:

* ``memory-1``: one process, the default in-memory broker;
* ``redis-1``: one process, broadcasting through a :class:`~sockjs_asgi.RedisBroker` (it still
  delivers locally; it also publishes each broadcast and gets it back from Redis);
* ``redis-2``: two processes on one Redis, each holding half the sessions (the load generator
  opens them on each process in turn); a broadcast's sender's process delivers to its half, the
  other process gets it from Redis and delivers to the other half.

With two cores, the one-process setups pin the server and the load generator to a core each,
as the main suite does. ``redis-2`` has three busy processes (and Redis) for two cores: the
servers are pinned to a core each and the load generator and Redis run where they can, so its
wall-clock figure is what this machine can show.  Each run therefore also reads, from ``/proc``,
the CPU time over the measured window of every server process, of the load generator and of
redis-server, and reports:

* *server CPU per delivery* (all server processes together);
* *capacity*: deliveries per second if each server process had a core of its own (the busiest
  process bounds the rate);
* *2-core bound*: the deliveries per second two cores allow for everything measured (servers,
  load generator, Redis) at the CPU per delivery measured, and no server process above one
  core: the most this machine could show (the kernel's network processing is charged to the
  processes it runs in, so it is counted);
* *machine CPU*: everything the machine did over the window, in cores: where it is above what
  the processes above add up to, other work shared the machine.

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
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio
from examples.cluster.launch import Redis, start_on_a_free_port

from sockjs_asgi import RedisBroker, SockJSApp

from .apps.sockjs_asgi_app import shout
from .harness import CLOCK_TICKS, LOADGEN, Cores, node_env, snapshot, start_server, stop
from .scenarios import TIMING, Run, Snapshot, broadcast_metrics
from .servers import ROOT, install_npm_packages, uvicorn

SETUPS = {"memory-1": (1, False), "redis-1": (1, True), "redis-2": (2, True)}
APP = "benchmarks.apps.sockjs_asgi_app:app"


@dataclass
class Result:
    scenario: str
    setup: str
    deliveries: int
    seconds: float
    p50_ms: float
    #: Server CPU seconds over the window, for each server process.
    server_cpu: list[float]
    #: The load generator's CPU, in cores (its own measure), and redis-server's CPU seconds.
    loadgen_cpu: float
    redis_cpu: float
    #: Share of the window each server process's event loop was running or waiting for a core:
    #: near 1 while its CPU share is well below, it was kept off its core by other work.
    server_busy: list[float]
    #: The whole machine's CPU over the window, in cores: everything, the kernel's network
    #: processing and any other work on the machine included.
    machine_cpu: float

    @property
    def rate(self) -> float:
        return self.deliveries / self.seconds

    def per_delivery_us(self, cpu_seconds: float) -> float:
        return 1e6 * cpu_seconds / self.deliveries

    @property
    def server_us(self) -> list[float]:
        """Server CPU per delivery, for each process (each over all the deliveries)."""
        return [self.per_delivery_us(cpu) for cpu in self.server_cpu]

    @property
    def loadgen_us(self) -> float:
        return self.per_delivery_us(self.loadgen_cpu * self.seconds)

    @property
    def redis_us(self) -> float:
        return self.per_delivery_us(self.redis_cpu)

    @property
    def capacity(self) -> float:
        """Deliveries per second if each server process had a core of its own: the busiest
        process bounds the rate."""
        return self.deliveries / max(self.server_cpu)

    @property
    def two_core_bound(self) -> float:
        """Deliveries per second that two cores allow for the servers, the load generator and
        Redis at the CPU per delivery measured (and no server process more than one core)."""
        return min(self.capacity, 2e6 / (sum(self.server_us) + self.loadgen_us + self.redis_us))

    def as_json(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "rate": self.rate,
            "server_us_per_delivery": self.server_us,
            "loadgen_us_per_delivery": self.loadgen_us,
            "redis_us_per_delivery": self.redis_us,
            "capacity": self.capacity,
            "two_core_bound": self.two_core_bound,
        }


def pinned(cores: Cores, core: int | None) -> Callable[[int], list[str]]:
    """The benchmark app's uvicorn command line on ``core``, for a port."""
    return lambda port: cores.pin(core, uvicorn(APP)(port))


@contextmanager
def servers(count: int, redis_url: str | None, cores: Cores, log: IO[bytes]) -> Iterator[list[tuple[int, int]]]:
    """``count`` uvicorn processes of the benchmark app: their (port, pid)."""
    env = {**node_env(), **({"BENCH_REDIS_URL": redis_url} if redis_url else {})}
    pins = [cores.server, cores.loadgen] if count == 2 else [cores.server]
    with ExitStack() as stack:
        running = []
        for core in pins:
            port, process = start_server(pinned(cores, core), cwd=ROOT, env=env, stdout=log, stderr=log)
            stack.callback(stop, process)
            running.append((port, process.pid))
        yield running


def machine_busy() -> float:
    """CPU seconds the whole machine has spent on anything but idling, from ``/proc/stat``
    (the kernel's network processing for the loopback connections included)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def loadgen(
    config: dict[str, Any], pids: list[int], core: int | None, log: IO[bytes]
) -> tuple[dict[str, Any], dict[str, list[Snapshot]], dict[str, float]]:
    """The load generator to its end, with the CPU of every process of ``pids`` at each of its
    marks, and the whole machine's busy CPU seconds."""
    command = ["node", str(LOADGEN), json.dumps(config)]
    if core is not None:
        command = ["taskset", "-c", str(core), *command]
    process = subprocess.Popen(command, cwd=ROOT, env=node_env(), stdout=subprocess.PIPE, stderr=log, text=True)
    assert process.stdout is not None
    marks: dict[str, list[Snapshot]] = {}
    machine: dict[str, float] = {}
    result: dict[str, Any] | None = None
    try:
        for line in process.stdout:
            message = json.loads(line)
            if "mark" in message:
                marks[message["mark"]] = [snapshot(pid) for pid in pids]
                machine[message["mark"]] = machine_busy()
            elif "result" in message:
                result = message["result"]
        process.wait(120)
    finally:
        stop(process)
    if result is None:
        raise RuntimeError(f"the load generator exited with {process.returncode} and no result")
    return result, marks, machine


@dataclass(frozen=True)
class Scenario:
    """How the load generator broadcasts: ``senders`` sessions, each with ``inflight`` on their way."""

    name: str
    senders: int
    inflight: int


def run(
    scenario: Scenario,
    setup: str,
    sessions: int,
    duration: float,
    redis: Redis,
    cores: Cores,
    log: IO[bytes],
) -> Result:
    count, through_redis = SETUPS[setup]
    assert redis.process is not None
    with servers(count, redis.url if through_redis else None, cores, log) as running:
        ports = [port for port, _pid in running]
        config = {
            "mode": "broadcast",
            "path": "/broadcast/000/{session}/websocket",
            "framing": "sockjs",
            "hello": True,
            "sessions": sessions,
            "port": ports[0],
            "ports": ports,
            "senders": scenario.senders,
            "inflight": scenario.inflight,
            **TIMING[False],
            "duration": duration,
        }
        pids = [pid for _port, pid in running] + [redis.process.pid]
        # Two processes share the cores with the load generator: let the scheduler place it.
        result, marks, machine = loadgen(config, pids, cores.loadgen if count == 1 else None, log)
    metrics = broadcast_metrics(Run(result, {}, {}))
    spans = list(zip(marks["start"], marks["end"], strict=True))
    cpu = [end.cpu_seconds - start.cpu_seconds for start, end in spans]
    busy = [(end.busy_seconds - start.busy_seconds) / (end.time - start.time) for start, end in spans[:-1]]
    return Result(
        scenario.name,
        setup,
        deliveries=int(result["deliveries"]),
        seconds=float(result["seconds"]),
        p50_ms=metrics.get("p50", float("nan")),
        server_cpu=cpu[:-1],
        loadgen_cpu=float(result["cpu"]),
        redis_cpu=cpu[-1],
        server_busy=busy,
        machine_cpu=(machine["end"] - machine["start"]) / float(result["seconds"]),
    )


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
    parser.add_argument("--scenario", choices=["latency", "throughput", "both"], default="both")
    parser.add_argument("--setups", nargs="+", choices=list(SETUPS), default=list(SETUPS))
    parser.add_argument("--senders", type=int, default=4, help="sending sessions of the throughput scenario")
    parser.add_argument("--inflight", type=int, default=2, help="broadcasts on their way per sender (throughput)")
    arguments = parser.parse_args()
    scenarios = [
        scenario
        for scenario in (Scenario("latency", 1, 1), Scenario("throughput", arguments.senders, arguments.inflight))
        if arguments.scenario in (scenario.name, "both")
    ]
    install_npm_packages()
    cores = Cores.pick()
    setups = [setup for setup in SETUPS if setup in arguments.setups]
    results: dict[tuple[str, str], list[Result]] = {(s.name, setup): [] for s in scenarios for setup in setups}
    loads: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-broker-") as workdir,
        (Path(workdir) / "bench.log").open("wb") as log,
    ):
        redis = Redis("redis", 0, Path(workdir) / "redis.log")
        start_on_a_free_port(redis, redis.start)
        try:
            costs = {
                name: statistics.median(anyio.run(publishing_cost, url, 5000) for _ in range(3))
                for name, url in (("memory", None), ("redis", redis.url))
            }
            print(json.dumps({"cpu_us_per_broadcast_without_sessions": costs}), flush=True)
            for round_ in range(arguments.rounds):
                order = setups if round_ % 2 == 0 else setups[::-1]
                for scenario in scenarios:
                    for setup in order:
                        loads.append(os.getloadavg()[0])
                        result = run(scenario, setup, arguments.sessions, arguments.duration, redis, cores, log)
                        results[scenario.name, setup].append(result)
                        print(json.dumps(result.as_json()), flush=True)
        finally:
            redis.stop()
    print(
        f"\n{arguments.sessions} websocket sessions, {arguments.rounds} rounds of {arguments.duration:g} s; "
        f"1-minute load average before the runs {min(loads):.1f} to {max(loads):.1f}, after {os.getloadavg()[0]:.1f}"
    )
    print(f"broker alone, CPU per broadcast: memory {costs['memory']:.1f} µs, redis {costs['redis']:.1f} µs")
    for scenario in scenarios:
        print(f"\n{scenario.name}: {scenario.senders} sender(s), {scenario.inflight} broadcast(s) in flight each")
        report(scenario.name, {setup: results[scenario.name, setup] for setup in setups})


def report(scenario: str, results: dict[str, list[Result]]) -> None:
    """One scenario's table (medians over the rounds) and ratios."""

    def median(setup: str, figure: Callable[[Result], float]) -> float:
        return statistics.median(figure(result) for result in results[setup])

    columns = [
        "setup",
        "deliveries/s",
        "p50 per broadcast",
        "server CPU per delivery",
        "server busy",
        "capacity",
        "load generator CPU",
        "Redis CPU per delivery",
        "2-core bound",
        "machine CPU",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for setup in results:
        processes = SETUPS[setup][0]
        server = " + ".join(
            f"{statistics.median(r.server_us[i] for r in results[setup]):.1f}" for i in range(processes)
        )
        busy = " + ".join(
            f"{statistics.median(r.server_busy[i] for r in results[setup]):.0%}" for i in range(processes)
        )
        loadgen_cpu = median(setup, lambda r: r.loadgen_cpu)
        print(
            f"| {setup} | {median(setup, lambda r: r.rate):,.0f} | {median(setup, lambda r: r.p50_ms):.1f} ms "
            f"| {server} µs | {busy} | {median(setup, lambda r: r.capacity):,.0f}/s "
            f"| {loadgen_cpu:.0%} ({median(setup, lambda r: r.loadgen_us):.1f} µs per delivery) "
            f"| {median(setup, lambda r: r.redis_us):.1f} µs | {median(setup, lambda r: r.two_core_bound):,.0f}/s "
            f"| {median(setup, lambda r: r.machine_cpu):.2f} cores |"
        )
    for label, over, under, figure in (
        ("redis-1 / memory-1, deliveries/s", "redis-1", "memory-1", "rate"),
        ("redis-1 / memory-1, capacity", "redis-1", "memory-1", "capacity"),
        ("redis-2 / redis-1, deliveries/s", "redis-2", "redis-1", "rate"),
        ("redis-2 / redis-1, capacity", "redis-2", "redis-1", "capacity"),
        ("redis-2 / memory-1, deliveries/s", "redis-2", "memory-1", "rate"),
        ("redis-2 / memory-1, capacity", "redis-2", "memory-1", "capacity"),
    ):
        if over not in results or under not in results:
            continue
        ratio = statistics.median(getattr(r, figure) for r in results[over]) / statistics.median(
            getattr(r, figure) for r in results[under]
        )
        print(f"{scenario} {label}: {ratio:.2f}")


if __name__ == "__main__":
    main()

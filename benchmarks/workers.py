"""``python -m benchmarks.workers`` (``nox -s bench-workers``): what serving a session from any
process costs, through ``uvicorn --workers 3`` against one process.

The main suite's xhr-polling and xhr-streaming scenarios (the same load generator), against
sockjs-asgi on uvicorn in four setups, alternating in each round, each on fresh processes:

* ``one``: one process, no broker;
* ``workers-3``: ``uvicorn --workers 3`` on one socket, every service with a RedisBroker.  The
  load generator keeps its connections, as browsers do: a polling client sends and polls on one
  connection (so one worker serves the whole session), a streaming one sends on a second
  connection, which the kernel may give to another worker (then the send is relayed);
* ``one-fresh`` and ``workers-3-fresh``: the same with a new connection for every request (as
  behind a proxy that does not keep connections): with three workers, about two requests in
  three reach another process than the session's and are relayed through Redis.

Figures: operations per second (round trips, or messages received) and the server processes'
CPU time per operation (all workers together; Redis not counted), medians over the rounds.
Nothing is pinned: three workers, Redis and the load generator share the machine's cores.

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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from examples.cluster.launch import Redis, start_on_a_free_port

from .harness import LOADGEN, node_env, snapshot, start_server, stop
from .scenarios import TIMING, Snapshot
from .servers import ROOT, install_npm_packages, uvicorn

APP = "benchmarks.apps.sockjs_asgi_app:app"
#: name -> (worker processes, a new connection per request)
SETUPS = {"one": (1, False), "workers-3": (3, False), "one-fresh": (1, True), "workers-3-fresh": (3, True)}
SCENARIOS = {
    "xhr-polling": {"mode": "polling", "path": "/echo", "clients": 100},
    "xhr-streaming": {"mode": "streaming", "path": "/flood", "batch": 50, "receivers": 100},
}
SMOKE = {"xhr-polling": {"clients": 10}, "xhr-streaming": {"receivers": 10}}


@dataclass
class Result:
    scenario: str
    setup: str
    per_second: float
    cpu_us_per_operation: float


def workers_of(process: subprocess.Popen[bytes], count: int) -> list[int]:
    """The processes that serve: the supervisor's children with several workers."""
    if count == 1:
        return [process.pid]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        # The workers, not multiprocessing's resource tracker.
        workers = [int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        if len(workers) == count:
            return workers
        time.sleep(0.05)  # another process: nothing to wait on but its children appearing
    raise RuntimeError(f"uvicorn did not start {count} workers")


@contextmanager
def server(count: int, redis_url: str, log: IO[bytes]) -> Iterator[tuple[int, list[int]]]:
    workers = ["--workers", str(count)] if count > 1 else []
    env = {**node_env(), **({"BENCH_REDIS_URL": redis_url} if count > 1 else {})}
    port, process = start_server(lambda port: uvicorn(APP)(port) + workers, cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        pids = workers_of(process, count)
        time.sleep(1.0 if count > 1 else 0)  # every worker through its lifespan (they share the port)
        yield port, pids
    finally:
        stop(process)


def loadgen(config: dict[str, Any], pids: list[int], log: IO[bytes]) -> tuple[dict[str, Any], dict[str, float]]:
    """The load generator to its end; the server processes' CPU seconds at each of its marks."""
    process = subprocess.Popen(
        ["node", str(LOADGEN), json.dumps(config)],
        cwd=ROOT,
        env=node_env(),
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert process.stdout is not None
    marks: dict[str, float] = {}
    result: dict[str, Any] | None = None
    try:
        for line in process.stdout:
            message = json.loads(line)
            if "mark" in message:
                shots: list[Snapshot] = [snapshot(pid) for pid in pids]
                marks[message["mark"]] = sum(shot.cpu_seconds for shot in shots)
            elif "result" in message:
                result = message["result"]
        process.wait(120)
    finally:
        stop(process)
    if result is None:
        log.flush()
        tail = Path(log.name).read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the load generator exited with {process.returncode} and no result:\n{tail}")
    return result, marks


def run(scenario: str, setup: str, redis_url: str, smoke: bool, log: IO[bytes]) -> Result:
    count, fresh = SETUPS[setup]
    with server(count, redis_url, log) as (port, pids):
        config = {**SCENARIOS[scenario], **(SMOKE[scenario] if smoke else {}), **TIMING[smoke]}
        config |= {"port": port, "fresh": fresh}
        result, marks = loadgen(config, pids, log)
    operations = result["count"]
    if not operations:
        raise RuntimeError(f"{scenario} {setup}: no operation completed")
    cpu = 1e6 * (marks["end"] - marks["start"]) / operations
    return Result(scenario, setup, operations / result["seconds"], cpu)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.workers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round: check that it runs")
    arguments = parser.parse_args()
    rounds = 1 if arguments.smoke else arguments.rounds
    install_npm_packages()
    results: list[Result] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-workers-") as workdir,
        (Path(workdir) / "bench.log").open("wb") as log,
    ):
        redis = Redis("redis", 0, Path(workdir) / "redis.log")
        start_on_a_free_port(redis, redis.start)
        try:
            for round_ in range(rounds):
                order = list(SETUPS) if round_ % 2 == 0 else list(reversed(SETUPS))
                for scenario in SCENARIOS:
                    for setup in order:
                        result = run(scenario, setup, redis.url, arguments.smoke, log)
                        results.append(result)
                        print(json.dumps(result.__dict__), flush=True)
        finally:
            redis.stop()
    print(f"\n{rounds} round(s), load average {os.getloadavg()[0]:.1f}")
    print("| scenario | setup | per second (median) | ratio to one process | server CPU per operation |")
    print("|---|---|---|---|---|")
    for scenario in SCENARIOS:
        median = {
            setup: statistics.median(r.per_second for r in results if (r.scenario, r.setup) == (scenario, setup))
            for setup in SETUPS
        }
        for setup in SETUPS:
            cpu = statistics.median(
                r.cpu_us_per_operation for r in results if (r.scenario, r.setup) == (scenario, setup)
            )
            base = median["one-fresh" if SETUPS[setup][1] else "one"]
            print(f"| {scenario} | {setup} | {median[setup]:,.0f} | {median[setup] / base:.2f} | {cpu:,.0f} µs |")


if __name__ == "__main__":
    main()

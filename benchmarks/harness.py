"""Running one scenario against one server: processes, pinning, marks and the CPU check.

The server gets one core and the load generator the other (``taskset``); a fresh server process
serves every run, so that no run inherits another's memory or sessions.  The load generator
reports its own CPU use over the measured window; a run where it used more than
:data:`SATURATED` of its core measured the load generator, not the server, and its figures are
refused.  So is a run where its event loop was busy (running, or runnable but waiting while
another process had the core) more than that share of the window: on a shared machine a
starved load generator sets the pace just as a saturated one does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from examples.cluster.launch import free_port

from .scenarios import Metrics, Run, Scenario, Snapshot, share
from .servers import NPM_PREFIX, ROOT, Server

LOADGEN = ROOT / "benchmarks" / "loadgen.js"
#: Above this share of its core, the load generator is the bottleneck.
SATURATED = 0.9
#: Seconds to wait for the server's memory to settle before reading it (idle scenario).
SETTLE = 0.5
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Cores:
    """Where the server and the load generator run; ``None`` when there are not two cores."""

    server: int | None
    loadgen: int | None

    @classmethod
    def pick(cls) -> Cores:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2 or shutil.which("taskset") is None:
            return cls(None, None)
        return cls(cores[0], cores[1])

    def pin(self, core: int | None, command: list[str]) -> list[str]:
        return command if core is None else ["taskset", "-c", str(core), *command]


@dataclass
class Outcome:
    """One run: its figures, or why there are none."""

    server: str
    scenario: str
    round: int
    metrics: Metrics = field(default_factory=dict)
    loadgen_cpu: float | None = None
    server_cpu: float | None = None
    #: Shares of the window each process's main thread was busy (running or waiting for a core).
    loadgen_busy: float | None = None
    server_busy: float | None = None
    refused: str | None = None
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    #: In a side-by-side run (:func:`run_pair`), the server measured beside the reference: the
    #: reference's figure to divide by is the one of the same pair.
    pair: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "scenario": self.scenario,
            "round": self.round,
            "metrics": self.metrics,
            "loadgen_cpu": self.loadgen_cpu,
            "server_cpu": self.server_cpu,
            "loadgen_busy": self.loadgen_busy,
            "server_busy": self.server_busy,
            "refused": self.refused,
            "error": self.error,
            "raw": self.raw,
            "pair": self.pair,
        }


def snapshot(pid: int) -> Snapshot:
    """CPU time (all threads), busy time (main thread) and resident memory, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    # The main thread's nanoseconds on a core and waiting in the run queue.
    running, waiting = Path(f"/proc/{pid}/schedstat").read_text().split()[:2]
    busy = (int(running) + int(waiting)) / 1e9
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = float(line.split()[1])
    return Snapshot(time.monotonic(), cpu, busy, rss)


class ExitedEarly(RuntimeError):
    """The server exited before it listened."""


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ExitedEarly(f"the server exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the server did not listen on port {port} within {timeout} s")


def start_server(
    command: Callable[[int], list[str]], attempts: int = 5, **popen: Any
) -> tuple[int, subprocess.Popen[bytes]]:
    """Start the server ``command(port)`` on a free port and wait until it listens: its port and
    process.

    The port is free when chosen, and the server binds it a moment later: another program may
    take it meanwhile (the load generators' connections take their source ports from the same
    range).  The server then exits, and starts again on another port.  Handing it a socket bound
    here would close the gap, but uvicorn adopts an inherited socket (``--fd``) as a Unix socket,
    without ``TCP_NODELAY``: not the server that users run, nor the one measured.
    """
    for attempt in range(1, attempts + 1):
        port = free_port()
        process: subprocess.Popen[bytes] = subprocess.Popen(command(port), **popen)
        try:
            wait_for_port(port, process, timeout=30)
        except ExitedEarly:
            if attempt == attempts:
                raise
        except BaseException:
            stop(process)
            raise
        else:
            return port, process
    raise AssertionError("attempts must be at least 1")


@contextmanager
def running_server(server: Server, cores: Cores, log: IO[bytes]) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port, process = start_server(
        lambda port: cores.pin(cores.server, server.command(port)),
        cwd=ROOT,
        env={**node_env(), **server.env},
        stdout=log,
        stderr=log,
    )
    try:
        yield port, process
    finally:
        stop(process)


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def node_env() -> dict[str, str]:
    return {**os.environ, "NODE_PATH": str(NPM_PREFIX / "node_modules")}


def start_loadgen(config: dict[str, Any], cores: Cores, log: IO[bytes]) -> subprocess.Popen[str]:
    command = cores.pin(cores.loadgen, ["node", str(LOADGEN), json.dumps(config)])
    return subprocess.Popen(
        command, cwd=ROOT, env=node_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True
    )


def follow_loadgen(
    process: subprocess.Popen[str], server_pid: int, timeout: float, ready: threading.Barrier | None = None
) -> Run:
    """Read the load generator to its end, snapshotting the server at each of its marks.

    ``ready``: the load generators run side by side, and each waits at its ``ready`` mark until
    all have reached theirs.
    """
    assert process.stdin is not None and process.stdout is not None
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    marks: dict[str, Snapshot] = {}
    loadgen_marks: dict[str, Snapshot] = {}
    result: dict[str, Any] | None = None
    try:
        for line in process.stdout:
            message = json.loads(line)
            if message.get("mark") == "ready" and ready is not None:
                ready.wait(timeout)
                process.stdin.write("\n")
                process.stdin.flush()
            elif "mark" in message:
                if message.get("wait"):
                    time.sleep(SETTLE)
                marks[message["mark"]] = snapshot(server_pid)
                loadgen_marks[message["mark"]] = snapshot(process.pid)
                if message.get("wait"):
                    process.stdin.write("\n")
                    process.stdin.flush()
            elif "result" in message:
                result = message["result"]
        process.wait()
    except threading.BrokenBarrierError:
        pass  # the other load generator failed: so does this run
    finally:
        timer.cancel()
        if ready is not None and result is None:
            ready.abort()  # do not leave the other one waiting
        stop(process)
    if result is None:
        raise RuntimeError(f"the load generator exited with {process.returncode} and no result (see the log)")
    return Run(result, marks, loadgen_marks)


def run_loadgen(config: dict[str, Any], server_pid: int, cores: Cores, timeout: float, log: IO[bytes]) -> Run:
    """Run the load generator to its end, snapshotting the server at each of its marks."""
    return follow_loadgen(start_loadgen(config, cores, log), server_pid, timeout)


def run_once(server: Server, scenario: Scenario, round_: int, *, smoke: bool, cores: Cores, logs: Path) -> Outcome:
    """One run of ``scenario`` against a fresh ``server``."""
    outcome = Outcome(server.name, scenario.name, round_)
    config = {**scenario.config(server.kind, smoke)}
    log_path = logs / f"{scenario.name}.{server.name}.{round_}.log"
    with log_path.open("wb") as log:
        try:
            with running_server(server, cores, log) as (port, process):
                run = run_loadgen({**config, "port": port}, process.pid, cores, scenario.timeout, log)
        except RuntimeError as error:
            outcome.error = str(error)
            return outcome
    _record(outcome, scenario, run)
    # On a shared machine the load generator may be starved rather than saturated: either way,
    # an event loop that never waited for the server set the pace.
    loadgen_cpu = outcome.loadgen_cpu or 0.0
    if loadgen_cpu > SATURATED:
        outcome.refused = f"the load generator used {loadgen_cpu:.0%} of its core"
    elif outcome.loadgen_busy is not None and outcome.loadgen_busy > SATURATED:
        outcome.refused = f"the load generator was busy (running or waiting for its core) {outcome.loadgen_busy:.0%}"
    return outcome


def _record(outcome: Outcome, scenario: Scenario, run: Run) -> None:
    outcome.raw = {key: value for key, value in run.result.items() if key != "latencies"}
    outcome.loadgen_cpu = float(run.result["cpu"])
    outcome.server_cpu = share(run.marks, "cpu_seconds")
    outcome.server_busy = share(run.marks, "busy_seconds")
    outcome.loadgen_busy = share(run.loadgen_marks, "busy_seconds")
    outcome.metrics = scenario.metrics(run)


def run_pair(
    reference: Server, server: Server, scenario: Scenario, round_: int, *, smoke: bool, cores: Cores, logs: Path
) -> list[Outcome]:
    """One run of ``scenario`` against a fresh ``reference`` and a fresh ``server`` side by side.

    Both servers share the server's core and both load generators the other one, over the same
    seconds: whatever else the machine does then slows both alike, so the ratio of their work per
    second of CPU is steady where runs one after the other are not (a shared machine's speed
    drifts by tens of percent within a minute).  Both load generators together must leave their
    core unsaturated.
    """
    pair = (reference, server)
    outcomes = [Outcome(s.name, scenario.name, round_, pair=server.name) for s in pair]
    with ExitStack() as stack:
        try:
            logs_ = [
                stack.enter_context((logs / f"{scenario.name}.{s.name}.{round_}.beside-{server.name}.log").open("wb"))
                for s in pair
            ]
            running = [stack.enter_context(running_server(s, cores, log)) for s, log in zip(pair, logs_, strict=True)]
            ready = threading.Barrier(len(pair))
            processes = [
                start_loadgen({**scenario.config(s.kind, smoke), "port": port, "together": True}, cores, log)
                for s, (port, _), log in zip(pair, running, logs_, strict=True)
            ]
            runs: list[Run | RuntimeError] = [RuntimeError("no result")] * len(pair)

            def follow(index: int) -> None:
                try:
                    runs[index] = follow_loadgen(processes[index], running[index][1].pid, scenario.timeout, ready)
                except RuntimeError as error:
                    runs[index] = error

            threads = [threading.Thread(target=follow, args=(index,)) for index in range(len(pair))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        except RuntimeError as error:
            runs = [error] * len(pair)
    for outcome, run in zip(outcomes, runs, strict=True):
        if isinstance(run, RuntimeError):
            outcome.error = str(run)
        else:
            _record(outcome, scenario, run)
    together = sum(o.loadgen_cpu or 0.0 for o in outcomes)
    if all(o.error is None for o in outcomes) and together > SATURATED:
        for outcome in outcomes:
            outcome.refused = f"the load generators used {together:.0%} of their core together"
    return outcomes

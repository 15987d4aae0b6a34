"""``python -m benchmarks`` (or ``nox -s bench``): every scenario against every server, over sockets.

Each figure is reported as a ratio to the bare-ASGI reference in the same round; rounds alternate
the order of the servers.  Prints a Markdown table; writes the runs as JSON to ``.cache/bench/``
and a plot (PNG) beside it, and to ``docs/benchmarks.png`` after a complete full-size run.

``--smoke`` runs everything once at a tiny size (about a second per run) and fails unless every
scenario produced a figure for every server: CI runs it so that the harness cannot rot.  Its
figures mean nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from . import report
from .harness import Cores, Outcome, run_once, run_pair
from .scenarios import EFFICIENCY, FIGURES, SCENARIOS, Scenario
from .servers import (
    NPM_PREFIX,
    REFERENCE,
    ROOT,
    SERVERS,
    UVICORN_WS,
    UVICORN_WS_VARIABLE,
    Server,
    install_npm_packages,
    resolved_uvicorn_ws,
    uvicorn_ws,
)

OUTPUT = ROOT / ".cache" / "bench"
DOCS_PLOT = ROOT / "docs" / "benchmarks.png"
DOCS_PAGE = ROOT / "docs" / "benchmarks.md"
RESULTS_START = "<!-- results: written by nox -s bench -->"
RESULTS_END = "<!-- end of results -->"
PYTHON_PACKAGES = ("sockjs-asgi", "uvicorn", "uvloop", "httptools", "websockets", "aiohttp", "sockjs")


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round; check that every figure exists")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per server (default 3, smoke 1)")
    names = [s.name for s in SCENARIOS]
    parser.add_argument("--scenario", action="append", choices=names, help="only these scenarios (repeatable)")
    servers = [s.name for s in SERVERS if s is not REFERENCE]
    parser.add_argument("--server", action="append", choices=servers, help="only these servers (repeatable)")
    parser.add_argument(
        "--uvicorn-ws",
        choices=UVICORN_WS,
        default=UVICORN_WS[0],
        help="uvicorn's websocket implementation, for the reference and sockjs-asgi alike (default: "
        "auto, uvicorn's own choice: websockets-sansio when websockets is installed)",
    )
    parser.add_argument(
        "--sequential",
        action="store_true",
        help="run each server alone, one after the other, rather than beside the reference at the same time",
    )
    parser.add_argument("--report", metavar="JSON", help="publish a saved run again instead of measuring")
    return parser.parse_args(argv)


def npm_version(package: str) -> str:
    try:
        manifest = json.loads((NPM_PREFIX / "node_modules" / package / "package.json").read_text())
    except OSError:
        return "missing"
    return str(manifest["version"])


def command_output(*command: str) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(int(memory) / 2**20, 1),
        "kernel": platform.release(),
        "load_average": os.getloadavg(),
    }


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "node": command_output("node", "--version")}
    for package in PYTHON_PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "missing"
    found["npm sockjs"] = npm_version("sockjs")
    found["npm ws"] = npm_version("ws")
    found["sockjs-asgi commit"] = command_output("git", "-C", str(ROOT), "describe", "--always", "--dirty")
    return found


def update_docs(results: str) -> None:
    """Replace the results between the markers of docs/benchmarks.md with this run's."""
    text = DOCS_PAGE.read_text()
    if RESULTS_START not in text or RESULTS_END not in text:
        print(f"{DOCS_PAGE} has no results markers: not updated", file=sys.stderr)
        return
    start, end = text.index(RESULTS_START) + len(RESULTS_START), text.index(RESULTS_END)
    DOCS_PAGE.write_text(text[:start] + "\n" + results + "\n" + text[end:])


def usage(outcome: Outcome) -> str:
    """CPU use, and the share of the window the event loop was busy, of both processes."""
    text = ""
    for name, cpu, busy in (
        ("loadgen", outcome.loadgen_cpu, outcome.loadgen_busy),
        ("server", outcome.server_cpu, outcome.server_busy),
    ):
        if cpu is not None:
            text += f" {name} cpu {cpu:.0%}" + ("" if busy is None else f" busy {busy:.0%}")
    return text


def measure(
    scenarios: list[Scenario], servers: list[Server], *, smoke: bool, rounds: int, name: str, sequential: bool = False
) -> tuple[list[Outcome], dict[str, Any]]:
    """Every round: every scenario against every server, each beside the reference (the
    scenario is ``paired``) or alone, the order of the servers alternating."""
    install_npm_packages()
    cores = Cores.pick()
    if cores.server is None:
        print("fewer than two cores (or no taskset): server and load generator are not pinned", file=sys.stderr)
    logs = OUTPUT / "logs" / name
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    info: dict[str, Any] = {
        "machine": machine(),
        "versions": versions(),
        "cores": vars(cores),
        "uvicorn_ws": uvicorn_ws(),
        "uvicorn_ws_resolved": resolved_uvicorn_ws(),
        "sequential": sequential,
    }
    outcomes: list[Outcome] = []
    for round_ in range(rounds):
        for scenario in scenarios:
            order = servers if round_ % 2 == 0 else servers[::-1]
            if scenario.paired and not sequential:
                runs = [
                    run_pair(REFERENCE, server, scenario, round_, smoke=smoke, cores=cores, logs=logs)
                    for server in order
                    if server is not REFERENCE
                ]
                done = [outcome for pair in runs for outcome in pair]
            else:
                done = [run_once(server, scenario, round_, smoke=smoke, cores=cores, logs=logs) for server in order]
            for outcome in done:
                outcomes.append(outcome)
                shown = ", ".join(f"{key}={value:,.1f}" for key, value in outcome.metrics.items())
                trouble = outcome.error or (f"REFUSED: {outcome.refused}" if outcome.refused else "")
                beside = f" (beside {outcome.pair})" if outcome.server != outcome.pair and outcome.pair else ""
                print(
                    f"round {round_} {scenario.name:<15} {outcome.server:<15} {shown}{usage(outcome)} {trouble}{beside}"
                )
                sys.stdout.flush()
    info["machine"]["load_average_after"] = os.getloadavg()
    info["seconds"] = round(time.monotonic() - started, 1)
    info["logs"] = str(logs)
    return outcomes, info


def publish(
    outcomes: list[Outcome],
    info: dict[str, Any],
    scenarios: list[Scenario],
    servers: list[Server],
    *,
    smoke: bool,
    rounds: int,
    name: str,
) -> dict[str, Any]:
    """The tables on stdout; the JSON, the Markdown and the plot in .cache/bench/; the docs after
    a complete full-size run."""
    figures = [f for f in FIGURES if any(s.name == f.scenario for s in scenarios)]
    efficiency = [f for f in EFFICIENCY if any(s.name == f.scenario for s in scenarios)]
    cells = report.summarise(outcomes, [*figures, *efficiency], servers, REFERENCE)
    print()
    print(report.table(cells, figures, servers, REFERENCE))
    print("\nThe same work per second of the server's CPU (steadier on a shared machine):\n")
    print(report.table(cells, efficiency, servers, REFERENCE))
    for line in report.problems(cells):
        print(line)

    results = {
        **info,
        "smoke": smoke,
        "rounds": rounds,
        "servers": {s.name: s.description for s in servers},
        "figures": [
            {"scenario": f.scenario, "metric": f.metric, "label": f.label, "unit": f.unit}
            | {server: cells[(f.scenario, f.metric, server)].as_json() for server in (s.name for s in servers)}
            for f in [*figures, *efficiency]
        ],
        "runs": [o.as_json() for o in outcomes],
    }
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / f"{name}.json").write_text(json.dumps(results, indent=1))
    (OUTPUT / ("latest-smoke.json" if smoke else "latest.json")).write_text(json.dumps(results, indent=1))
    title = f"{name}: {rounds} round(s), {info['machine']['cpu']}, {info['machine']['cores']} cores"
    panels = [("Ratio to the reference", figures), ("The same, per second of the server's CPU", efficiency)]
    report.plot(cells, panels, servers, REFERENCE, OUTPUT / f"{name}.png", title)
    results_md = report.markdown(cells, panels, servers, REFERENCE, {**info, "rounds": rounds})
    (OUTPUT / f"{name}.md").write_text(results_md + "\n")
    complete = len(scenarios) == len(SCENARIOS) and len(servers) == len(SERVERS)
    default = info.get("uvicorn_ws", UVICORN_WS[0]) == UVICORN_WS[0] and not info.get("sequential")
    if complete and not smoke and default:
        report.plot(cells, panels, servers, REFERENCE, DOCS_PLOT, title)
        update_docs(results_md)
    print(f"\nresults: {OUTPUT / name}.json, plot: {OUTPUT / name}.png, logs: {info.get('logs')}")
    return results


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if arguments.report:
        # Publish a saved run again (after a change to the report, say): no measuring.
        saved = json.loads(Path(arguments.report).read_text())
        smoke, rounds = bool(saved["smoke"]), int(saved["rounds"])
        servers = [s for s in SERVERS if s.name in saved["servers"]]
        ran = {run["scenario"] for run in saved["runs"]}
        scenarios = [s for s in SCENARIOS if s.name in ran]
        outcomes = [Outcome(**run) for run in saved["runs"]]
        keys = ("machine", "versions", "cores", "uvicorn_ws", "uvicorn_ws_resolved", "sequential", "seconds", "logs")
        info = {key: saved[key] for key in keys if key in saved}
        name = Path(arguments.report).stem
    else:
        smoke = arguments.smoke
        rounds = arguments.rounds or (1 if smoke else 3)
        scenarios = [s for s in SCENARIOS if not arguments.scenario or s.name in arguments.scenario]
        servers = [s for s in SERVERS if s is REFERENCE or not arguments.server or s.name in arguments.server]
        os.environ[UVICORN_WS_VARIABLE] = arguments.uvicorn_ws
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        name = f"{stamp}{'-smoke' if smoke else ''}"
        if arguments.uvicorn_ws != UVICORN_WS[0]:
            name += f"-{arguments.uvicorn_ws}"
        if arguments.sequential:
            name += "-sequential"
        # Stopped from outside, still stop the server and the load generator (the finally clauses).
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        outcomes, info = measure(
            scenarios, servers, smoke=smoke, rounds=rounds, name=name, sequential=arguments.sequential
        )
    publish(outcomes, info, scenarios, servers, smoke=smoke, rounds=rounds, name=name)

    if smoke:
        # Figures are not judged here, only that every run produced them (refused or not).
        produced = {(o.scenario, o.server, metric) for o in outcomes for metric in o.metrics}
        missing = [
            f"{f.scenario}/{f.metric} {s.name}"
            for f in FIGURES
            for s in servers
            if any(f.scenario == scenario.name for scenario in scenarios)
            and (f.scenario, s.name, f.metric) not in produced
        ]
        if missing:
            print("smoke run: no figure for " + ", ".join(missing), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

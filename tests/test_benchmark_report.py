"""The benchmark harness's arithmetic: ratios within a round, refusals, the table.

The harness itself runs in the default ``nox`` run (``bench-smoke``); these check, without
servers, that a refused or failed run never becomes a figure and that ratios pair runs of the
same round.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.harness import Outcome
from benchmarks.report import plot, summarise, table, was_shared
from benchmarks.scenarios import Figure, Run, Snapshot, Target, rate, share
from benchmarks.servers import REFERENCE, SERVERS

OURS = next(s for s in SERVERS if s.name == "sockjs-asgi")
FIGURE = Figure("ws-echo", "rate", "ws-echo", "msg/s")


def outcome(server: str, round_: int, value: float | None, *, refused: str | None = None) -> Outcome:
    return Outcome(server, "ws-echo", round_, metrics={} if value is None else {"rate": value}, refused=refused)


def test_ratios_pair_the_runs_of_a_round() -> None:
    outcomes = [
        outcome(REFERENCE.name, 0, 100.0),
        outcome(OURS.name, 0, 50.0),
        outcome(REFERENCE.name, 1, 200.0),
        outcome(OURS.name, 1, 200.0),
        outcome(REFERENCE.name, 2, 100.0),
        outcome(OURS.name, 2, 80.0),
    ]
    cell = summarise(outcomes, [FIGURE], [REFERENCE, OURS], REFERENCE)[("ws-echo", "rate", OURS.name)]
    assert cell.ratios == (0.5, 1.0, 0.8)
    assert cell.ratio == 0.8
    assert cell.value == 80.0
    assert cell.problems == ()


def test_side_by_side_runs_divide_by_the_reference_beside_them() -> None:
    node = next(s for s in SERVERS if s.name == "sockjs-node")

    def beside(server: str, pair: str, value: float) -> Outcome:
        return Outcome(server, "ws-echo", 0, metrics={"rate": value}, pair=pair)

    outcomes = [
        beside(REFERENCE.name, OURS.name, 100.0),
        beside(OURS.name, OURS.name, 90.0),
        beside(REFERENCE.name, node.name, 50.0),
        beside(node.name, node.name, 60.0),
    ]
    cells = summarise(outcomes, [FIGURE], [REFERENCE, OURS, node], REFERENCE)
    assert cells[("ws-echo", "rate", OURS.name)].ratios == (0.9,)
    assert cells[("ws-echo", "rate", node.name)].ratios == (1.2,)
    reference = cells[("ws-echo", "rate", REFERENCE.name)]
    assert sorted(reference.values) == [50.0, 100.0]
    assert reference.ratios == (1.0, 1.0)
    assert reference.problems == ()


def test_a_refused_run_is_no_figure_and_says_why() -> None:
    outcomes = [
        outcome(REFERENCE.name, 0, 100.0),
        outcome(OURS.name, 0, 50.0, refused="the load generator used 97% of its core"),
        outcome(REFERENCE.name, 1, 100.0, refused="the load generator used 95% of its core"),
        outcome(OURS.name, 1, 70.0),
    ]
    cells = summarise(outcomes, [FIGURE], [REFERENCE, OURS], REFERENCE)
    ours = cells[("ws-echo", "rate", OURS.name)]
    assert ours.ratios == ()
    assert ours.values == (70.0,)
    assert any("97%" in problem for problem in ours.problems)
    assert any("no reference figure" in problem for problem in ours.problems)
    assert "70.0 msg/s (no ratio)" in table(cells, [FIGURE], [REFERENCE, OURS], REFERENCE)


def test_a_failed_run_leaves_the_cell_empty() -> None:
    failed = Outcome(OURS.name, "ws-echo", 0, error="the server exited with 1 before listening")
    cells = summarise([outcome(REFERENCE.name, 0, 100.0), failed], [FIGURE], [REFERENCE, OURS], REFERENCE)
    assert cells[("ws-echo", "rate", OURS.name)].ratio is None
    assert "no figure" in table(cells, [FIGURE], [REFERENCE, OURS], REFERENCE)


def test_rate_and_cpu_share_over_the_window() -> None:
    marks = {"start": Snapshot(10.0, 1.0, 1.5, 0.0), "end": Snapshot(12.0, 2.0, 3.5, 0.0)}
    run = Run({"count": 1000, "seconds": 2.0}, marks, {})
    assert share(marks, "cpu_seconds") == 0.5
    assert share(marks, "busy_seconds") == 1.0
    assert rate(run) == {"rate": 500.0, "rate_per_cpu": 1000.0}
    assert share({}, "cpu_seconds") is None


def test_targets_are_checked_on_the_ratio_or_on_the_figure() -> None:
    faster = Figure("ws-echo", "rate", "ws-echo", "msg/s", target=Target(1.5))
    smaller = Figure("ws-echo", "rate", "memory", "KiB", higher_is_better=False, target=Target(21, on_ratio=False))
    outcomes = [outcome(REFERENCE.name, 0, 100.0), outcome(OURS.name, 0, 20.0)]
    cells = summarise(outcomes, [faster], [REFERENCE, OURS], REFERENCE)
    assert "| >= 1.5x: NOT met (0.200x) |" in table(cells, [faster], [REFERENCE, OURS], REFERENCE)
    assert "| <= 21 KiB: met (20.00 KiB) |" in table(cells, [smaller], [REFERENCE, OURS], REFERENCE)
    assert faster.target is not None and faster.target.is_met(faster, None, None) is None


def test_the_runs_own_load_is_not_other_work() -> None:
    # Just after a run its server and load generator still weigh 2 in the load average.
    assert not was_shared(1.0, 2.1, cores=2)
    assert was_shared(1.0, 4.5, cores=2)
    assert was_shared(2.5, 0.5, cores=2)


def test_a_plot_leaves_out_panels_with_no_figure(tmp_path: Path) -> None:
    # Only the memory scenario ran: its panel has a row, the per-CPU panel none.
    idle = Figure("idle", "rss", "idle", "KiB", higher_is_better=False, absolute=True)
    outcomes = [
        Outcome(REFERENCE.name, "idle", 0, metrics={"rss": 19.0}),
        Outcome(OURS.name, "idle", 0, metrics={"rss": 25.0}),
    ]
    cells = summarise(outcomes, [idle], [REFERENCE, OURS], REFERENCE)
    path = tmp_path / "plot.png"
    plot(cells, [("figures", [idle]), ("per CPU", [])], [REFERENCE, OURS], REFERENCE, path, "idle only")
    assert path.stat().st_size > 0

"""From runs to the report: ratios per round, their medians and spread, the table and the plot.

A figure of a server in a round is divided by the reference's figure in the same round, so that
the machine's speed (and its load, when it is shared) cancels out as far as it can; the report
gives the median of those ratios over the rounds and their range.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .harness import Outcome
from .scenarios import TARGETED, Figure
from .servers import Server


@dataclass(frozen=True)
class Cell:
    """One figure of one server over the rounds."""

    ratios: tuple[float, ...]
    values: tuple[float, ...]
    #: Why rounds are missing: refusals and errors.
    problems: tuple[str, ...]

    @property
    def ratio(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None

    @property
    def value(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    def as_json(self) -> dict[str, Any]:
        return {
            "ratio": self.ratio,
            "ratios": list(self.ratios),
            "value": self.value,
            "values": list(self.values),
            "problems": list(self.problems),
        }


def _usable(outcome: Outcome | None, metric: str) -> tuple[float | None, str | None]:
    if outcome is None:
        return None, None
    if outcome.error is not None:
        return None, f"round {outcome.round}: {outcome.error}"
    if outcome.refused is not None:
        return None, f"round {outcome.round}: refused, {outcome.refused}"
    if metric not in outcome.metrics:
        return None, f"round {outcome.round}: no {metric}"
    return outcome.metrics[metric], None


def summarise(
    outcomes: Iterable[Outcome], figures: Sequence[Figure], servers: Sequence[Server], reference: Server
) -> dict[tuple[str, str, str], Cell]:
    """Key: (scenario, metric, server).

    A server's figure is divided by the reference's of the same round, and of the same pair
    when they ran side by side; the reference's own cell has its figures from every pair.
    """
    index = {(o.scenario, o.server, o.round, o.pair): o for o in outcomes}
    rounds = sorted({key[2] for key in index})
    cells: dict[tuple[str, str, str], Cell] = {}
    for figure in figures:
        for server in servers:
            ratios: list[float] = []
            values: list[float] = []
            problems: list[str] = []
            for round_ in rounds:
                if server is reference:
                    pairs = [key[3] for key in index if key[:3] == (figure.scenario, server.name, round_)]
                else:
                    pairs = [server.name if (figure.scenario, server.name, round_, server.name) in index else None]
                for pair in pairs:
                    value, problem = _usable(index.get((figure.scenario, server.name, round_, pair)), figure.metric)
                    base, base_problem = _usable(
                        index.get((figure.scenario, reference.name, round_, pair)), figure.metric
                    )
                    if problem:
                        problems.append(problem)
                    if value is None:
                        continue
                    values.append(value)
                    if base is None:
                        problems.append(f"round {round_}: no reference figure ({base_problem})")
                    elif base > 0:
                        ratios.append(value / base)
            cells[(figure.scenario, figure.metric, server.name)] = Cell(tuple(ratios), tuple(values), tuple(problems))
    return cells


def human(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:,.0f}k"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def cell_text(cell: Cell, figure: Figure, is_reference: bool) -> str:
    if cell.value is None:
        return "no figure"
    if is_reference:
        return f"{human(cell.value)} {figure.unit}"
    if cell.ratio is None:
        return f"{human(cell.value)} {figure.unit} (no ratio)"
    spread = f" ({min(cell.ratios):.2f}-{max(cell.ratios):.2f})" if len(cell.ratios) > 1 else ""
    text = f"{cell.ratio:.2f}x{spread}"
    if figure.absolute:
        text = f"{human(cell.value)} {figure.unit}, {text}"
    return text


def table(
    cells: dict[tuple[str, str, str], Cell], figures: Sequence[Figure], servers: Sequence[Server], reference: Server
) -> str:
    """A Markdown table: a row per figure, a column per server; ratios to the reference.

    When figures have targets and :data:`TARGETED` was run, a last column says whether it met them.
    """
    targeted = any(f.target for f in figures) and any(s.name == TARGETED for s in servers)
    header = ["scenario", *(f"{s.name} (reference)" if s is reference else s.name for s in servers)]
    if targeted:
        header.append(f"target for {TARGETED}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for figure in figures:
        label = figure.label + ("" if figure.higher_is_better else " (lower is better)")
        texts = [cell_text(cells[(figure.scenario, figure.metric, s.name)], figure, s is reference) for s in servers]
        if targeted:
            texts.append(target_text(cells[(figure.scenario, figure.metric, TARGETED)], figure))
        lines.append("| " + " | ".join([label, *texts]) + " |")
    return "\n".join(lines)


def target_text(cell: Cell, figure: Figure) -> str:
    if figure.target is None:
        return ""
    met = figure.target.is_met(figure, cell.ratio, cell.value)
    if met is None:
        return f"{figure.target.text(figure)}: no figure"
    # Three digits: a median shown as 1.80x may be 1.798, which misses 1.8.
    measured = f"{cell.ratio:.3f}x" if figure.target.on_ratio else f"{cell.value:.2f} {figure.unit}"
    return f"{figure.target.text(figure)}: {'met' if met else 'NOT met'} ({measured})"


def problems(cells: dict[tuple[str, str, str], Cell]) -> list[str]:
    return [f"{scenario}/{metric} {server}: {p}" for (scenario, metric, server), c in cells.items() for p in c.problems]


def plot(
    cells: dict[tuple[str, str, str], Cell],
    panels: Sequence[tuple[str, Sequence[Figure]]],
    servers: Sequence[Server],
    reference: Server,
    path: Path,
    title: str,
) -> None:
    """A panel per (title, figures): grouped horizontal bars, each server's median ratio per
    figure, the range over the rounds as error bars, the reference as the line at 1.  A panel
    with no figure (say, per-CPU rates when only the memory scenario ran) is left out."""
    panels = [(panel_title, figures) for panel_title, figures in panels if figures]
    if not panels:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    compared = [s for s in servers if s is not reference]
    height = 0.8 / max(1, len(compared))
    rows = sum(len(figures) for _, figures in panels)
    fig, all_axes = plt.subplots(
        len(panels),
        1,
        figsize=(9, 0.6 * rows + 1.5 * len(panels)),
        height_ratios=[len(figures) for _, figures in panels],
        squeeze=False,
    )
    for axes, (panel_title, figures) in zip(all_axes[:, 0], panels, strict=True):
        for offset, server in enumerate(compared):
            ys, xs, low, high = [], [], [], []
            for row, figure in enumerate(figures):
                cell = cells[(figure.scenario, figure.metric, server.name)]
                if cell.ratio is None:
                    continue
                ys.append(row + offset * height)
                xs.append(cell.ratio)
                low.append(cell.ratio - min(cell.ratios))
                high.append(max(cell.ratios) - cell.ratio)
            axes.barh(ys, xs, height=height, xerr=[low, high], label=server.name, capsize=2)
        axes.axvline(1.0, color="black", linewidth=1)
        axes.set_yticks([row + height * (len(compared) - 1) / 2 for row in range(len(figures))])
        axes.set_yticklabels(
            [
                f.scenario
                + ("" if f.metric.startswith("rate") else f" {f.metric}")
                + ("" if f.higher_is_better else "\n(lower is better)")
                for f in figures
            ]
        )
        axes.invert_yaxis()
        axes.set_title(panel_title, fontsize=10)
        axes.legend(loc="best", fontsize=8)
    all_axes[-1, 0].set_xlabel(f"ratio to {reference.name} in the same round (1.0 = the reference)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def was_shared(load_before: float, load_after: float, cores: int) -> bool:
    """Whether other work ran on the machine, by the one-minute load averages around a run.

    The load average read just after the run still counts the run's own two busy processes (the
    server and the load generator); only what is left beyond them is other work.
    """
    return max(load_before, load_after - 2) > cores


def markdown(
    cells: dict[tuple[str, str, str], Cell],
    panels: Sequence[tuple[str, Sequence[Figure]]],
    servers: Sequence[Server],
    reference: Server,
    info: dict[str, Any],
) -> str:
    """The results as Markdown: the tables, the machine and the versions of one run."""
    parts: list[str] = []
    for title, figures in panels:
        parts += [f"{title}:", "", table(cells, figures, servers, reference), ""]
    trouble = problems(cells)
    if trouble:
        parts += ["Missing figures:", "", *(f"- {line}" for line in trouble), ""]
    m = info["machine"]
    load = ", ".join(f"{x:.1f}" for x in m["load_average"])
    load_after = ", ".join(f"{x:.1f}" for x in m["load_average_after"])
    if was_shared(m["load_average"][0], m["load_average_after"][0], m["cores"]):
        parts += [
            "**The machine was busy with other work during this run** (load average above its "
            "core count): the servers did not get their whole core, so absolute figures are low "
            "and the ratios noisy; the per-CPU table is the steadier one.",
            "",
        ]
    parts += [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}; "
        f"load average {load} before the run and {load_after} after it; "
        f"{info['rounds']} rounds, {info['seconds']:.0f} s.",
        "",
        "Versions: " + ", ".join(f"{name} {version}" for name, version in info["versions"].items()) + ".",
        "",
        f"uvicorn's websocket implementation (`--ws`): {_uvicorn_ws(info)}.",
        "",
        "How the servers ran: "
        + (
            "one after the other, each alone on the server's core."
            if info.get("sequential", True)
            else "each beside the reference, at the same time on the server's core, except in "
            "the memory and broadcast scenarios, where each ran alone."
        ),
    ]
    return "\n".join(parts)


def _uvicorn_ws(info: dict[str, Any]) -> str:
    chosen = info.get("uvicorn_ws", "websockets")  # runs saved before the choice was recorded
    resolved = info.get("uvicorn_ws_resolved", chosen)
    return chosen if resolved == chosen else f"{chosen}, which is {resolved} here"

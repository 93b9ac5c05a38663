"""Run a config from the command line: progress bars, a results table, files on disk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import Experiment
from .results import SimulationResult
from .table import Table


def summary_with_rates(result: SimulationResult) -> Table:
    """The summary plus regret a decade before the horizon and the slope of regret against ln t.

    The slope is fitted over the last decade of steps; for Bernoulli problems it
    is the number to set beside the Lai-Robbins constant.
    """
    summary = result.summary()
    decade = max(result.horizon // 10, 1)
    columns: dict[str, Sequence[Any] | np.ndarray] = {
        "policy": summary["policy"],
        f"regret at {decade}": [result.regret_at(name, decade) for name in result.policies],
        f"regret at {result.horizon}": summary["regret_mean"],
        "95% low": summary["regret_low"],
        "95% high": summary["regret_high"],
        "reward/step": summary["reward_mean"],
    }
    if decade >= 2:
        columns["slope vs ln t"] = [result.log_slope(name, decade) for name in result.policies]
    columns["seconds"] = result.seconds
    return Table(columns)


def markdown(table: Table) -> str:
    """The table as a GitHub-flavoured markdown table (floats to 2 decimals)."""

    def cell(value) -> str:
        return f"{value:,.2f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row.values()) + " |" for row in table.rows()]
    return "\n".join(lines) + "\n"


def simulate_to_directory(
    experiment: Experiment, out: Path, *, workers: int | None = None, console=None
) -> SimulationResult:
    """Run ``experiment`` with a progress bar per policy; write result.json, curves.parquet, regret.png, summary.md."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table as RichTable

    console = console or Console()
    out.mkdir(parents=True, exist_ok=True)
    total = experiment.horizon * experiment.replications
    columns = (TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        tasks = {name: progress.add_task(escape(name), total=total) for name in experiment.policies}
        result = experiment.run(workers=workers, progress=lambda name, done: progress.advance(tasks[name], done))
    table = summary_with_rates(result)
    # Labels are the config's own text: escaped, so that "[...]" in a label is shown, not read as markup.
    shown = RichTable(title=escape(experiment.title or "simulation"), title_justify="left")
    for column in table.columns:
        shown.add_column(column, justify="left" if column == "policy" else "right", overflow="fold")
    for row in table.rows():
        shown.add_row(*(f"{v:,.3f}" if isinstance(v, float) else escape(str(v)) for v in row.values()))
    console.print(shown)
    if result.lower_bound is not None:
        console.print(f"Lai-Robbins constant (asymptotic slope of regret against ln t): {result.lower_bound:.3f}")
    result.to_json(out / "result.json")
    notes = f"{experiment.title}\n\n" if experiment.title else ""
    bound = f"\nLai-Robbins constant: {result.lower_bound:.3f}\n" if result.lower_bound is not None else ""
    (out / "summary.md").write_text(notes + markdown(table) + bound)
    written = ["result.json", "summary.md"]
    plot = lambda path: result.plot(path, title=experiment.title or None)
    for name, write in (("curves.parquet", result.to_parquet), ("regret.png", plot)):
        try:
            write(out / name)
        except ImportError as error:
            console.print(f"[yellow]skipped {name}: {escape(str(error))}[/yellow]")
        else:
            written.append(name)
    console.print(escape(f"wrote {', '.join(written)} to {out}"))
    return result

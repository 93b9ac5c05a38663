"""The banditkit command line (typer + rich); heavy imports stay inside the commands."""

from __future__ import annotations

import typer

app = typer.Typer(name="banditkit", help="Multi-armed bandits from the algorithm to production.",
                  no_args_is_help=True, add_completion=False)


@app.callback()
def main() -> None:
    """banditkit: policies, simulator, offline evaluation and a decision service."""


# ---- bench ------------------------------------------------------------------------------------
@app.command()
def bench(rounds: int = typer.Option(50_000, help="select()+update() rounds per online measurement"),
          repeats: int = typer.Option(3, help="runs per figure; the median is reported")):
    """Measure the core's speed and memory on this machine and print a table."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from . import benchmark
    from .policies import _jit

    console = Console()
    with Progress(console=console, transient=True) as progress:
        online_task = progress.add_task("online loop, every policy", total=sum(
            not cls.contextual for cls in benchmark.REGISTRY.values()))
        online = benchmark.online_measures(rounds, repeats, lambda: progress.advance(online_task))
        progress.add_task("batch, propensities, memory, import", total=None)
        core = benchmark.core_measures(repeats)
    path = "numba kernels" if _jit.kernels() is not None else "numpy only (install banditkit[fast])"
    for title, measures in ((f"Online select()+update(), K=10, {rounds:,} rounds, median of {repeats} "
                             f"({path})", online), ("Batch, propensities, memory, import", core)):
        table = Table(title=title)
        for column in ("measure", "value", "unit", "target"):
            table.add_column(column, justify="right" if column != "measure" else "left")
        for measure in measures:
            table.add_row(measure.name, f"{measure.value:,.3g}" if measure.value < 100 else f"{measure.value:,.0f}",
                          measure.unit, measure.target)
        console.print(table)

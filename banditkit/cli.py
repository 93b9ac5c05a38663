"""The banditkit command line: one entry point over the library (typer + rich).

Each command keeps its heavy imports inside its function, so ``banditkit --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Multi-armed bandits from the algorithm to production.", no_args_is_help=True,
                  add_completion=False)


@app.callback()
def main() -> None:
    """banditkit: policies, simulator, offline evaluation and a decision service."""


# ---- simulate ----------------------------------------------------------------
@app.command()
def simulate(config: Path = typer.Argument(..., help="Experiment config (TOML), e.g. examples/bernoulli.toml."),
             out: Path = typer.Option(Path("simulation"), "--out", help="Directory for the results and the plot."),
             workers: int = typer.Option(None, "--workers", help="Threads (default: all cores); results do not change.")):
    """Simulate the config's policies on its environment: regret table, result.json, curves.parquet, regret.png."""
    from rich.console import Console

    from .errors import BanditkitError
    from .sim.config import load_config
    from .sim.report import simulate_to_directory

    console = Console()
    try:
        experiment = load_config(config)
    except BanditkitError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(code=2) from error
    simulate_to_directory(experiment, out, workers=workers, console=console)

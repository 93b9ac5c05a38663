"""The banditkit command line (typer + rich); heavy imports stay inside the commands."""

from __future__ import annotations

from pathlib import Path

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


# ---- simulate ---------------------------------------------------------------------------------
@app.command()
def simulate(config: Path = typer.Argument(..., help="Experiment config (TOML), e.g. examples/many_arms.toml."),
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


# ---- decision service: serve, demo ------------------------------------------------------------
@app.command()
def serve(
    store: str = typer.Option(None, help="sqlite:///path/to/file.db (default ./banditkit.db) or memory://"),
    host: str = typer.Option(None, help="address to bind (127.0.0.1 unless a token is configured)"),
    port: int = typer.Option(None, help="port (default 8000)"),
    experiments: Path = typer.Option(None, exists=True, dir_okay=False, help="TOML file of experiments to create"),
    log_level: str = typer.Option("info", help="uvicorn log level"),
) -> None:
    """Run the decision service (tokens from BANDITKIT_ADMIN_TOKEN and BANDITKIT_CLIENT_TOKENS)."""
    import uvicorn
    from rich.console import Console

    from .service import Settings, create_app

    overrides = {"store": store, "host": host, "port": port, "experiments_file": experiments}
    settings = Settings(**{key: value for key, value in overrides.items() if value is not None})
    console = Console(stderr=True)
    bind = settings.safe_host()
    if not settings.auth_enabled:
        console.print("[yellow]No token configured (BANDITKIT_ADMIN_TOKEN, BANDITKIT_CLIENT_TOKENS): "
                      f"the service is open to anyone who can reach it, so it binds {bind} only.[/]")
        if settings.host != bind:
            console.print(f"[yellow]--host {settings.host} ignored: set a token to serve other machines.[/]")
    console.print(f"banditkit decision service on http://{bind}:{settings.port} (store {settings.store}); "
                  f"API docs at http://{bind}:{settings.port}/docs")
    uvicorn.run(create_app(settings), host=bind, port=settings.port, log_level=log_level)


@app.command()
def demo(
    decisions: int = typer.Option(3000, min=100, max=200_000, help="simulated user visits"),
    out: Path = typer.Option(Path("banditkit-demo"), help="folder for the decision log and the summary"),
    seed: int = typer.Option(0, help="seed of the simulated users"),
    concurrency: int = typer.Option(16, min=1, max=256, help="users in flight at once"),
) -> None:
    """Serve an experiment on a temporary SQLite store and drive simulated users against it over HTTP."""
    from .service.demo import run_demo

    run_demo(decisions=decisions, out=out, seed=seed, concurrency=concurrency)


if __name__ == "__main__":
    app()

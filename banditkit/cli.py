"""The banditkit command line (typer + rich); heavy imports stay inside the commands.

A failure is one line on stderr, ``error: …``, naming the file, entry, field or URL at fault: exit code 2
for a usage error (bad input, a bad setting), 1 for anything else. ``banditkit --debug COMMAND`` shows the
traceback instead.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

#: Where the command line's own flags replace the Python keywords a library message suggests.
_FLAG_SPELLING = {
    "drop_unrewarded=True": "--drop-unrewarded",
    "experiment=NAME": "--experiment NAME",
    "model_rows": "--model-rows",
}
#: Width of a console that writes to a pipe or a file: wide enough that no table cell is cut or wrapped.
_PIPE_WIDTH = 10_000


class CommandError(Exception):
    """A failure a command explains in one line; ``code`` is the exit code (2: a usage error)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 2) -> NoReturn:
    """Stop the command with ``error: message`` on one line (see :class:`_Group`)."""
    raise CommandError(message, code)


def _print_error(message: str) -> None:
    """``error: message`` as one line on stderr; no markup is read in the message."""
    from rich.console import Console
    from rich.text import Text

    Console(stderr=True, soft_wrap=True, highlight=False).print(Text.assemble(("error:", "red"), " ", message))


def _console(*, stderr: bool = False):
    """A rich console that never wraps lines written to a pipe or a file.

    Tables then keep every character of every name and number.
    """
    from rich.console import Console

    terminal = Console(stderr=stderr)
    return terminal if terminal.is_terminal else Console(stderr=stderr, width=_PIPE_WIDTH)


def _hide_flag_types(params) -> None:
    """A flag takes no value: show no ``<bool>`` after it in the help."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


class _Group(TyperGroup):
    """The command group: any failure of a command ends in one ``error:`` line unless ``--debug`` is given."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        _hide_flag_types(params)
        return params

    def get_command(self, ctx, cmd_name):
        found = super().get_command(ctx, cmd_name)
        if found is not None:
            _hide_flag_types(found.get_params(ctx))
        return found

    def invoke(self, ctx):
        from .errors import BanditkitError

        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except typer.TyperException as error:  # the command line's own: exit code 2 is a usage error
            if error.exit_code != 2 or ctx.meta.get("banditkit.debug"):
                raise
            where = getattr(error, "ctx", None)
            _print_error(error.format_message() + (f" (see {where.command_path} --help)" if where else ""))
            raise typer.Exit(code=2) from None
        except Exception as error:
            if ctx.meta.get("banditkit.debug"):
                raise
            if isinstance(error, CommandError):
                message, code = str(error), error.code
            elif isinstance(error, BanditkitError):
                message, code = str(error), 2
            else:
                message, code = f"{type(error).__name__}: {error} (banditkit --debug … shows the traceback)", 1
            _print_error(message)
            raise typer.Exit(code=code) from None


app = typer.Typer(
    name="banditkit",
    help="Multi-armed bandits from the algorithm to production.",
    no_args_is_help=True,
    add_completion=False,
    cls=_Group,
)


def _show_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"banditkit {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of a failure instead of one line."),
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """banditkit: policies, simulator, offline evaluation and a decision service."""
    ctx.meta["banditkit.debug"] = debug


# ---- bench ------------------------------------------------------------------------------------
@app.command()
def bench(
    rounds: int = typer.Option(50_000, help="select()+update() rounds per online measurement"),
    repeats: int = typer.Option(3, help="runs per figure; the median is reported"),
):
    """Measure the core's speed, memory and time to a first decision on this machine and print tables."""
    from rich.progress import Progress
    from rich.table import Table

    from . import benchmark
    from .policies import _jit

    console = _console()
    with Progress(console=console, transient=True) as progress:
        online_task = progress.add_task(
            "online loop, every policy", total=sum(not cls.contextual for cls in benchmark.REGISTRY.values())
        )
        online = benchmark.online_measures(rounds, repeats, lambda: progress.advance(online_task))
        progress.add_task("batch, propensities, memory, import", total=None)
        core = benchmark.core_measures(repeats)
        progress.add_task("first decision, fresh interpreters", total=None)
        first = benchmark.first_decision_measures(repeats)
    path = "numba kernels" if _jit.kernels() is not None else "numpy only (install banditkit[fast])"
    for title, measures in (
        (f"Online select()+update(), K=10, {rounds:,} rounds, median of {repeats} ({path})", online),
        ("Batch, propensities, memory, import", core),
        (f"First decision, Thompson sampling, median of {repeats} fresh interpreters", first),
    ):
        table = Table(title=title)
        for column in ("measure", "value", "unit", "target"):
            table.add_column(column, justify="right" if column != "measure" else "left", overflow="fold")
        for measure in measures:
            table.add_row(
                measure.name,
                f"{measure.value:,.3g}" if measure.value < 100 else f"{measure.value:,.0f}",
                measure.unit,
                measure.target,
            )
        console.print(table)


# ---- simulate ---------------------------------------------------------------------------------
@app.command()
def simulate(
    config: Path = typer.Argument(..., help="Experiment config (TOML), e.g. examples/many_arms.toml."),
    out: Path = typer.Option(Path("simulation"), "--out", help="Directory for the results and the plot."),
    workers: int = typer.Option(None, "--workers", help="Threads (default: all cores); results do not change."),
):
    """Simulate the config's policies on its environment: regret table, result.json, curves.parquet, regret.png."""
    from .errors import BanditkitError
    from .sim.config import load_config
    from .sim.report import simulate_to_directory

    try:
        experiment = load_config(config)
    except BanditkitError as error:
        fail(f"{config}: {error}")
    simulate_to_directory(experiment, out, workers=workers, console=_console())


# ---- offline evaluation -----------------------------------------------------------------------
def _load_target(policy: str):
    """A Bandit JSON (to_json), a policy spec JSON, an .npy array of probabilities, or a registry name."""
    import json

    import numpy as np

    from . import Bandit
    from .errors import InvalidParameterError
    from .policies import make_policy

    path = Path(policy)
    if path.suffix == ".npy":
        return np.load(path)
    if path.suffix == ".json":
        if not path.exists():
            raise InvalidParameterError(f"policy file {policy!r} does not exist")
        data = json.loads(path.read_text())
        return Bandit.from_dict(data) if isinstance(data, dict) and "arms" in data else make_policy(data)
    return make_policy(policy)


def _load_model(path: Path):
    """A trained Bandit from a JSON file: its ``to_json``, or the service's ``GET …/model`` answer."""
    import json

    from . import Bandit
    from .errors import InvalidParameterError

    if not path.exists():
        raise InvalidParameterError(f"model file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InvalidParameterError(f"model file {str(path)!r} is not JSON: {error}") from None
    if isinstance(data, dict) and isinstance(data.get("model"), dict) and "experiment" in data:
        data = data["model"]
    if not isinstance(data, dict):
        raise InvalidParameterError(f"model file {str(path)!r} must hold a Bandit's JSON object")
    return Bandit.from_dict(data)


def _untrained(target) -> bool:
    """True for a policy (or a Bandit) that has learned nothing: evaluating it evaluates its prior."""
    from . import Bandit
    from .policies import Policy

    if isinstance(target, Policy):
        return True
    return isinstance(target, Bandit) and not any(arm.pulls for arm in target.stats())


def _candidates(policies: list[str]) -> dict[str, str] | None:
    """``NAME=SPEC`` values of --policy as candidates by name; None for one target given without a name."""
    import re

    if len(policies) == 1 and not _named(policies[0]):
        return None
    candidates: dict[str, str] = {}
    for value in policies:
        name, spec = value.split("=", 1) if _named(value) else (Path(value).stem, value)
        if name in candidates:
            fail(f"--policy names candidate {name!r} twice; give each a name, as NAME=SPEC")
        if not re.fullmatch(r"[\w.-]+", name):
            fail(f"--policy candidate name must be letters, digits, '.', '-' or '_', got {name!r}")
        candidates[name] = spec
    return candidates


def _load_candidate(name: str, spec: str):
    """:func:`_load_target` for a named candidate; its errors say which candidate."""
    from .errors import BanditkitError

    try:
        return _load_target(spec)
    except BanditkitError as error:
        raise type(error)(f"candidate {name!r}: {error}") from error


def _named(value: str) -> bool:
    """``NAME=SPEC``: a '=' that is not part of an existing path (a partition folder ``experiment=hero/``)."""
    return "=" in value and not Path(value).exists()


@app.command()
def evaluate(
    log: Path = typer.Argument(
        ..., help="Decision log: CSV, Parquet, or a folder of Parquet partitions (the service's export or archive)."
    ),
    policy: list[str] | None = typer.Option(
        None,
        "--policy",
        "-p",
        help="Target: a Bandit JSON, a policy JSON {name, params}, an .npy array of probabilities (n, K) or "
        "(n, K, L), or a policy name (untrained: its prior). Repeat as NAME=TARGET to compare candidates.",
    ),
    model: Path | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Target: a trained model, a Bandit JSON file (Bandit.to_json) or the answer of GET "
        "/v1/experiments/NAME/model.",
    ),
    estimators: str | None = typer.Option(
        None, "--estimators", "-e", help="Comma-separated estimators (default: all that apply)."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="A .json path: the report as JSON; any other path: a folder with report.json, report.png, report.html.",
    ),
    n_bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the folds, replay draws and bootstrap."),
    model_rows: int | None = typer.Option(
        None,
        "--model-rows",
        help="Fit DM/DR's reward model on the log's first N rows only (cross-fitted among them; later rows are "
        "predicted by the model of all N). Default: every row.",
    ),
    drop_unrewarded: bool = typer.Option(
        False, "--drop-unrewarded", help="Skip decisions whose reward has not arrived yet."
    ),
    experiment: str | None = typer.Option(None, "--experiment", help="Experiment to keep from a shared log."),
    engine: str = typer.Option(
        "local",
        "--engine",
        help="Where the sums run: 'local' (this process) or 'spark' (a Parquet log, summed in Spark; the same "
        "report; needs banditkit[spark]).",
    ),
    spark_master: str = typer.Option(
        "local[*]", "--spark-master", help="spark.master of --engine spark: local[2], spark://HOST:7077, yarn..."
    ),
) -> None:
    """Estimate a policy's value (or compare candidates) from a logged policy's decisions, with intervals."""
    import json

    from rich.markup import escape
    from rich.table import Table

    from .errors import BanditkitError
    from .ope import evaluate as run_evaluation
    from .ope import load_log

    if bool(policy) == (model is not None):
        fail("give the target as --policy or as --model (one of them)")
    if engine not in ("local", "spark"):
        fail(f"--engine must be 'local' or 'spark', got {engine!r}")
    out_console = _console()
    policies = policy or []
    candidates = _candidates(policies) if policies else None
    if engine == "spark" and candidates is not None:
        fail("--engine spark evaluates one target at a time; give one --policy (or --model) per run")
    if engine == "spark" and not (log.is_dir() or log.suffix.lower() in (".parquet", ".pq")):
        fail(f"--engine spark reads a Parquet file or folder, got {str(log)!r}")
    try:
        with out_console.status("Evaluating..."):
            names = None if estimators is None else [name.strip() for name in estimators.split(",") if name.strip()]
            if model is not None:
                target = _load_model(model)
            elif candidates is None:
                target = _load_target(policies[0])
            else:
                target = {name: _load_candidate(name, spec) for name, spec in candidates.items()}
            if engine == "spark":
                from .ope import spark

                report = spark.evaluate(
                    log,
                    target,
                    names,
                    spark=spark_master,
                    n_bootstrap=n_bootstrap,
                    rng=seed,
                    drop_unrewarded=drop_unrewarded,
                    experiment=experiment,
                    model_rows=model_rows,
                )
                n_rows = next(iter(report.estimates.values())).n_rows
            else:
                data = load_log(log, drop_unrewarded=drop_unrewarded, experiment=experiment)
                report = run_evaluation(data, target, names, n_bootstrap=n_bootstrap, rng=seed, model_rows=model_rows)
                n_rows = data.n_rows
    except (BanditkitError, OSError, ValueError) as error:
        message = str(error)
        for keyword, flag in _FLAG_SPELLING.items():
            message = message.replace(keyword, flag)
        fail(message)
    subject = (model or Path(policies[0])).name if candidates is None else ", ".join(candidates)
    table = Table(title=escape(f"Offline evaluation of {subject} on {log.name} ({n_rows} rows)"), title_justify="left")
    first = "position" if candidates is None else "candidate"
    columns = [first, "estimator", "value", "95% bootstrap", "95% normal"]
    columns += [] if candidates is None else ["vs logged"]
    columns += ["ESS", "max weight", "p < 1e-3"]
    for column in columns:
        table.add_column(column, justify="left" if column in (first, "estimator") else "right", overflow="fold")
    for row in report.rows():
        ratio = [] if candidates is None else [_ratio(row)]
        table.add_row(
            str(row[first]),
            row["estimator"],
            _number(row["value"]),
            f"[{_number(row['low'])}, {_number(row['high'])}]",
            f"[{_number(row['normal_low'])}, {_number(row['normal_high'])}]",
            *ratio,
            f"{row['ess']:.0f}",
            _number(row["max_weight"]),
            "-" if row["tiny_propensity_share"] is None else f"{row['tiny_propensity_share']:.2%}",
        )
    out_console.print(table)
    recommendation = getattr(report, "recommendation", None)
    if recommendation is not None:
        out_console.print(escape(recommendation))
    for warning in report.warnings:
        out_console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    targets = target if isinstance(target, dict) else {subject: target}
    untrained = [name for name, one in targets.items() if _untrained(one)]
    if untrained:
        out_console.print(
            escape(
                f"note: {', '.join(untrained)} {'has' if len(untrained) == 1 else 'have'} learned no rewards, so "
                "this evaluates a prior, which chooses uniformly at random for every built-in policy; to evaluate "
                "a trained model, pass its JSON with --model"
            )
        )
    if out is not None:
        _write_report(report, out, json.dumps(report.to_dict(), indent=2))
        out_console.print(escape(f"report written to {out}"))


def _write_report(report: Any, out: Path, text: str) -> None:
    """JSON to a .json path; else a folder with report.json, report.png (the plot) and report.html."""
    from .errors import BanditkitError

    if out.suffix == ".json":
        out.write_text(text)
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(text)
        report.plot(out / "report.png")
        report.to_html(out / "report.html")
    except (OSError, BanditkitError) as error:
        fail(f"--out {out}: {error}")


def _ratio(row: dict[str, Any]) -> str:
    """``x1.23 [1.1, 1.4]``: a candidate's value over the logged policy's."""
    if row["ratio"] is None:
        return "-"
    interval = "" if row["ratio_low"] is None else f" [{row['ratio_low']:.3g}, {row['ratio_high']:.3g}]"
    return f"x{row['ratio']:.3g}{interval}"


def _number(value) -> str:
    return "-" if value is None else f"{value:.5g}"


# ---- decision service: serve, demo ------------------------------------------------------------
@app.command()
def serve(
    store: str = typer.Option(
        None,
        help="sqlite:///path/to/file.db (default ./banditkit.db), memory://, "
        "redis://HOST:PORT/DB?prefix=NAME or redis+cluster://HOST:PORT",
    ),
    host: str = typer.Option(None, help="address to bind (127.0.0.1 unless a token is configured)"),
    port: int = typer.Option(None, help="port (default 8000)"),
    experiments: Path = typer.Option(None, exists=True, dir_okay=False, help="TOML file of experiments to create"),
    log_level: str = typer.Option("info", help="uvicorn log level"),
    workers: int = typer.Option(1, min=1, max=256, help="server processes (more than one needs a redis store)"),
    header_timeout: float = typer.Option(
        None, help="seconds a request's head may take to arrive (default 10; BANDITKIT_HEADER_TIMEOUT_S)"
    ),
    body_timeout: float = typer.Option(
        None, help="seconds a request's body may take to arrive after its head (default 30; BANDITKIT_BODY_TIMEOUT_S)"
    ),
    keep_alive_timeout: float = typer.Option(
        None, help="seconds an idle connection is kept after an answer (default 5; BANDITKIT_KEEP_ALIVE_TIMEOUT_S)"
    ),
    max_connections: int = typer.Option(
        None,
        help="open connections per process at most (default 90% of the open-file limit; BANDITKIT_MAX_CONNECTIONS)",
    ),
) -> None:
    """Run the decision service (tokens from BANDITKIT_ADMIN_TOKEN and BANDITKIT_CLIENT_TOKENS)."""
    from pydantic import ValidationError
    from rich.console import Console
    from rich.markup import escape

    from .errors import BanditkitError
    from .service import Settings
    from .service.declared import read_experiments
    from .service.runner import serve as run_service
    from .service.stores.redis_keys import RedisURLError, connect, is_redis_url

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    overrides: dict[str, Any] = {
        "store": store,
        "host": host,
        "port": port,
        "experiments_file": experiments,
        "header_timeout_s": header_timeout,
        "body_timeout_s": body_timeout,
        "keep_alive_timeout_s": keep_alive_timeout,
        "max_connections": max_connections,
    }
    try:
        settings = Settings(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as error:
        fail(_setting_problem(error, given={key for key, value in overrides.items() if value is not None}))
    shared = is_redis_url(settings.store)
    if workers > 1 and not shared:
        fail(
            f"--workers {workers} needs a shared store (redis://HOST:PORT/DB, see docs/scale-out.md): "
            f"{settings.store} belongs to one process"
        )
    if shared:
        try:  # fail here, in one line, rather than in every worker's start-up
            client, _ = connect(settings.store)
            client.close()
        except RedisURLError as error:
            fail(str(error))
    elif settings.store.startswith("sqlite:///"):
        _check_sqlite(settings.store)
    if settings.experiments_file is not None:
        try:  # the same check the start-up runs, before the banner rather than in a failed start-up
            read_experiments(settings.experiments_file)
        except BanditkitError as error:
            fail(str(error))
    bind = settings.safe_host()
    if not settings.auth_enabled:
        console.print(
            "[yellow]No token configured (BANDITKIT_ADMIN_TOKEN, BANDITKIT_CLIENT_TOKENS): the service is open to "
            f"anyone who can reach it, so it binds {bind} only, which other machines and a container's published "
            "port cannot reach. To serve them, set a token and --host 0.0.0.0 (BANDITKIT_HOST).[/]"
        )
        if settings.host != bind:
            console.print(f"[yellow]--host {escape(settings.host)} ignored: set a token to serve other machines.[/]")
    console.print(
        escape(
            f"banditkit decision service on http://{bind}:{settings.port} (store {settings.store}"
            f"{f', {workers} workers' if workers > 1 else ''}); dashboard at http://{bind}:{settings.port}/, "
            f"API docs at http://{bind}:{settings.port}/docs"
        )
    )
    run_service(settings, workers=workers, log_level=log_level)


@app.command()
def watch(
    url: str = typer.Argument(..., help="Base URL of the decision service, e.g. http://127.0.0.1:8000."),
    interval: float = typer.Option(300.0, "--interval", min=0.01, help="Seconds between two checks."),
    token: str = typer.Option(
        None, "--token", envvar="BANDITKIT_ADMIN_TOKEN", help="Admin token of the service (BANDITKIT_ADMIN_TOKEN)."
    ),
    once: bool = typer.Option(False, "--once", help="Check every experiment once and exit."),
) -> None:
    """Run the supervisor's checks from outside: alerts and remediations through the admin API.

    Each alert written prints one line. A service that does not answer is retried at the next check (with
    --once, the command fails).
    """
    import time
    from urllib.parse import urlsplit

    import httpx

    from .service.watch import Watcher, WatchError

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        fail(f"URL must be http://HOST:PORT or https://HOST:PORT, got {url!r}")
    console = _console()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=30.0) as client:
        watcher = Watcher(client, interval)
        while True:
            try:
                for event in watcher.check_all():
                    console.print(_alert_line(event), markup=False)
            except (httpx.HTTPError, WatchError) as error:
                if once:
                    fail(f"{url}: {error}")
                console.print(f"{url}: {error}; next check in {interval:g} s", markup=False)
            if once:
                return
            time.sleep(interval)


def _alert_line(event: dict) -> str:
    """One line for an alert event: experiment, kind, arm, state, remediation and what was found."""
    where = f" arm {event['arm']}" if event.get("arm") else ""
    action = f" -> {event['remediation']} {event['disabled']}" if event["state"] == "open" else ""
    detail = f": {event['detail']}" if event.get("detail") else ""
    return f"{event['experiment']}: {event['alert']}{where} {event['state']}{action}{detail}"


def _setting_problem(error, given: set[str]) -> str:
    """One line from a settings ValidationError: the setting, where its value came from, and what is wrong."""
    import os

    problem = error.errors()[0]
    field = ".".join(map(str, problem["loc"]))
    message = problem["msg"].removeprefix("Value error, ")
    if not field or message.startswith(field):
        return message
    variable = f"BANDITKIT_{field.upper()}"
    if field not in given and variable in os.environ:
        return f"{variable}={os.environ[variable]!r}: {message}"
    return f"{field}: {message}, got {problem['input']!r}"


def _check_sqlite(url: str) -> None:
    """Open the SQLite file of ``url`` once, so that a path that cannot hold a database fails here, named."""
    import sqlite3

    path = Path(url.removeprefix("sqlite:///"))
    if not path.parent.is_dir():
        fail(f"store {url}: the folder {str(path.parent)!r} of {str(path)!r} does not exist")
    try:
        with contextlib.closing(sqlite3.connect(path)) as connection:
            connection.execute("PRAGMA schema_version")
    except sqlite3.Error as error:
        fail(f"store {url}: {error}: {str(path)!r}")


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


# ---- the Redis learning loop: learn, archive --------------------------------------------------
_REDIS_STORE = "redis://HOST:PORT/DB?prefix=NAME or redis+cluster://HOST:PORT"


def _learner(store: str, **options):
    """A learner on ``store``; a malformed or unreachable URL exits 2 with one line naming it."""
    from .service.learner import Learner
    from .service.stores.redis_keys import RedisURLError

    try:
        return Learner.from_url(store, **options)
    except RedisURLError as error:
        fail(str(error))


def _summary(total) -> str:
    return (
        f"learned {total.applied:,} rewards in {total.batches:,} model updates; claimed {total.defaulted:,} "
        f"default rewards; acknowledged {total.acknowledged:,} already learned; skipped {total.skipped:,}; "
        f"archived {total.archived:,} decisions"
    )


@app.command()
def learn(
    store: str = typer.Option(..., "--store", help=_REDIS_STORE),
    every: float | None = typer.Option(
        None, "--every", min=0.0, help="batch updates: one pass every SECONDS (default: streaming)"
    ),
    once: bool = typer.Option(False, "--once", help="learn everything due now (windows closed included), then exit"),
    archive: Path | None = typer.Option(
        None, "--archive", file_okay=False, help="also archive old decisions to Parquet partitions in this folder"
    ),
    retention: float = typer.Option(
        3600.0, "--retention", min=0.0, help="seconds a decision stays in Redis after its attribution window closes"
    ),
    learner_id: str | None = typer.Option(None, "--id", help="consumer and lease name (default host-pid-random)"),
) -> None:
    """Learn the rewards the serving workers accepted (Redis store).

    One atomic model update per batch, default rewards when attribution windows close, one lease per experiment.
    """
    import logging
    import signal
    import threading
    import time

    from redis.exceptions import RedisError

    from .service.learner import LeaseLost

    if every is not None and once:
        fail("--every and --once exclude each other")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("banditkit.learner")
    learner = _learner(store, learner_id=learner_id, archive_dir=archive, retention_s=retention)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    shown = [time.monotonic()]

    def progress(report) -> None:
        if report.busy and time.monotonic() - shown[0] >= 10:
            shown[0] = time.monotonic()
            log.info("%s", _summary(report))

    try:
        if once:
            total = learner.run(once=True, stop=stop)
        else:
            log.info(
                "learning from %s as %s (%s)",
                store,
                learner.learner_id,
                "streaming" if every is None else f"a pass every {every:g} s",
            )
            total = learner.run(every=every, stop=stop, on_pass=progress)
    except KeyboardInterrupt:
        return
    except (LeaseLost, RedisError, OSError) as error:
        fail(str(error), code=1)
    finally:
        learner.close()
    typer.echo(_summary(total), err=True)


@app.command("archive")
def archive_command(
    store: str = typer.Option(..., "--store", help=_REDIS_STORE),
    out: Path = typer.Option(..., "--out", file_okay=False, help="folder of the Parquet partitions"),
    retention: float = typer.Option(
        3600.0, "--retention", min=0.0, help="seconds a decision stays in Redis after its attribution window closes"
    ),
) -> None:
    """Archive decisions older than their attribution window plus --retention (one pass).

    They are written as Parquet partitions OUT/experiment=E/date=YYYY-MM-DD/part-*.parquet for
    `banditkit evaluate OUT`, then removed from Redis.
    """
    from redis.exceptions import RedisError
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

    from .service.learner import LeaseLost

    console = Console(stderr=True)
    learner = _learner(store, archive_dir=out, retention_s=retention)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,} decisions"),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
            tasks: dict[str, TaskID] = {}

            def advance(name: str, rows: int) -> None:
                if name not in tasks:
                    tasks[name] = progress.add_task(f"archiving {name}", total=None)
                progress.advance(tasks[name], rows)

            total = learner.archive_pass(on_archived=advance)
    except (LeaseLost, RedisError, OSError) as error:
        fail(str(error), code=1)
    finally:
        learner.close()
    typer.echo(
        f"archived {total.archived:,} decisions to {out} (claimed {total.defaulted:,} default rewards)", err=True
    )


if __name__ == "__main__":
    app()

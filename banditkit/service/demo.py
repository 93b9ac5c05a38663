"""``banditkit demo``: a served experiment, simulated users and delayed clicks, over real HTTP.

Five banner colours with hidden click rates are served by Thompson sampling
from a temporary SQLite store. Simulated users arrive, get a colour through
``POST .../decisions``, and click with the colour's rate. After a random delay
the outcome is reported through ``POST .../rewards``: 1 for a click, 0 when
the session ends without one. Some sessions end silently; the default reward
0 settles them when the attribution window closes. Reporting the zeros as
soon as they are known matters: if good news came at once and bad news only
with the window, the arms served most recently would look better than they
are, and the policy would chase them. At the end the decision log is exported
(with propensities, ready for offline evaluation) and the per-arm outcome is
compared with the best arm in hindsight.
"""

from __future__ import annotations

import heapq
import json
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import Settings
from .runner import ServiceProcess

ARMS = ("red", "green", "blue", "yellow", "purple")
CLICK_RATES = (0.10, 0.14, 0.22, 0.08, 0.17)
WINDOW_S = 0.5
MEAN_DELAY_S = 0.1
SILENT_SHARE = 0.1  # sessions without a click that end without saying so: the window settles them
USERS = 2000


@dataclass(frozen=True)
class ArmSummary:
    arm: str
    click_rate: float
    pulls: int
    last_share: float  # share of the last fifth of the decisions: where the policy has settled
    mean_reward: float
    propensity_low: float
    propensity_high: float


def _drive(base_url: str, decisions: int, seed: int, concurrency: int, progress) -> dict:
    """Users in ``concurrency`` threads (one keep-alive connection each); outcomes posted when they fall due."""
    import httpx

    rng = np.random.default_rng(seed)
    rates = dict(zip(ARMS, CLICK_RATES, strict=True))
    users = [f"user-{i}" for i in rng.integers(0, USERS, decisions)]
    uniforms, delays = rng.random(decisions), rng.exponential(MEAN_DELAY_S, decisions)
    silent = rng.random(decisions) < SILENT_SHARE
    counters = {"decisions": 0, "clicks": 0, "late_clicks": 0}
    due: list[tuple[float, str, float]] = []  # heap of (time the outcome arrives, decision id, reward)
    lock, users_done = threading.Lock(), threading.Event()
    url = f"{base_url}/v1/experiments/demo"

    def visitor(worker: int) -> None:
        with httpx.Client(timeout=30.0) as client:
            for visit in range(worker, decisions, concurrency):
                response = client.post(f"{url}/decisions", json={"unit": users[visit]})
                response.raise_for_status()
                answer = response.json()
                with lock:
                    counters["decisions"] += 1
                    clicked = uniforms[visit] < rates[answer["arm"]]
                    counters["clicks"] += clicked
                    if clicked or not silent[visit]:
                        heapq.heappush(due, (time.monotonic() + delays[visit], answer["decision_id"], float(clicked)))
                progress(counters)

    def reporter() -> None:
        """Posts the outcomes that fell due, as one ``rewards/batch`` call, the way a beacon collector would."""
        with httpx.Client(timeout=30.0) as client:
            while True:
                with lock:
                    now = time.monotonic()
                    ready: list[tuple[float, str, float]] = []
                    while due and due[0][0] <= now and len(ready) < 1000:
                        ready.append(heapq.heappop(due))
                    finished = users_done.is_set() and not due
                if not ready:
                    if finished:
                        return
                    time.sleep(0.005)
                    continue
                response = client.post(
                    f"{url}/rewards/batch",
                    json={"rewards": [{"decision_id": decision_id, "value": value} for _, decision_id, value in ready]},
                )
                response.raise_for_status()
                results = response.json()["results"]
                if any(result["status"] not in (200, 410) for result in results):
                    raise RuntimeError(f"a reward was refused: {results}")
                with lock:  # 410: later than the attribution window, already settled as no click
                    counters["late_clicks"] += sum(
                        result["status"] == 410 and value == 1.0
                        for result, (_, _, value) in zip(results, ready, strict=True)
                    )

    reporters = [threading.Thread(target=reporter) for _ in range(2)]
    visitors = [threading.Thread(target=visitor, args=(worker,)) for worker in range(concurrency)]
    for thread in reporters + visitors:
        thread.start()
    for thread in visitors:
        thread.join()
    users_done.set()
    for thread in reporters:
        thread.join()
    return counters


def _wait_until_settled(client, base_url: str, decisions: int, timeout_s: float) -> dict:
    """Poll the stats until every decision has a reward (clicks, or the default 0 after the window)."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats = client.get(f"{base_url}/v1/experiments/demo/stats").json()
        if stats["rewards"] >= decisions or time.monotonic() > deadline:
            return stats
        time.sleep(0.2)


def summarize(rows: list[dict]) -> tuple[list[ArmSummary], float]:
    """Per-arm summary of the log rows, and the expected regret against the best arm."""
    rates = dict(zip(ARMS, CLICK_RATES, strict=True))
    best = max(CLICK_RATES)
    summaries = []
    last = rows[-max(len(rows) // 5, 1) :]
    for arm in ARMS:
        mine = [row for row in rows if row["arm"] == arm]
        rewards = [row["reward"] for row in mine if row["reward"] is not None]
        propensities = [row["propensity"] for row in mine]
        last_share = sum(row["arm"] == arm for row in last) / len(last)
        summaries.append(
            ArmSummary(
                arm,
                rates[arm],
                len(mine),
                last_share,
                float(np.mean(rewards)) if rewards else float("nan"),
                min(propensities, default=float("nan")),
                max(propensities, default=float("nan")),
            )
        )
    regret = float(sum(best - rates[row["arm"]] for row in rows))
    return summaries, regret


def run_demo(
    decisions: int = 3000,
    out: Path = Path("banditkit-demo"),
    seed: int = 0,
    concurrency: int = 16,
    window_s: float = WINDOW_S,
) -> tuple[list[ArmSummary], float]:
    """Run the whole demo, print the table, write the log and a summary under ``out``.

    The service runs in a child process (as it would in production), so the
    simulated users and the server each have their own interpreter.
    """
    import httpx
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    console = Console()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="banditkit-demo-") as folder:
        settings = Settings(
            store=f"sqlite:///{folder}/demo.db", port=0, sweep_interval_s=0.1, admin_token=None, client_tokens=()
        )
        with ServiceProcess(settings) as server, httpx.Client(timeout=30.0) as client:
            base_url = server.base_url
            client.post(
                f"{base_url}/v1/experiments",
                json={
                    "name": "demo",
                    "arms": list(ARMS),
                    "policy": {"name": "thompson", "params": {}},
                    "attribution_window_s": window_s,
                    "default_reward": 0.0,
                    "seed": seed,
                },
            ).raise_for_status()
            console.print(
                f"Serving experiment [bold]demo[/] at {base_url} on a temporary SQLite store; "
                f"{decisions} simulated users; a click or the end of a session without one "
                f"reported after ~{MEAN_DELAY_S} s; {SILENT_SHARE:.0%} of sessions end silently "
                f"and get the default reward 0 after {window_s:g} s."
            )
            started = time.perf_counter()
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[clicks]} clicks"),
                TimeElapsedColumn(),
                console=console,
            ) as bar:
                task = bar.add_task("decisions", total=decisions, clicks=0)
                counters = _drive(
                    base_url,
                    decisions,
                    seed,
                    concurrency,
                    lambda c: bar.update(task, completed=c["decisions"], clicks=c["clicks"]),
                )
            elapsed = time.perf_counter() - started
            with console.status("waiting for the attribution windows to close"):
                stats = _wait_until_settled(client, base_url, decisions, window_s + 10.0)
            log_path = out / "decisions.csv"
            log_path.write_bytes(client.get(f"{base_url}/v1/experiments/demo/log", params={"format": "csv"}).content)
            parquet = client.get(f"{base_url}/v1/experiments/demo/log", params={"format": "parquet"})
            if parquet.status_code == 200:
                (out / "decisions.parquet").write_bytes(parquet.content)
    rows = _read_csv(log_path)
    summaries, regret = summarize(rows)
    table = Table(title=f"{decisions} decisions in {elapsed:.1f} s ({decisions / elapsed:.0f}/s over HTTP)")
    for column in ("arm", "click rate", "pulls", "share", "last 20%", "mean reward", "propensities"):
        table.add_column(column, justify="left" if column == "arm" else "right")
    for s in summaries:
        table.add_row(
            s.arm,
            f"{s.click_rate:.2f}",
            str(s.pulls),
            f"{s.pulls / len(rows):.1%}",
            f"{s.last_share:.1%}",
            f"{s.mean_reward:.3f}",
            f"{s.propensity_low:.2g}–{s.propensity_high:.2g}",  # noqa: RUF001 - a range, with its en dash
        )
    console.print(table)
    uniform = len(rows) * (max(CLICK_RATES) - float(np.mean(CLICK_RATES)))
    console.print(
        f"Expected regret against always serving the best arm: [bold]{regret:.1f}[/] clicks "
        f"(uniform random would lose {uniform:.1f}); clicks {counters['clicks']} "
        f"({counters['late_clicks']} after the window, refused with 410), "
        f"rewards recorded {stats['rewards']} of {stats['decisions']}, policy version "
        f"{stats['policy_version']}."
    )
    summary = {
        "decisions": len(rows),
        "elapsed_s": elapsed,
        "regret": regret,
        "uniform_regret": uniform,
        "arms": [s.__dict__ for s in summaries],
        "stats": stats,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    console.print(
        f"Decision log: [bold]{log_path}[/] (and decisions.parquet) — columns decision_id, time, "
        "experiment, unit, context, arm, propensity, probabilities, policy_version, fallback, reward."
    )
    return summaries, regret


def _read_csv(path: Path) -> list[dict]:
    import csv

    with path.open() as handle:
        return [
            {**row, "propensity": float(row["propensity"]), "reward": float(row["reward"]) if row["reward"] else None}
            for row in csv.DictReader(handle)
        ]

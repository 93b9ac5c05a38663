"""The dashboard with a long log: an experiment page's server time with 1M logged decisions, and its weight.

    python benchmarks/bench_dashboard.py [--decisions 1000000] [--days 7]

Writes ``--decisions`` decisions of one experiment (3 arms, spread over ``--days`` days) into an SQLite file
through the store's API, then starts ``banditkit serve`` on it and loads ``/experiments/hero``: the first load
(templates compiled, the file's pages read cold by the new process) and the median of 20 loads after it, each
as the server's own ``Server-Timing`` and as the time the client waited. The page's weight is its HTML and
every asset it loads (uncompressed). For comparison, the allocation read from the log itself (what a store
without kept counts does, :meth:`Store.decision_counts`), and the cost the kept counts add to logging
decisions one commit at a time (twelve alternated runs with and without them: fastest and median).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import numpy as np

from banditkit.service import Settings
from banditkit.service.engine import Engine, new_decision_id
from banditkit.service.runner import ServiceProcess
from banditkit.service.schemas import ExperimentCreate
from banditkit.service.stores import DecisionRecord, SQLiteStore, Store, sqlite
from banditkit.service.stores.base import Probabilities

ARMS = ["control", "green", "blue"]


def fill(path: Path, decisions: int, days: float) -> float:
    """Create 'hero' and log ``decisions`` decisions over the last ``days`` days, 20,000 per commit; seconds."""
    store = SQLiteStore(path, synchronous="OFF")
    asyncio.run(Engine(store, refresh_s=0).create(ExperimentCreate(name="hero", arms=ARMS)))
    rng = np.random.default_rng(0)
    probabilities = Probabilities(dict(zip(ARMS, (0.2, 0.5, 0.3), strict=True)))
    start = time.time() - days * 86_400
    started = time.perf_counter()
    for first in range(0, decisions, 20_000):
        n = min(20_000, decisions - first)
        times = start + (first + np.arange(n)) * (days * 86_400 / decisions)
        arms = rng.choice(len(ARMS), size=n, p=[0.2, 0.5, 0.3])
        rows = [
            DecisionRecord(new_decision_id(), t, "hero", None, None, ARMS[a], 0.5, probabilities, 1, False)
            for t, a in zip(times.tolist(), arms.tolist(), strict=True)
        ]
        store.append_decisions(rows).result()
    store.close()
    return time.perf_counter() - started


def page_loads(base_url: str, loads: int = 20) -> tuple[list[tuple[float, float]], int, str]:
    """(server ms, client ms) of the first and ``loads`` more loads of the page, its status and HTML."""
    timings = []
    with httpx.Client(base_url=base_url, timeout=60) as http:
        for _ in range(loads + 1):
            started = time.perf_counter()
            response = http.get("/experiments/hero")
            waited = 1e3 * (time.perf_counter() - started)
            server = float(re.search(r"dur=([0-9.]+)", response.headers["server-timing"])[1])  # type: ignore[index]
            timings.append((server, waited))
    return timings, response.status_code, response.text


def page_weight(base_url: str, html: str) -> dict[str, int]:
    """Bytes of the page and of each script, stylesheet and icon it loads."""
    sizes = {"HTML": len(html.encode())}
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        sizes[asset] = len(httpx.get(base_url + asset).content)
    return sizes


def log_appends(folder: Path, counted: bool, appends: int = 2000, round_: int = 0) -> float:
    """Microseconds per decision logged in its own commit (synchronous=OFF: the CPU, not the disk)."""
    kept = sqlite._bucket_counts
    if not counted:  # the same store without the per-bucket counts: the cost they add
        sqlite._bucket_counts = lambda rows: []  # type: ignore[assignment]
    try:
        store = SQLiteStore(folder / f"appends-{counted}-{round_}.db", synchronous="OFF")
        probabilities = Probabilities(dict.fromkeys(ARMS, 1 / 3))
        started = time.perf_counter()
        for i in range(appends):
            row = DecisionRecord(
                new_decision_id(), time.time(), "x", None, None, ARMS[i % 3], 1 / 3, probabilities, 1, False
            )
            store.append_decisions([row]).result()
        took = time.perf_counter() - started
        store.close()
    finally:
        sqlite._bucket_counts = kept
    return 1e6 * took / appends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=7.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "dashboard.db"
        seconds = fill(path, args.decisions, args.days)
        print(f"logged {args.decisions:,} decisions over {args.days:g} days in {seconds:.1f} s")
        settings = Settings(store=f"sqlite:///{path}", port=0, admin_token=None, client_tokens=(), spool_dir=folder)
        with ServiceProcess(settings) as process:
            timings, status, html = page_loads(process.base_url)
            weight = page_weight(process.base_url, html)
        assert status == 200, status
        store = SQLiteStore(path)
        started = time.perf_counter()
        from_log = Store.decision_counts(store, "hero", 3600)
        log_ms = 1e3 * (time.perf_counter() - started)
        assert from_log.counts.sum() == args.decisions
        store.close()
        # Twelve alternated runs each: the machine's other load moves single runs by half.
        rounds = [(log_appends(folder, True, 2000, r), log_appends(folder, False, 2000, r)) for r in range(12)]
        with_counts, without = [r[0] for r in rounds], [r[1] for r in rounds]

    first, rest = timings[0], timings[1:]
    print(f"\n/experiments/hero with {args.decisions:,} logged decisions (SQLite store)")
    print(f"{'load':<30}{'server ms':>12}{'client ms':>12}")
    print(f"{'first (a new process)':<30}{first[0]:>12.1f}{first[1]:>12.1f}")
    print(
        f"{'steady (median of 20)':<30}{statistics.median(s for s, _ in rest):>12.1f}"
        f"{statistics.median(c for _, c in rest):>12.1f}"
    )
    print(f"{'allocation read from the log':<30}{log_ms:>12.1f}")
    print(f"\npage weight{'':<19}{'KB':>12}")
    for name, size in weight.items():
        print(f"{name:<30}{size / 1024:>12.1f}")
    print(f"{'total':<30}{sum(weight.values()) / 1024:>12.1f}")
    print("\nlogging one decision per commit (synchronous=OFF), us per decision")
    print(f"{'':<30}{'fastest':>12}{'median':>12}")
    for label, runs in (("with the kept counts", with_counts), ("without", without)):
        print(f"{label:<30}{min(runs):>12.0f}{statistics.median(runs):>12.0f}")


if __name__ == "__main__":
    main()

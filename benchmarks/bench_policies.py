"""Foundation benchmarks: online decisions/s per policy, batch selection, propensities, memory, import time.

Run: python benchmarks/bench_policies.py [--rounds 50000] [--repeats 3]
Each online figure is the median of ``repeats`` runs of ``rounds`` select()+update()
steps through the public API on K=10 Bernoulli arms (rewards from a fixed stream).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import tracemalloc

import numpy as np
from rich.console import Console
from rich.table import Table

import banditkit as bk

MEANS = np.linspace(0.1, 0.55, 10)
TARGETS = {"thompson": 100_000, "ucb1": 200_000}


def online_rate(policy: str, rounds: int) -> float:
    """Decisions per second of select() then update() through the Bandit."""
    bandit = bk.Bandit([f"arm{i}" for i in range(10)], policy=policy, seed=0)
    uniforms = np.random.default_rng(1).random(rounds).tolist()
    means = MEANS.tolist()
    bandit.update(bandit.select(), 0.0)  # compile / warm caches outside the timing
    start = time.perf_counter()
    for u in uniforms:
        decision = bandit.select()
        bandit.update(decision, 1.0 if u < means[decision.arm_index] else 0.0)
    return rounds / (time.perf_counter() - start)


def select_many_rate(n: int) -> float:
    bandit = bk.Bandit([f"arm{i}" for i in range(10)], policy="thompson", seed=0)
    rng = np.random.default_rng(2)
    arms = rng.integers(0, 10, 5000)
    bandit.update_many(arms, (rng.random(5000) < MEANS[arms]).astype(float))
    bandit.select_many(1000)
    start = time.perf_counter()
    batch = bandit.select_many(n)
    batch.propensities  # included: every row knows its propensity
    return n / (time.perf_counter() - start)


def propensity_seconds(policy: str, calls: int = 50) -> float:
    """Time of one exact action distribution (K=10) from a fresh state each call."""
    bandit = bk.Bandit([f"arm{i}" for i in range(10)], policy=policy, seed=0)
    rng = np.random.default_rng(3)
    arms = rng.integers(0, 10, 2000)
    bandit.update_many(arms, (rng.random(2000) < MEANS[arms]).astype(float))
    times = []
    for i in range(calls):
        bandit.update("arm0", float(i % 2))  # a new state, so nothing is cached
        start = time.perf_counter()
        bandit.probabilities()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory_mib(n_arms: int = 1000, updates: int = 1_000_000, chunk: int = 100_000) -> tuple[float, float]:
    """Peak traced memory while a 1,000-arm bandit absorbs a million rewards, and its final JSON size."""
    rng = np.random.default_rng(4)
    tracemalloc.start()
    bandit = bk.Bandit([f"arm{i}" for i in range(n_arms)], policy="thompson", seed=0)
    for _ in range(updates // chunk):
        arms = rng.integers(0, n_arms, chunk)
        bandit.update_many(arms, (rng.random(chunk) < 0.1).astype(float))
    bandit.select()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20, len(bandit.to_json()) / 2**20


def import_seconds() -> float:
    code = "import time; t = time.perf_counter(); import banditkit; print(time.perf_counter() - t)"
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
            for _ in range(5)]
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from banditkit.policies import _jit

    console = Console()
    compiled = "numba" if _jit.kernels() is not None else "numpy only"
    table = Table(title=f"Online select()+update(), K=10, {args.rounds:,} rounds, median of {args.repeats} ({compiled})")
    for column in ("policy", "decisions/s", "target"):
        table.add_column(column, justify="right")
    for policy in bk.REGISTRY:
        if bk.REGISTRY[policy].contextual:
            continue
        rate = statistics.median(online_rate(policy, args.rounds) for _ in range(args.repeats))
        target = TARGETS.get(policy)
        table.add_row(policy, f"{rate:,.0f}", "-" if target is None else f">= {target:,}")
    console.print(table)

    other = Table(title="Batch, propensities, memory, import")
    other.add_column("measure")
    other.add_column("value", justify="right")
    other.add_column("target", justify="right")
    rate = statistics.median(select_many_rate(1_000_000) for _ in range(args.repeats))
    other.add_row("select_many(1,000,000), Thompson, K=10 (with propensities)", f"{rate:,.0f} decisions/s",
                  ">= 2,000,000/s")
    for policy in ("thompson", "gaussian_thompson"):
        other.add_row(f"exact propensity by integration, {policy}, K=10",
                      f"{propensity_seconds(policy) * 1e3:.2f} ms/call", "-")
    peak, size = peak_memory_mib()
    other.add_row("peak memory, 1,000 arms, 1,000,000 updates (update_many, 100k chunks)", f"{peak:.1f} MiB", "-")
    other.add_row("size of that bandit's JSON afterwards", f"{size:.2f} MiB", "-")
    other.add_row("import banditkit (median of 5 processes)", f"{import_seconds():.3f} s", "< 0.3 s")
    console.print(other)


if __name__ == "__main__":
    main()

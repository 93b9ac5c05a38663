"""Speed and memory of the core, measured through the public API (``banditkit bench``).

Every online figure is select() then update() one at a time on K=10
Bernoulli arms with rewards from a fixed stream, on the compiled kernels a long
run ends up on; batch figures include each row's propensity. First-decision
figures come from fresh interpreters, with numba's on-disk cache empty (a new
user's first run) and filled (every later run). Timings are medians over
repeated runs.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bandit import Bandit
from .policies import REGISTRY, _jit

MEANS = np.linspace(0.1, 0.55, 10)
ONLINE_TARGETS = {"thompson": 100_000, "ucb1": 200_000}


@dataclass(frozen=True)
class Measure:
    """One benchmark line: what was measured, the figure, its unit and the target if any."""

    name: str
    value: float
    unit: str
    target: str = "-"


def _arms(n: int) -> list[str]:
    return [f"arm{i}" for i in range(n)]


def online_rate(policy: str, rounds: int) -> float:
    """Decisions per second of select() then update() through the Bandit."""
    _jit.load()  # the steady state: a long run loads the compiled kernels once they pay for themselves
    bandit = Bandit(_arms(10), policy=policy, seed=0)
    uniforms = np.random.default_rng(1).random(rounds).tolist()
    means = MEANS.tolist()
    bandit.update(bandit.select(), 0.0)  # load this policy's kernel and warm caches outside the timing
    start = time.perf_counter()
    for u in uniforms:
        decision = bandit.select()
        bandit.update(decision, 1.0 if u < means[decision.arm_index] else 0.0)
    return rounds / (time.perf_counter() - start)


def select_many_rate(n: int) -> float:
    """Thompson sampling decisions per second of one select_many(n), propensities included."""
    bandit = Bandit(_arms(10), policy="thompson", seed=0)
    rng = np.random.default_rng(2)
    arms = rng.integers(0, 10, 5000)
    bandit.update_many(arms, (rng.random(5000) < MEANS[arms]).astype(float))
    bandit.select_many(1000)
    start = time.perf_counter()
    _ = bandit.select_many(n).propensities  # computed lazily: reading it is the cost measured
    return n / (time.perf_counter() - start)


def propensity_seconds(policy: str, calls: int = 30) -> float:
    """Median time of one exact action distribution (K=10), from a new state each call."""
    bandit = Bandit(_arms(10), policy=policy, seed=0)
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
    """Peak traced memory while a 1,000-arm bandit absorbs a million rewards, and its JSON size (MiB)."""
    rng = np.random.default_rng(4)
    tracemalloc.start()
    bandit = Bandit(_arms(n_arms), policy="thompson", seed=0)
    for _ in range(updates // chunk):
        arms = rng.integers(0, n_arms, chunk)
        bandit.update_many(arms, (rng.random(chunk) < 0.1).astype(float))
    bandit.select()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20, len(bandit.to_json()) / 2**20


def import_seconds(runs: int = 5) -> float:
    """Median wall time of ``import banditkit`` in a fresh interpreter."""
    code = "import time; t = time.perf_counter(); import banditkit; print(time.perf_counter() - t)"
    return statistics.median(
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        for _ in range(runs)
    )


FIRST_DECISION = """
import time
start = time.perf_counter()
import banditkit
bandit = banditkit.Bandit(["red", "green", "blue"], policy="thompson", seed=0)
bandit.update(bandit.select(), 1.0)
first = time.perf_counter() - start
from banditkit.policies import _jit
start = time.perf_counter()
_jit.load()
bandit.update(bandit.select(), 1.0)
print(first, time.perf_counter() - start)
"""


def first_decision_seconds(cache_dir: Path) -> tuple[float, float]:
    """Seconds to a first decision, then to the compiled kernels, in a fresh interpreter.

    The first figure is import, Bandit, select and update; the second loads the compiled kernels and makes a
    compiled decision. numba's cache is in ``cache_dir``.
    """
    here = str(Path(__file__).parent.parent)  # this banditkit, whatever the working directory
    environment = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(cache_dir),
        "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])),
    }
    environment.pop("BANDITKIT_DISABLE_JIT", None)
    output = subprocess.run(
        [sys.executable, "-c", FIRST_DECISION], capture_output=True, text=True, check=True, env=environment
    ).stdout.split()
    return float(output[0]), float(output[1])


def first_decision_measures(repeats: int) -> list[Measure]:
    """Time to a first decision and to load the kernels, medians of fresh interpreters, cache cold and warm."""
    with tempfile.TemporaryDirectory() as folder:
        cold = [first_decision_seconds(Path(folder, f"cold{i}")) for i in range(repeats)]
        warm_cache = Path(folder, "warm")
        first_decision_seconds(warm_cache)  # fills the cache
        warm = [first_decision_seconds(warm_cache) for _ in range(repeats)]
    measured = (
        ("first decision (import, Bandit, select, update)", "< 0.3"),
        ("then loading the compiled kernels, one compiled decision", "-"),
    )
    return [
        Measure(f"{what}, numba cache {state}", statistics.median(run[column] for run in runs), "s", target)
        for column, (what, target) in enumerate(measured)
        for state, runs in (("cold", cold), ("warm", warm))
    ]


def online_measures(rounds: int, repeats: int, progress=None) -> list[Measure]:
    """Online decisions/s for every non-contextual policy."""
    measures = []
    for name, cls in REGISTRY.items():
        if cls.contextual:
            continue
        rate = statistics.median(online_rate(name, rounds) for _ in range(repeats))
        target = ONLINE_TARGETS.get(name)
        measures.append(Measure(name, rate, "decisions/s", "-" if target is None else f">= {target:,}"))
        if progress is not None:
            progress()
    return measures


def core_measures(repeats: int) -> list[Measure]:
    """Batch selection, exact propensities, memory and import time."""
    peak, size = peak_memory_mib()
    return [
        Measure(
            "select_many(1,000,000), thompson, K=10, with propensities",
            statistics.median(select_many_rate(1_000_000) for _ in range(repeats)),
            "decisions/s",
            ">= 2,000,000",
        ),
        Measure("exact propensity by integration, thompson, K=10", propensity_seconds("thompson") * 1e3, "ms/call"),
        Measure(
            "exact propensity by integration, gaussian_thompson, K=10",
            propensity_seconds("gaussian_thompson") * 1e3,
            "ms/call",
        ),
        Measure("peak memory, 1,000 arms, 1,000,000 updates (update_many, 100k chunks)", peak, "MiB"),
        Measure("size of that bandit's JSON afterwards", size, "MiB"),
        Measure("import banditkit, median of 5 fresh interpreters", import_seconds(), "s", "< 0.3"),
    ]

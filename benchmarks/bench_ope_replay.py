"""Speed of ``bk.ope.replay_learning``: rows replayed per second on the compiled and numpy paths, and cold start.

    PYTHONPATH=. python benchmarks/bench_ope_replay.py                 # 1,000,000 rows
    PYTHONPATH=. python benchmarks/bench_ope_replay.py --rows 200000

Workloads: LinUCB replayed on a uniform log of logistic-click rewards (d context features, K arms),
for K = 10 and 20, LinTS for K = 10; Thompson sampling, UCB1 and epsilon-greedy (epsilon = 0.1), without
context, on a uniform Bernoulli log, K = 10.
Paths: "compiled" is the default with numba installed and its kernels loaded (each of these
policies replays every row in one compiled loop, ``Policy.replay``); "numpy" switches the compiled
kernels off (a batch of rows decided at once with ``select_many``, one ``update`` per accepted row;
``select()`` per row without context).
"first" is the first replay in this process (the numba kernels already compiled or cached: see cold
start), "steady" the median of --repeats further replays. The floor bounds the numpy path: per
accepted row one ``select_many`` over the batch decided at once and one ``update`` (timed alone on the
same bandit), per row its share of the decisions.

Cold start: one LinUCB replay (K=10, 10,000 rows) in a fresh interpreter, the replay call alone,
with numba's cache empty (every kernel it needs compiled) and then filled (loaded from the cache).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import banditkit as bk
from banditkit.policies import _jit

TARGET_ROWS_PER_SECOND = 200_000
COLD_ROWS = 10_000


def uniform_log(n_rows: int, n_arms: int, n_features: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A uniform-random log; click probability logistic in the context, one weight vector per arm."""
    rng = np.random.default_rng(seed)
    contexts = rng.normal(size=(n_rows, n_features))
    weights = rng.normal(size=(n_arms, n_features))
    arms = rng.integers(0, n_arms, n_rows)
    scores = np.einsum("nd,nd->n", contexts, weights[arms]) - 1.0
    rewards = (rng.random(n_rows) < 1 / (1 + np.exp(-scores))).astype(np.float64)
    columns = {f"x{j}": contexts[:, j] for j in range(n_features)}
    return {"arm": arms, "reward": rewards, "propensity": np.full(n_rows, 1 / n_arms), **columns}


def timed(function, repeats: int) -> tuple[float, float, float, object]:
    """Wall seconds of the first call, median wall and CPU seconds of ``repeats`` more, and the last result."""
    start = time.perf_counter()
    result = function()
    first = time.perf_counter() - start
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        result = function()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return first, statistics.median(walls), statistics.median(cpus), result


def replay(log: bk.ope.LoggedData, bandit: bk.Bandit) -> bk.ope.ReplayResult:
    return bk.ope.replay_learning(log, bandit, rng=0)


def floor_per_accepted_row(bandit: bk.Bandit, contexts: np.ndarray, batch: int, count: int = 3000) -> float:
    """CPU seconds of one ``select_many`` over ``batch`` rows plus one ``update``: the replay's cost per acceptance."""
    copy = bk.Bandit.from_json(bandit.to_json())
    cpu = time.process_time()
    for i in range(count):
        window = contexts[i : i + batch]
        copy.select_many(contexts=window)
        copy.update(copy.arms[i % len(copy.arms)], float(i % 2), context=window[:1])
    return (time.process_time() - cpu) / count


def cold_start() -> None:
    """The first replay in this interpreter, in seconds (what ``--cold`` prints for the parent process)."""
    log = bk.ope.load_log(uniform_log(COLD_ROWS, 10, 10))
    bandit = bk.Bandit([str(k) for k in range(10)], policy=bk.LinUCB(alpha=0.5), n_features=10)
    start = time.perf_counter()
    replay(log, bandit)
    print(time.perf_counter() - start)


def cold_starts() -> tuple[float, float]:
    """Seconds of the first replay in a fresh interpreter: numba's cache empty, then filled by that run."""
    seconds = []
    with tempfile.TemporaryDirectory() as cache:
        environment = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for _ in range(2):
            out = subprocess.run(
                [sys.executable, __file__, "--cold"], env=environment, capture_output=True, text=True, check=True
            )
            seconds.append(float(out.stdout.split()[-1]))
    return seconds[0], seconds[1]


def workloads(n_rows: int, n_features: int) -> list[tuple[str, bk.ope.LoggedData, bk.Bandit, bool]]:
    """(name, log, bandit, contextual) of every workload."""
    out = []
    for n_arms, policy in ((10, bk.LinUCB(alpha=0.5)), (20, bk.LinUCB(alpha=0.5)), (10, bk.LinTS(v=0.5))):
        log = bk.ope.load_log(uniform_log(n_rows, n_arms, n_features))
        bandit = bk.Bandit([str(k) for k in range(n_arms)], policy=policy, n_features=n_features)
        out.append((f"{type(policy).__name__}, K={n_arms}, d={n_features}", log, bandit, True))
    log = bk.ope.load_log(uniform_log(n_rows, 10, 1))
    for name, policy in (
        ("Thompson", bk.ThompsonSampling()),
        ("UCB1", bk.UCB1()),
        ("epsilon-greedy", bk.EpsilonGreedy(epsilon=0.1)),
    ):
        out.append((f"{name}, K=10, no context", log, bk.Bandit([str(k) for k in range(10)], policy=policy), False))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cold", action="store_true", help="print the seconds of one replay in this process")
    args = parser.parse_args()
    if args.cold:
        cold_start()
        return
    load = os.getloadavg()
    compile_seconds, cached_seconds = cold_starts()
    table = []
    for name, log, bandit, contextual in workloads(args.rows, args.features):
        for path in ("compiled", "numpy"):
            _jit.set_enabled(path == "compiled")
            first, wall, cpu, result = timed(lambda log=log, bandit=bandit: replay(log, bandit), args.repeats)
            bound = float("nan")
            if path == "numpy" and contextual:
                assert log.contexts is not None
                per_accept = floor_per_accepted_row(bandit, log.contexts, 3 * len(bandit.arms))
                bound = args.rows / (result.steps * per_accept)
            table.append((name, path, first, wall, cpu, result, bound))
    _jit.set_enabled(True)

    after = os.getloadavg()
    print(
        f"{args.rows:,} logged rows; load average {load[0]:.1f} before the run, {after[0]:.1f} after, "
        f"on {os.cpu_count()} cores"
    )
    header = f"{'workload':<32} {'path':<9} {'accepted':>9} {'first s':>8} {'steady s':>9} {'cpu s':>7}"
    print(f"{header} {'rows/s (cpu)':>13} {'floor rows/s':>13} {'target':>8} {'ok':>4} {'value':>7}")
    for name, path, first, wall, cpu, result, bound in table:
        rate = args.rows / cpu
        floor = f"{bound:13,.0f}" if bound == bound else f"{'-':>13}"
        print(
            f"{name:<32} {path:<9} {result.steps:>9,} {first:8.2f} {wall:9.2f} {cpu:7.2f} {rate:13,.0f} {floor} "
            f"{TARGET_ROWS_PER_SECOND:8,} {'yes' if rate >= TARGET_ROWS_PER_SECOND else 'NO':>4} {result.value:7.4f}"
        )
    print(
        f"cold start, LinUCB K=10 on {COLD_ROWS:,} rows in a fresh interpreter (the replay call alone): "
        f"{compile_seconds:.2f} s with numba's cache empty, {cached_seconds:.2f} s with it filled"
    )


if __name__ == "__main__":
    main()

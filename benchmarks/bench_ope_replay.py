"""Speed of ``bk.ope.replay_learning``: rows replayed per second, and the floor that bounds it.

    PYTHONPATH=. python benchmarks/bench_ope_replay.py                 # 1,000,000 rows
    PYTHONPATH=. python benchmarks/bench_ope_replay.py --rows 200000

Workloads: LinUCB replayed on a uniform log of logistic-click rewards (d context features, K arms),
for K = 10 and 20; Thompson sampling (no context) on a uniform Bernoulli log. "first call" is one
replay in a fresh process state (numba kernels compiled on first use); "steady" the median of
--repeats further replays. The floor is what the replay cannot avoid: per accepted row one
``select_many`` over the batch decided at once and one ``update`` (timed alone on the same bandit), per
row its share of the decisions. rows/s above the floor's bound is impossible with the public API.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import banditkit as bk

TARGET_ROWS_PER_SECOND = 200_000


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    load = os.getloadavg()
    table = []
    for n_arms in (10, 20):
        log = bk.ope.load_log(uniform_log(args.rows, n_arms, args.features))
        bandit = bk.Bandit([str(k) for k in range(n_arms)], policy=bk.LinUCB(alpha=0.5), n_features=args.features)
        first, wall, cpu, result = timed(lambda log=log, bandit=bandit: replay(log, bandit), args.repeats)
        assert log.contexts is not None
        per_accept = floor_per_accepted_row(bandit, log.contexts, 3 * n_arms)
        bound = args.rows / (result.steps * per_accept)
        table.append((f"LinUCB, K={n_arms}, d={args.features}", first, wall, cpu, result, bound))
    log = bk.ope.load_log(uniform_log(args.rows, 10, 1))
    bandit = bk.Bandit([str(k) for k in range(10)], policy=bk.ThompsonSampling())
    first, wall, cpu, result = timed(lambda: replay(log, bandit), args.repeats)
    table.append(("Thompson, K=10, no context", first, wall, cpu, result, float("nan")))

    print(f"{args.rows:,} logged rows; load average before the run {load[0]:.1f} on {os.cpu_count()} cores")
    header = f"{'workload':<28} {'accepted':>9} {'first s':>8} {'steady s':>9} {'cpu s':>7}"
    print(f"{header} {'rows/s (cpu)':>13} {'floor rows/s':>13} {'target':>8} {'ok':>4} {'value':>7}")
    for name, first, wall, cpu, result, bound in table:
        rate = args.rows / cpu
        print(
            f"{name:<28} {result.steps:>9,} {first:8.2f} {wall:9.2f} {cpu:7.2f} {rate:13,.0f} {bound:13,.0f} "
            f"{TARGET_ROWS_PER_SECOND:8,} {'yes' if rate >= TARGET_ROWS_PER_SECOND else 'NO':>4} {result.value:7.4f}"
        )


if __name__ == "__main__":
    main()

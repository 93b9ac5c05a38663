"""Offline-evaluation speed on large synthetic logs; prints a table against the targets.

    PYTHONPATH=. python benchmarks/bench_ope.py            # 10M rows (needs ~6 GB RAM)
    PYTHONPATH=. python benchmarks/bench_ope.py --rows 1000000

Workloads: IPS and SNIPS on 10,000,000 logged rows (K=10, 5 context features), DR including a
5-fold cross-fitted ridge reward model on the same rows, and a 1,000-resample Poisson-bootstrap
interval on 1,000,000 rows. Each timing is the median of --repeats runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from banditkit.ope import RidgeRewardModel, cross_fit_predictions, dr, ips, snips
from banditkit.ope.bootstrap import _kernel
from banditkit.policies.base import categorical


def synthetic_log(n_rows: int, n_arms: int = 10, n_features: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    """A contextual log: softmax behaviour policy, a different softmax target, logistic click rewards."""
    rng = np.random.default_rng(seed)
    contexts = rng.normal(size=(n_rows, n_features))
    reward_theta = rng.normal(size=(n_features, n_arms))
    behaviour = _softmax(contexts @ rng.normal(size=(n_features, n_arms)) * 0.5)
    target = _softmax(contexts @ reward_theta)
    arms = categorical(behaviour, rng)
    rows = np.arange(n_rows)
    means = 1 / (1 + np.exp(1.0 - contexts[:, :1] * reward_theta[0]))  # (n, K) click probability
    rewards = (rng.random(n_rows) < means[rows, arms]).astype(np.float64)
    return {
        "contexts": contexts,
        "arms": arms,
        "rewards": rewards,
        "propensities": behaviour[rows, arms],
        "target": target,
        "true_value": float(np.einsum("nk,nk->n", target, means).mean()),
    }


def _softmax(scores: np.ndarray) -> np.ndarray:
    scores = np.exp(scores - scores.max(axis=1, keepdims=True))
    scores /= scores.sum(axis=1, keepdims=True)
    return scores


def timed(function, repeats: int) -> tuple[float, float, object]:
    """Median wall-clock and process CPU seconds of ``repeats`` runs, and the last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        result = function()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--bootstrap-rows", type=int, default=1_000_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    load = os.getloadavg()
    log = synthetic_log(args.rows)
    r, p, t, a, x = log["rewards"], log["propensities"], log["target"], log["arms"], log["contexts"]
    results = []
    wall, cpu, estimate = timed(lambda: ips(r, p, t, a, n_bootstrap=0), args.repeats)
    results.append((f"IPS, {args.rows:,} rows", wall, cpu, 1.0, estimate.value))
    wall, cpu, estimate = timed(lambda: snips(r, p, t, a, n_bootstrap=0), args.repeats)
    results.append((f"SNIPS, {args.rows:,} rows", wall, cpu, 1.0, estimate.value))

    def doubly_robust():
        predictions = cross_fit_predictions(RidgeRewardModel(), x, a, r, t.shape[1], np.random.default_rng(0))
        return dr(r, p, t, a, predictions, n_bootstrap=0)

    wall, cpu, estimate = timed(doubly_robust, args.repeats)
    results.append((f"DR + 5-fold ridge, {args.rows:,} rows", wall, cpu, 10.0, estimate.value))

    m = args.bootstrap_rows
    small = (r[:m], p[:m], t[:m], a[:m])
    wall, cpu, estimate = timed(lambda: snips(*small, n_bootstrap=args.resamples, rng=1), args.repeats)
    results.append((f"SNIPS + {args.resamples:,}-resample bootstrap, {m:,} rows", wall, cpu, 10.0, estimate.value))

    print(
        f"bootstrap pass: {'numba' if _kernel() is not None else 'numpy'}; "
        f"load average before the run {load[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"{'workload':<52} {'wall s':>8} {'cpu s':>8} {'target':>7} {'ok':>4} {'estimate':>10}")
    for name, wall, cpu, target, value in results:
        print(f"{name:<52} {wall:8.3f} {cpu:8.3f} {target:7.1f} {'yes' if wall < target else 'NO':>4} {value:10.5f}")
    print(f"true value of the target on these contexts: {log['true_value']:.5f}; on-policy mean {r.mean():.5f}")


if __name__ == "__main__":
    main()

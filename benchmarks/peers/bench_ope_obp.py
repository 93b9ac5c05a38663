"""banditkit.ope side by side with Open Bandit Pipeline (obp 0.5.7) on identical inputs.

    ~/.venvs/banditkit-peers-ope/bin/python benchmarks/peers/bench_ope_obp.py          # from the repository root
    (install: see benchmarks/peers/requirements-ope.txt)

Both libraries get the same arrays: rewards, logged arms, propensities, the target's action
distribution and, for DM / DR / Switch-DR, the same reward-model predictions (banditkit's cross-fitted
ridge, computed once). For each estimator the script prints both estimates, their relative difference
and the median time of --repeats interleaved runs (estimate only, input validation included on both
sides; no intervals). Workloads: a synthetic log (--rows, K=10, 5 features) and the Open Bandit Dataset
sample (random log -> Bernoulli-TS target, 3 positions) when ../shared/data/obd is present.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from bench_ope import synthetic_log  # noqa: E402

import banditkit.ope as ope  # noqa: E402
from banditkit.datasets import load_open_bandit  # noqa: E402

warnings.filterwarnings("ignore")
SWITCH = 20.0


def ours(name, r, a, p, target_rows, q_rows):
    if name == "ips":
        return ope.ips(r, p, target_rows, a, n_bootstrap=0).value
    if name == "snips":
        return ope.snips(r, p, target_rows, a, n_bootstrap=0).value
    if name == "dm":
        return ope.dm(target_rows, q_rows, n_bootstrap=0).value
    if name == "dr":
        return ope.dr(r, p, target_rows, a, q_rows, n_bootstrap=0).value
    return ope.switch_dr(r, p, target_rows, a, q_rows, max_weight=SWITCH, n_bootstrap=0).value


def theirs(name, r, a, p, action_dist, q3, position):
    from obp.ope import (
        DirectMethod,
        DoublyRobust,
        InverseProbabilityWeighting,
        SelfNormalizedInverseProbabilityWeighting,
        SwitchDoublyRobust,
    )

    if name == "ips":
        return InverseProbabilityWeighting().estimate_policy_value(r, a, action_dist, p, position)
    if name == "snips":
        return SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(r, a, action_dist, p, position)
    if name == "dm":
        return DirectMethod().estimate_policy_value(
            action_dist=action_dist, estimated_rewards_by_reg_model=q3, position=position
        )
    estimator = DoublyRobust() if name == "dr" else SwitchDoublyRobust(lambda_=SWITCH)
    return estimator.estimate_policy_value(
        reward=r, action=a, pscore=p, action_dist=action_dist, estimated_rewards_by_reg_model=q3, position=position
    )


def compare(title, r, a, p, target_rows, q_rows, action_dist, q3, position, repeats):
    print(f"\n{title}")
    print(
        f"{'estimator':<10} {'banditkit':>12} {'obp':>12} {'rel. diff':>10} {'ours s':>8} {'obp s':>8} {'speed-up':>8}"
    )
    for name in ("ips", "snips", "dm", "dr", "switch_dr"):
        our_times, their_times = [], []
        for _ in range(repeats):  # interleaved: both sides see the same machine load
            start = time.perf_counter()
            mine = ours(name, r, a, p, target_rows, q_rows)
            our_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            other = theirs(name, r, a, p, action_dist, q3, position)
            their_times.append(time.perf_counter() - start)
        ours_s, theirs_s = statistics.median(our_times), statistics.median(their_times)
        difference = abs(mine - other) / max(abs(other), 1e-300)
        print(
            f"{name:<10} {mine:12.8f} {other:12.8f} {difference:10.1e} {ours_s:8.4f} {theirs_s:8.4f} "
            f"{theirs_s / ours_s:7.1f}x"
        )


def interval_speed(r, a, p, target, repeats):
    """1,000-resample bootstrap interval of SNIPS on the same rows (different resampling schemes)."""
    from obp.ope import SelfNormalizedInverseProbabilityWeighting

    from banditkit.ope.bootstrap import _kernel

    ours_times, theirs_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        mine = ope.snips(r, p, target, a, n_bootstrap=1000, rng=0)
        ours_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        other = SelfNormalizedInverseProbabilityWeighting().estimate_interval(
            reward=r, action=a, pscore=p, action_dist=target[:, :, None], n_bootstrap_samples=1000, random_state=0
        )
        theirs_times.append(time.perf_counter() - start)
    ours_s, theirs_s = statistics.median(ours_times), statistics.median(theirs_times)
    print(
        f"\nSNIPS 95% interval, 1,000 resamples, {r.shape[0]:,} rows "
        f"(banditkit: Poisson bootstrap, {'numba' if _kernel() else 'numpy'} pass; obp: multinomial)"
    )
    print(
        f"  banditkit [{mine.low:.5f}, {mine.high:.5f}] {ours_s:.3f} s; obp [{other['95.0% CI (lower)']:.5f}, "
        f"{other['95.0% CI (upper)']:.5f}] {theirs_s:.3f} s; speed-up {theirs_s / ours_s:.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    log = synthetic_log(args.rows)
    r, a, p, target = log["rewards"], log["arms"], log["propensities"], log["target"]
    q = ope.cross_fit_predictions(ope.RidgeRewardModel(), log["contexts"], a, r, 10, np.random.default_rng(0))
    compare(
        f"synthetic log, {args.rows:,} rows, K=10",
        r,
        a,
        p,
        target,
        q,
        target[:, :, None],
        q[:, :, None],
        None,
        args.repeats,
    )

    interval_speed(r[:100_000], a[:100_000], p[:100_000], target[:100_000], args.repeats)

    obd = Path(os.environ.get("BANDITKIT_DATA_DIR", ROOT.parent / "shared" / "data")) / "obd"
    if (obd / "random" / "all.csv").exists():
        data = load_open_bandit(obd, "random")
        lg = data.log
        ranking = ope.thompson_ranking_distribution(data.prior["alpha"], data.prior["beta"], 3)
        action_dist = np.ascontiguousarray(ranking.for_rows(lg.n_rows))  # (n, 80, 3)
        rows = np.arange(lg.n_rows)
        target_rows = action_dist[rows, :, lg.positions]
        q_rows = ope.cross_fit_predictions(
            ope.RidgeRewardModel(), ope.model_features(lg), lg.arms, lg.rewards, 80, np.random.default_rng(0)
        )
        q3 = np.zeros_like(action_dist)
        q3[rows, :, lg.positions] = q_rows
        compare(
            "Open Bandit Dataset, random log -> Bernoulli-TS target (3 positions)",
            lg.rewards,
            lg.arms,
            lg.propensities,
            target_rows,
            q_rows,
            action_dist,
            q3,
            lg.positions,
            args.repeats,
        )


if __name__ == "__main__":
    main()

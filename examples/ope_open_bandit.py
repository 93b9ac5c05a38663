"""The standard off-policy check on the Open Bandit Dataset sample (ZOZO, Inc., CC BY 4.0).

Estimate the value (click rate) of the Bernoulli Thompson-sampling policy from the log of the
uniform-random policy, and compare with the on-policy value: the mean click in the log the
Thompson-sampling policy collected itself.

    PYTHONPATH=. python examples/ope_open_bandit.py [DATA_DIR]

DATA_DIR defaults to $BANDITKIT_DATA_DIR, else ../shared/data beside the repository.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from banditkit.datasets import load_open_bandit
from banditkit.ope import CrossedRidgeRewardModel, evaluate, thompson_ranking_distribution

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    default = os.environ.get("BANDITKIT_DATA_DIR", ROOT.parent / "shared" / "data")
    obd = Path(sys.argv[1] if len(sys.argv) > 1 else default) / "obd"
    random_log = load_open_bandit(obd, "random")
    bts_log = load_open_bandit(obd, "bts")
    prior = random_log.prior
    target = thompson_ranking_distribution(prior["alpha"], prior["beta"], n_positions=3)
    report = evaluate(
        random_log.log, target.for_rows(1), ["ips", "snips", "dm", "dr", "switch_dr", "replay"], n_bootstrap=1000, rng=0
    )
    tighter = evaluate(random_log.log, target.for_rows(1), ["switch_dr"], switch_weight=10.0, n_bootstrap=1000, rng=0)[
        "switch_dr"
    ]
    truth = bts_log.on_policy_value
    clicks = int(bts_log.log.rewards.sum())
    half_width = 1.96 * math.sqrt(truth * (1 - truth) / bts_log.log.n_rows)
    print(
        f"on-policy value (BTS log): {truth:.5f} from {clicks} clicks, "
        f"95% interval [{truth - half_width:.5f}, {truth + half_width:.5f}]"
    )
    print(f"random log: {int(random_log.log.rewards.sum())} clicks in {random_log.log.n_rows} rows\n")
    print("| estimator | estimate | relative error | 95% bootstrap interval | 95% normal interval | ESS | max weight |")
    print("|---|---:|---:|---|---|---:|---:|")
    rows = [(name, report[name]) for name in ("ips", "snips", "dm", "dr", "switch_dr", "replay")]
    rows.insert(5, ("switch_dr (M = 10)", tighter))
    for name, e in rows:
        weight = "-" if e.max_weight is None else f"{e.max_weight:.1f}"
        print(
            f"| {name} | {e.value:.5f} | {abs(e.value - truth) / truth:.3f} | [{e.low:.5f}, {e.high:.5f}] | "
            f"[{e.normal_low:.5f}, {e.normal_high:.5f}] | {e.ess:.0f} | {weight} |"
        )
    print("\nper position (estimate, 95% bootstrap interval; on-policy mean click of the BTS log at that slot):")
    for position, estimates in report.by_position.items():
        rows = bts_log.log.positions == position
        cells = ", ".join(
            f"{name} {estimates[name].value:.5f} [{estimates[name].low:.5f}, {estimates[name].high:.5f}]"
            for name in ("ips", "snips", "dr")
        )
        print(f"  position {position}: {cells}; on-policy {bts_log.log.rewards[rows].mean():.5f}")
    for warning in report.warnings:
        print("warning:", warning)
    # DM/DR with the item features: one crossed ridge for all 80 items (benchmarks/bench_ope_reward_models.py
    # compares more reward models over several fold splits)
    crossed = evaluate(
        random_log.log,
        target.for_rows(1),
        ["dm", "dr"],
        reward_model=CrossedRidgeRewardModel(),
        action_features=random_log.item_features,
        n_bootstrap=0,
        rng=0,
    )
    print(f"\nreward model with item features: {crossed.reward_model}")
    for name in ("dm", "dr"):
        per_arm, with_items = report[name].value, crossed[name].value
        print(
            f"  {name}: per-arm ridge {per_arm:.5f} (relative error {abs(per_arm - truth) / truth:.3f}), "
            f"crossed ridge {with_items:.5f} (relative error {abs(with_items - truth) / truth:.3f})"
        )


if __name__ == "__main__":
    main()

"""DM/DR reward models on the Open Bandit Dataset sample: every estimator's relative error per model.

    PYTHONPATH=. python benchmarks/bench_ope_reward_models.py [DATA_DIR] [--splits 10] [--models ridge,crossed,...]

The standard check (docs/ope.md): the value of the Bernoulli Thompson-sampling policy estimated
from the uniform-random policy's log, against the on-policy value (the mean click of the log the
Thompson policy collected). For each reward model, each estimator's relative error
|estimate - on-policy| / on-policy with the cross-fitting folds of seed 0, and the mean over
``--splits`` fold splits (seeds 0, 1, ...): the model-based estimates move with the split alone.
The Brier score is the model's out-of-fold squared error on the logged (row, arm) pairs, the
accuracy of the model itself (a constant predicting the mean click scores p (1 - p)).

Models: ``ridge`` (per arm on the context: the default without action features, and the only
model before action features), ``crossed`` (CrossedRidgeRewardModel on the crossed item x context
features: the default with action features), ``crossed-l2=X`` for other penalties, and two
scikit-learn classifiers on the crossed feature map, ``logistic`` (LogisticRegression) and
``hgb`` (HistGradientBoostingClassifier).

DATA_DIR defaults to $BANDITKIT_DATA_DIR, else ../shared/data beside the repository. The data:
the Open Bandit Dataset by ZOZO, Inc., CC BY 4.0 (Saito, Aihara, Matsutani, Narita, NeurIPS 2021).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from banditkit.datasets import load_open_bandit
from banditkit.ope import (
    CrossedRidgeRewardModel,
    RidgeRewardModel,
    cross_fit_predictions,
    evaluate,
    model_features,
    thompson_ranking_distribution,
)

ROOT = Path(__file__).resolve().parents[1]
ESTIMATORS = ("ips", "snips", "dm", "dr", "switch_dr")
DEFAULT_MODELS = "ridge,crossed,logistic,hgb"


def make_model(name: str) -> tuple[Any, bool]:
    """The reward model called ``name`` and whether it takes the item features."""
    if name == "ridge":
        return RidgeRewardModel(), False
    if name == "crossed":
        return CrossedRidgeRewardModel(), True
    if name.startswith("crossed-l2="):
        return CrossedRidgeRewardModel(l2=float(name.split("=", 1)[1])), True
    if name == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=0.1, max_iter=2000), True
    if name == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=50, learning_rate=0.05, max_leaf_nodes=8, random_state=0), True
    raise SystemExit(f"unknown model {name!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "data", nargs="?", default=os.environ.get("BANDITKIT_DATA_DIR", ROOT.parent / "shared" / "data")
    )
    parser.add_argument("--splits", type=int, default=10, help="fold splits averaged (seeds 0..splits-1)")
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated model names")
    args = parser.parse_args()
    obd = Path(args.data) / "obd"
    random_log, bts_log = load_open_bandit(obd, "random"), load_open_bandit(obd, "bts")
    prior = random_log.prior
    assert prior is not None and random_log.item_features is not None
    target = thompson_ranking_distribution(prior["alpha"], prior["beta"], n_positions=3).for_rows(1)
    truth = bts_log.on_policy_value
    log = random_log.log
    features, rows = model_features(log), np.arange(log.n_rows)
    base = log.rewards.mean()
    print(f"on-policy value (BTS log) {truth:.5f}; random log {log.n_rows:,} rows, {int(log.rewards.sum())} clicks")
    print(f"Brier score of the constant mean click: {base * (1 - base) * 1e3:.4f} x 1e-3\n")
    header = " | ".join(f"{name} (seed 0 / mean)" for name in ESTIMATORS)
    print(f"| reward model | {header} | Brier x 1e-3 | seconds per fit |")
    print("|---|" + "---:|" * (len(ESTIMATORS) + 2))
    for name in args.models.split(","):
        model, crossed = make_model(name)
        items = random_log.item_features if crossed else None
        errors: dict[str, list[float]] = {estimator: [] for estimator in ESTIMATORS}
        brier, seconds = [], []
        for seed in range(args.splits):
            start = time.perf_counter()
            predictions = cross_fit_predictions(
                model, features, log.arms, log.rewards, 80, np.random.default_rng(seed), 5, action_features=items
            )
            seconds.append(time.perf_counter() - start)
            brier.append(float(np.mean((predictions[rows, log.arms] - log.rewards) ** 2)))
            # the same predictions evaluate() would fit with reward_model=model, action_features=items, rng=seed
            report = evaluate(log, target, list(ESTIMATORS), predicted_rewards=predictions, n_bootstrap=0, rng=seed)
            for estimator in ESTIMATORS:
                errors[estimator].append(abs(report[estimator].value - truth) / truth)
        cells = " | ".join(f"{errors[e][0]:.3f} / {np.mean(errors[e]):.3f}" for e in ESTIMATORS)
        print(f"| {name} | {cells} | {np.mean(brier) * 1e3:.4f} | {np.median(seconds):.2f} |", flush=True)


if __name__ == "__main__":
    main()

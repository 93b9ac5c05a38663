"""``evaluate``: every requested estimator on one log, with shared bootstrap draws and warnings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._typing import FloatArray, IntArray, RngLike
from .._validation import check_int, check_real
from ..errors import InvalidParameterError
from . import estimators as est
from .logs import LoggedData, load_log
from .report import Estimate, Report
from .reward_model import RidgeRewardModel, cross_fit_predictions
from .targets import resolve_target

ESTIMATORS = ("replay", "ips", "clipped_ips", "snips", "dm", "dr", "switch_dr")
"""The estimators ``evaluate`` knows, by the names its ``estimators`` argument takes (all of them by default).

>>> import banditkit as bk
>>> bk.ope.ESTIMATORS
('replay', 'ips', 'clipped_ips', 'snips', 'dm', 'dr', 'switch_dr')
"""
MODEL_BASED = frozenset({"dm", "dr", "switch_dr"})
#: An estimate whose effective sample size is below this share of the rows (or 100) gets a warning.
SMALL_ESS_SHARE = 0.01
SMALL_ESS_ROWS = 100


def evaluate(
    log: Any,
    target: Any,
    estimators: str | Sequence[str] | None = None,
    *,
    reward_model: Any = None,
    predicted_rewards: ArrayLike | None = None,
    n_folds: int = 5,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    clip_weight: float = 100.0,
    switch_weight: float = 20.0,
    rng: RngLike = 0,
    drop_unrewarded: bool = False,
) -> Report:
    """Estimate the value of ``target`` from ``log`` with each estimator; one row per estimator.

    Parameters
    ----------
    log : path, DataFrame, pyarrow Table, mapping of columns or LoggedData (see :func:`load_log`)
    target : Bandit, policy, deterministic actions, or probabilities (n, K) / (n, K, L)
    estimators : names from ``ESTIMATORS``; default all of them ("replay" only for uniform logs)
    reward_model : RidgeRewardModel (default) or a scikit-learn regressor/classifier, cross-fitted
    predicted_rewards : (n, K) array used instead of fitting a reward model
    n_folds, n_bootstrap, confidence : cross-fitting folds, bootstrap resamples, interval level
    clip_weight, switch_weight : weight cap of clipped_ips and switch threshold of switch_dr
    rng : seed or numpy.random.Generator for the folds, the replay draws and the bootstrap

    Examples
    --------
    >>> log = {"arm": [0, 1, 0, 1], "reward": [1.0, 0.0, 1.0, 1.0], "propensity": [0.5] * 4}
    >>> report = evaluate(log, np.array([[1.0, 0.0]]), ["ips", "snips"], n_bootstrap=200)
    >>> report["ips"].value, report["snips"].value
    (1.0, 1.0)
    """
    generator = est.as_rng(rng)
    log = load_log(log, drop_unrewarded=drop_unrewarded)
    n_bootstrap = check_int("n_bootstrap", n_bootstrap, low=0)
    confidence = check_real("confidence", confidence, low=0.0, high=1.0, low_open=True, high_open=True)
    uniform = float(np.ptp(log.propensities)) <= 1e-12 * float(log.propensities.max())
    names = _estimator_names(estimators, uniform)
    target_rows = resolve_target(target, log)
    probabilities, arms = target_rows.probabilities, target_rows.arms
    predictions = None
    if MODEL_BASED & set(names):
        predictions = _predictions(
            log, arms, probabilities.shape[1], reward_model, predicted_rewards, generator, n_folds
        )
    terms = [
        _terms(name, log, probabilities, arms, predictions, generator, clip_weight, switch_weight) for name in names
    ]
    estimates = _keyed(est.finish(terms, generator, n_bootstrap, confidence))
    by_position: dict[int, dict[str, Estimate]] = {}
    if log.positions is not None and log.n_positions > 1:
        for position in range(log.n_positions):
            rows = log.positions == position
            if rows.any():
                subset = [t.subset(rows) for t in terms]
                by_position[position] = _keyed(est.finish(subset, generator, n_bootstrap, confidence))
    return Report(estimates, by_position, tuple(_warnings(estimates, log.n_rows)))


def _estimator_names(estimators: str | Sequence[str] | None, uniform: bool) -> list[str]:
    if estimators is None:
        return [name for name in ESTIMATORS if uniform or name != "replay"]
    names = [estimators] if isinstance(estimators, str) else list(estimators)
    unknown = [name for name in names if name not in ESTIMATORS]
    if unknown:
        raise InvalidParameterError(f"estimator must be one of {list(ESTIMATORS)}, got {unknown[0]!r}")
    if "replay" in names and not uniform:
        raise InvalidParameterError(
            "replay needs a log from a uniform-random policy (all propensities equal); use ips, snips or dr"
        )
    return list(dict.fromkeys(names))


def _predictions(
    log: LoggedData,
    arms: IntArray,
    n_arms: int,
    reward_model: Any,
    predicted_rewards: ArrayLike | None,
    rng: np.random.Generator,
    n_folds: int,
) -> FloatArray:
    if predicted_rewards is not None:
        predictions = np.asarray(predicted_rewards, dtype=np.float64)
        if predictions.shape != (log.n_rows, n_arms) or not np.isfinite(predictions).all():
            raise InvalidParameterError(
                f"predicted_rewards must be finite with shape {(log.n_rows, n_arms)}, got {predictions.shape}"
            )
        return predictions
    return cross_fit_predictions(
        reward_model or RidgeRewardModel(), model_features(log), arms, log.rewards, n_arms, rng, n_folds
    )


def model_features(log: LoggedData) -> np.ndarray:
    """Reward-model features: the context, plus a one-hot of the position (slot 0 as baseline).

    Examples
    --------
    >>> from banditkit.ope import load_log
    >>> log = load_log({"arm": [0, 1, 1], "reward": [1.0, 0.0, 1.0], "propensity": [0.5] * 3, "position": [0, 1, 2]})
    >>> model_features(log).tolist()  # no context: the one-hot of positions 1 and 2
    [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    """
    parts = [np.zeros((log.n_rows, 0))] if log.contexts is None else [log.contexts]
    if log.positions is not None and log.n_positions > 1:
        parts.append((log.positions[:, None] == np.arange(1, log.n_positions)).astype(np.float64))
    return np.hstack(parts)


def _terms(
    name: str,
    log: LoggedData,
    probabilities: FloatArray,
    arms: IntArray,
    predictions: FloatArray | None,
    rng: np.random.Generator,
    clip_weight: float,
    switch_weight: float,
) -> est.Terms:
    rewards, propensities = log.rewards, log.propensities
    if name == "replay":
        return est.replay_terms(rewards, arms, propensities, probabilities, rng)
    if name in ("ips", "clipped_ips"):
        cap = clip_weight if name == "clipped_ips" else np.inf
        return est.ips_terms(rewards, propensities, probabilities, arms, max_weight=cap, name=name)
    if name == "snips":
        return est.snips_terms(rewards, propensities, probabilities, arms)
    assert predictions is not None, "the model-based estimators get predictions from evaluate()"
    if name == "dm":
        return est.dm_terms(probabilities, predictions)
    cap = switch_weight if name == "switch_dr" else np.inf
    return est.dr_terms(rewards, propensities, probabilities, arms, predictions, max_weight=cap, name=name)


def _keyed(estimates: list[Estimate]) -> dict[str, Estimate]:
    return {estimate.estimator: estimate for estimate in estimates}


def _warnings(estimates: dict[str, Estimate], n_rows: int) -> list[str]:
    out = []
    threshold = max(SMALL_ESS_ROWS, SMALL_ESS_SHARE * n_rows) if n_rows >= SMALL_ESS_ROWS else n_rows / 2
    for estimate in estimates.values():
        if estimate.max_weight is not None and estimate.ess < threshold:
            out.append(
                f"{estimate.estimator}: effective sample size {estimate.ess:.1f} of {n_rows} rows; "
                "the target rarely agrees with the logged arms, so this estimate is unreliable"
            )
    for estimate in estimates.values():
        if estimate.support < est.MIN_INTERVAL_ROWS:
            rows = "rows accepted" if estimate.estimator == "replay" else "rows carry the estimate"
            out.append(
                f"{estimate.estimator}: only {estimate.support} of {n_rows} {rows}, fewer than "
                f"{est.MIN_INTERVAL_ROWS}: no interval is reported and the value is little more than a guess"
            )
    tiny = max((e.tiny_propensity_share or 0.0 for e in estimates.values()), default=0.0)
    if tiny > 0:
        out.append(
            f"{tiny:.2%} of logged propensities are below {est.TINY_PROPENSITY:g}: their weights can "
            "dominate IPS-type estimates"
        )
    return out

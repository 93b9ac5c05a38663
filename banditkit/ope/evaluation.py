"""``evaluate``: every requested estimator on one log, with shared bootstrap draws and warnings."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np
from numpy.typing import ArrayLike

from .._typing import FloatArray, RngLike
from .._validation import check_int, check_real
from ..errors import BanditkitError, InvalidParameterError, InvalidTypeError
from . import estimators as est
from .bootstrap import percentile_interval
from .comparison import Comparison, Ratio, recommend
from .logs import LoggedData, load_log
from .per_row import MODEL_BASED, estimator_terms, model_features
from .report import Estimate, Report
from .reward_model import (
    CrossedRidgeRewardModel,
    RidgeRewardModel,
    cross_fit_predictions,
    default_model,
    describe_model,
    sample_note,
    target_action_features,
)
from .streaming import DEFAULT_CHUNK_ROWS, evaluate_streamed, streams
from .targets import RowTarget, resolve_target

ESTIMATORS = ("replay", "ips", "clipped_ips", "snips", "dm", "dr", "switch_dr")
"""The estimators ``evaluate`` knows, by the names its ``estimators`` argument takes (all of them by default).

>>> import banditkit as bk
>>> bk.ope.ESTIMATORS
('replay', 'ips', 'clipped_ips', 'snips', 'dm', 'dr', 'switch_dr')
"""
#: An estimate whose effective sample size is below this share of the rows (or 100) gets a warning.
SMALL_ESS_SHARE = 0.01
SMALL_ESS_ROWS = 100


@overload
def evaluate(
    log: Any,
    target: Mapping[str, Any],
    estimators: str | Sequence[str] | None = None,
    *,
    reward_model: Any = None,
    action_features: ArrayLike | None = None,
    predicted_rewards: ArrayLike | None = None,
    n_folds: int = 5,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    clip_weight: float = 100.0,
    switch_weight: float = 20.0,
    rng: RngLike = 0,
    drop_unrewarded: bool = False,
    chunk_rows: int | None = None,
    model_rows: int | None = None,
) -> Comparison: ...


@overload
def evaluate(
    log: Any,
    target: Any,
    estimators: str | Sequence[str] | None = None,
    *,
    reward_model: Any = None,
    action_features: ArrayLike | None = None,
    predicted_rewards: ArrayLike | None = None,
    n_folds: int = 5,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    clip_weight: float = 100.0,
    switch_weight: float = 20.0,
    rng: RngLike = 0,
    drop_unrewarded: bool = False,
    chunk_rows: int | None = None,
    model_rows: int | None = None,
) -> Report: ...


def evaluate(
    log: Any,
    target: Any,
    estimators: str | Sequence[str] | None = None,
    *,
    reward_model: Any = None,
    action_features: ArrayLike | None = None,
    predicted_rewards: ArrayLike | None = None,
    n_folds: int = 5,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    clip_weight: float = 100.0,
    switch_weight: float = 20.0,
    rng: RngLike = 0,
    drop_unrewarded: bool = False,
    chunk_rows: int | None = None,
    model_rows: int | None = None,
) -> Report | Comparison:
    """Estimate the value of ``target`` from ``log`` with each estimator; one row per estimator.

    A mapping of named candidates gives a :class:`Comparison` instead: every estimator per candidate on
    one fold split and one set of bootstrap resamples, each value also relative to the logged policy's
    own, and a recommendation line (whole-log estimates; no per-position rows).

    Parameters
    ----------
    log : path, DataFrame, pyarrow Table, mapping of columns or LoggedData (see :func:`load_log`)
    target : Bandit, policy, deterministic actions, or probabilities (n, K) / (n, K, L); or a mapping
        name -> any of these, the candidates to compare
    estimators : names from ``ESTIMATORS``; default all of them ("replay" only for uniform logs)
    reward_model : DM/DR's model, cross-fitted: ``RidgeRewardModel()`` per arm by default,
        ``CrossedRidgeRewardModel()``, or any object with ``fit`` and ``predict`` / ``predict_proba``
        (a scikit-learn regressor or classifier)
    action_features : (K, m) features of each arm in the log's arm order (e.g. item features); a
        ``CrossedRidgeRewardModel`` or an estimator then fits all arms at once on
        :func:`~banditkit.ope.reward_model.crossed_features` (the per-arm ridge cannot use them)
    predicted_rewards : (n, K) array used instead of fitting a reward model
    n_folds, n_bootstrap, confidence : cross-fitting folds, bootstrap resamples, interval level
    model_rows : fit DM/DR's reward model on the log's first ``model_rows`` rows only (cross-fitted among
        them; every later row predicted by the model fitted on all of them, so no row is predicted by a
        model that saw its reward). Default: all rows. A streamed log then reads only those rows to fit
        the model; the report's model note says which rows the model saw.
    clip_weight, switch_weight : weight cap of clipped_ips and switch threshold of switch_dr
    rng : seed or numpy.random.Generator for the folds, the replay draws and the bootstrap
    drop_unrewarded : drop rows whose reward is missing instead of failing
    chunk_rows : stream a Parquet file or folder ``chunk_rows`` rows at a time (bounded memory, the same
        estimates); a Parquet log of more than ``streaming.STREAM_ROWS`` rows streams by default when
        the request can (see :mod:`banditkit.ope.streaming` for what a streamed log supports; by
        default its estimators are all but replay).

    Examples
    --------
    >>> log = {"arm": [0, 1, 0, 1], "reward": [1.0, 0.0, 1.0, 1.0], "propensity": [0.5] * 4}
    >>> report = evaluate(log, np.array([[1.0, 0.0]]), ["ips", "snips"], n_bootstrap=200)
    >>> report["ips"].value, report["snips"].value
    (1.0, 1.0)
    >>> both = evaluate(log, {"first": np.array([[1.0, 0.0]]), "second": np.array([[0.0, 1.0]])}, "ips")
    >>> both["first"]["ips"].value, both["second"]["ips"].value, both.ratios["first"]["ips"].value
    (1.0, 0.5, 1.3333333333333333)
    """
    generator = est.as_rng(rng)
    n_bootstrap = check_int("n_bootstrap", n_bootstrap, low=0)
    if model_rows is not None:
        model_rows = check_int("model_rows", model_rows, low=2)
        if predicted_rewards is not None:
            raise InvalidParameterError(
                "model_rows chooses the rows a reward model is fitted on; with predicted_rewards nothing is fitted"
            )
    confidence = check_real("confidence", confidence, low=0.0, high=1.0, low_open=True, high_open=True)
    # chunk_rows given: stream (or say why not); else a large Parquet log streams when the request can
    if (chunk_rows is not None or _streamable(target, estimators, reward_model, predicted_rewards)) and streams(
        log, chunk_rows
    ):
        return _evaluate_streamed(
            Path(log),
            target,
            estimators,
            generator,
            dict(
                reward_model=reward_model,
                action_features=action_features,
                n_folds=n_folds,
                n_bootstrap=n_bootstrap,
                confidence=confidence,
                clip_weight=clip_weight,
                switch_weight=switch_weight,
                chunk_rows=chunk_rows or DEFAULT_CHUNK_ROWS,
                drop_unrewarded=drop_unrewarded,
                model_rows=model_rows,
            ),
            predicted_rewards,
        )
    log = load_log(log, drop_unrewarded=drop_unrewarded)
    uniform = float(np.ptp(log.propensities)) <= 1e-12 * float(log.propensities.max())
    names = _estimator_names(estimators, uniform)
    if isinstance(target, Mapping):
        return _compare(
            log,
            target,
            names,
            generator,
            dict(
                reward_model=reward_model,
                action_features=action_features,
                predicted_rewards=predicted_rewards,
                n_folds=n_folds,
                model_rows=model_rows,
                clip_weight=clip_weight,
                switch_weight=switch_weight,
            ),
            n_bootstrap,
            confidence,
        )
    target_rows = resolve_target(target, log)
    probabilities, arms = target_rows.probabilities, target_rows.arms
    predictions = None
    if MODEL_BASED & set(names):
        predictions = _predictions(
            log, target_rows, reward_model, action_features, predicted_rewards, generator, n_folds, model_rows
        )
    terms = [
        estimator_terms(name, log, probabilities, arms, predictions, generator, clip_weight, switch_weight)
        for name in names
    ]
    estimates = _keyed(est.finish(terms, generator, n_bootstrap, confidence))
    by_position: dict[int, dict[str, Estimate]] = {}
    if log.positions is not None and log.n_positions > 1:
        for position in range(log.n_positions):
            rows = log.positions == position
            if rows.any():
                subset = [t.subset(rows) for t in terms]
                by_position[position] = _keyed(est.finish(subset, generator, n_bootstrap, confidence))
    note = (
        _model_note(reward_model, action_features, predicted_rewards, n_folds, log.n_rows, model_rows)
        if predictions is not None
        else None
    )
    return Report(estimates, by_position, tuple(_warnings(estimates, log.n_rows)), "in memory", note)


def _evaluate_streamed(
    path: Path,
    target: Any,
    estimators: str | Sequence[str] | None,
    generator: np.random.Generator,
    options: dict[str, Any],
    predicted_rewards: ArrayLike | None,
) -> Report:
    """``evaluate`` on a streamed Parquet log (see :mod:`banditkit.ope.streaming`)."""
    if isinstance(target, Mapping):
        raise InvalidParameterError("a streamed log evaluates one target at a time; pass each candidate in turn")
    if predicted_rewards is not None:
        raise InvalidParameterError(
            "predicted_rewards holds a row per logged decision and cannot stream; a streamed log fits its own "
            "ridge reward model (or evaluate in memory with chunk_rows=None)"
        )
    names = _streamed_names(estimators, "on a streamed log")
    estimates, by_position, source, note, n_rows = evaluate_streamed(path, target, names, generator, **options)
    return Report(estimates, by_position, tuple(_warnings(estimates, n_rows)), source, note)


def _streamable(
    target: Any, estimators: str | Sequence[str] | None, reward_model: Any, predicted_rewards: ArrayLike | None
) -> bool:
    """Whether a request can stream: a large log streams by itself only then (else it is read in memory)."""
    per_row = isinstance(target, np.ndarray) and target.ndim >= 2 and target.shape[0] > 1
    replay = estimators is not None and "replay" in ([estimators] if isinstance(estimators, str) else estimators)
    model = reward_model is None or isinstance(reward_model, (RidgeRewardModel, CrossedRidgeRewardModel))
    return not (isinstance(target, Mapping) or per_row or replay or predicted_rewards is not None or not model)


def _model_note(
    reward_model: Any,
    action_features: ArrayLike | None,
    predicted_rewards: ArrayLike | None,
    n_folds: int,
    n_rows: int,
    model_rows: int | None,
) -> str:
    """How the in-memory path got DM/DR's predicted rewards, for the report."""
    if predicted_rewards is not None:
        return "predicted_rewards given by the caller"
    model = describe_model(reward_model, action_features)
    sample = n_rows if model_rows is None else min(model_rows, n_rows)
    return f"{model}, {min(n_folds, sample)}-fold cross-fitted in memory on {sample_note(sample, n_rows)}"


def _compare(
    log: LoggedData,
    candidates: Mapping[str, Any],
    names: list[str],
    generator: np.random.Generator,
    options: dict[str, Any],
    n_bootstrap: int,
    confidence: float,
) -> Comparison:
    """Every estimator per candidate, the logged policy's own value, and ratios from one shared bootstrap."""
    if not candidates:
        raise InvalidParameterError("target must name at least one candidate, got an empty mapping")
    folds = copy.deepcopy(generator)  # every candidate's reward model sees the folds a one-target evaluate would
    predictions: dict[tuple[str, ...], FloatArray] = {}
    terms: dict[str, list[est.Terms]] = {}
    for name, target in candidates.items():
        if not isinstance(name, str) or not name:
            raise InvalidTypeError(f"candidate names must be non-empty strings, got {name!r}")
        try:
            rows = resolve_target(target, log)
        except BanditkitError as error:
            raise type(error)(f"candidate {name!r}: {error}") from error
        if MODEL_BASED & set(names) and rows.arm_names not in predictions:
            predictions[rows.arm_names] = _predictions(
                log,
                rows,
                options["reward_model"],
                options["action_features"],
                options["predicted_rewards"],
                copy.deepcopy(folds),
                options["n_folds"],
                options["model_rows"],
            )
        terms[name] = [
            estimator_terms(
                estimator,
                log,
                rows.probabilities,
                rows.arms,
                predictions.get(rows.arm_names),
                generator,
                options["clip_weight"],
                options["switch_weight"],
            )
            for estimator in names
        ]
    logged_terms = est.Terms("logged", log.rewards)
    flat = [t for candidate in terms.values() for t in candidate] + [logged_terms]
    sums = est.bootstrap_sums(flat, generator, n_bootstrap)
    estimates = est.estimates_from(flat, sums, confidence)
    logged = estimates[-1]
    results: dict[str, dict[str, Estimate]] = {}
    ratios: dict[str, dict[str, Ratio]] = {}
    for c, name in enumerate(terms):
        results[name] = {estimate.estimator: estimate for estimate in estimates[c * len(names) : (c + 1) * len(names)]}
        ratios[name] = {
            estimator: _ratio(results[name][estimator], logged, sums, c * len(names) + k, len(flat) - 1, confidence)
            for k, estimator in enumerate(names)
        }
    warnings = [f"{name}: {text}" for name in results for text in _warnings(results[name], log.n_rows)]
    return Comparison(results, logged, ratios, recommend(results, ratios), tuple(dict.fromkeys(warnings)))


def _ratio(
    estimate: Estimate, logged: Estimate, sums: FloatArray | None, column: int, base: int, confidence: float
) -> Ratio:
    """A candidate's value over the logged value; the interval from the ratio in each bootstrap resample."""
    value = estimate.value / logged.value if logged.value != 0 else np.nan
    if sums is None or np.isnan(estimate.low):
        return Ratio(float(value), np.nan, np.nan)
    numerator, denominator = sums[:, 2 * column], sums[:, 2 * column + 1]
    logged_sum, logged_rows = sums[:, 2 * base], sums[:, 2 * base + 1]
    keep = (denominator != 0) & (logged_sum != 0)
    replicates = (numerator[keep] / denominator[keep]) / (logged_sum[keep] / logged_rows[keep])
    low, high = percentile_interval(replicates, confidence)
    return Ratio(float(value), low, high)


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


def _streamed_names(estimators: str | Sequence[str] | None, where: str) -> list[str]:
    """The estimators of an evaluation that streams the log (``where``: "on a streamed log", "in Spark").

    All but replay by default; replay, which needs the whole log in memory, is refused.
    """
    if estimators is None:
        return [name for name in ESTIMATORS if name != "replay"]
    names = _estimator_names(estimators, uniform=True)
    if "replay" in names:
        raise InvalidParameterError(f"replay needs the whole log in memory for its draws; {where} use ips or snips")
    return names


def _predictions(
    log: LoggedData,
    rows: RowTarget,
    reward_model: Any,
    action_features: ArrayLike | None,
    predicted_rewards: ArrayLike | None,
    rng: np.random.Generator,
    n_folds: int,
    model_rows: int | None,
) -> FloatArray:
    n_arms = rows.probabilities.shape[1]
    if predicted_rewards is not None:
        predictions = np.asarray(predicted_rewards, dtype=np.float64)
        if predictions.shape != (log.n_rows, n_arms) or not np.isfinite(predictions).all():
            raise InvalidParameterError(
                f"predicted_rewards must be finite with shape {(log.n_rows, n_arms)}, got {predictions.shape}"
            )
        return predictions
    features = target_action_features(action_features, log.arm_names, rows.arm_names)
    return cross_fit_predictions(
        default_model(reward_model, features),
        model_features(log),
        rows.arms,
        log.rewards,
        n_arms,
        rng,
        n_folds,
        action_features=features,
        model_rows=model_rows,
    )


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

"""Reward models for DM, DR and Switch-DR, fit with K-fold cross-fitting.

The default is ridge regression per arm in closed form: per-arm sufficient
statistics ``A_k = X_k^T X_k`` and ``b_k = X_k^T (r_k - mean)`` are sums, so the
statistics of every (fold, arm) pair come from one vectorized pass and "fit on
all folds but f" is ``total - fold f`` (shrinkage pulls each arm towards the
training mean, so an arm with no rows predicts that mean). Any scikit-learn
regressor (``predict``) or classifier (``predict_proba``, the probability of
the largest class, e.g. a click) works too, one clone per (fold, arm).
Cross-fitting (Chernozhukov et al. 2018) means no row is ever predicted by a
model that saw its reward. A row's fold is a hash of (key, row index), so a
log read in chunks gets the folds it gets in one piece, and the ridge
statistics of the chunks add up to those of the whole log: streamed ridge
cross-fitting is exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._typing import AnyArray, FloatArray, IntArray
from .._validation import check_int, check_real
from ..errors import InvalidParameterError, InvalidTypeError
from .bootstrap import draw_key, mix


class RidgeRewardModel:
    """Per-arm ridge regression with penalty ``l2`` towards the training mean reward.

    Examples
    --------
    >>> x = np.array([[0.0], [1.0], [0.0], [1.0]])
    >>> model = RidgeRewardModel(l2=1e-9).fit(x, np.array([0, 0, 1, 1]), np.array([0.0, 1.0, 1.0, 1.0]), 2)
    >>> model.predict(np.array([[0.5]])).round(6).tolist()
    [[0.5, 1.0]]
    """

    def __init__(self, l2: float = 1.0):
        self.l2 = check_real("l2", l2, low=0.0, low_open=True)

    def fit(self, features: np.ndarray, arms: np.ndarray, rewards: np.ndarray, n_arms: int) -> RidgeRewardModel:
        gram, moments = ridge_statistics(features, arms, rewards, np.zeros_like(arms), n_arms, 1)
        self.mean_ = _mean_from(gram[0], moments[0])
        self.coefficients_ = solve_ridge(gram[0], moments[0], self.l2, self.mean_)
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        predictions: FloatArray = _design(features) @ self.coefficients_.T + self.mean_
        return predictions


def ridge_statistics(
    features: FloatArray, arms: IntArray, rewards: FloatArray, groups: IntArray, n_arms: int, n_groups: int
) -> tuple[FloatArray, FloatArray]:
    """Per (group, arm) Gram matrices ``X^T X`` (G, K, p, p) and moments ``X^T r`` (G, K, p).

    ``X`` is the design ``[1, features]``; each entry is one weighted ``bincount`` over the rows,
    a sequential pass with no gathering of rows.
    """
    width = features.shape[1] + 1
    size = n_groups * n_arms
    cell = groups * n_arms + arms

    def column(p: int) -> FloatArray | None:
        return None if p == 0 else features[:, p - 1]

    def cell_sums(*factors: FloatArray | None) -> AnyArray:
        given = [f for f in factors if f is not None]
        weights = given[0] * given[1] if len(given) == 2 else (given[0] if given else None)
        return np.bincount(cell, weights=weights, minlength=size)  # counts (int) without factors, else sums

    gram = np.empty((size, width, width))
    for p in range(width):
        for q in range(p, width):
            gram[:, p, q] = gram[:, q, p] = cell_sums(column(p), column(q))
    moments = np.stack([cell_sums(column(p), rewards) for p in range(width)], axis=1)
    return gram.reshape(n_groups, n_arms, width, width), moments.reshape(n_groups, n_arms, width)


def solve_ridge(gram: np.ndarray, moments: np.ndarray, l2: float, mean: float) -> np.ndarray:
    """Coefficients (K, p) of ridge towards ``mean``: (A + l2 I) w = X^T (r - mean) per arm."""
    width = gram.shape[-1]
    centred = moments - mean * gram[..., 0]  # column 0 of the Gram matrix is X^T 1
    return np.linalg.solve(gram + l2 * np.eye(width), centred[..., None])[..., 0]


def _mean_from(gram: np.ndarray, moments: np.ndarray) -> float:
    rows = gram[..., 0, 0].sum()
    return float(moments[..., 0].sum() / rows) if rows > 0 else 0.0


def _design(features: np.ndarray) -> np.ndarray:
    """Features with a leading column of ones."""
    return np.column_stack([np.ones(features.shape[0]), features])


def cross_fit_predictions(
    model: Any,
    features: np.ndarray | None,
    arms: np.ndarray,
    rewards: np.ndarray,
    n_arms: int,
    rng: np.random.Generator,
    n_folds: int = 5,
) -> np.ndarray:
    """Out-of-fold predicted reward of every arm on every row, shape (n, K).

    ``model`` is a :class:`RidgeRewardModel` or a scikit-learn regressor/classifier; rows are split
    into ``n_folds`` (at most n) random folds with ``rng`` and each fold is predicted by a model fit on the others.

    Examples
    --------
    >>> import numpy as np
    >>> arms, rewards = np.array([0, 1, 0, 1, 0, 1]), np.array([1.0, 0.0, 1.0, 0.0, 1.0, 1.0])
    >>> predicted = cross_fit_predictions(RidgeRewardModel(), None, arms, rewards, 2, np.random.default_rng(0), 3)
    >>> predicted.shape, bool((predicted[:, 0] > predicted[:, 1]).all())  # arm 0 rewarded more often
    ((6, 2), True)
    """
    n_rows = arms.shape[0]
    n_folds = min(check_int("n_folds", n_folds, low=2), n_rows)  # at most one fold per row
    if n_folds < 2:
        raise InvalidParameterError(f"cross-fitting needs at least 2 logged rows, got {n_rows}")
    if features is None:
        features = np.zeros((n_rows, 0))
    folds = row_folds(draw_key(rng), 0, n_rows, n_folds)
    if isinstance(model, RidgeRewardModel):
        gram, moments = ridge_statistics(features, arms, rewards, folds, n_arms, n_folds)
        return predict_folds(fold_coefficients(gram, moments, model.l2), features, folds)
    if not hasattr(model, "fit") or not (hasattr(model, "predict") or hasattr(model, "predict_proba")):
        raise InvalidTypeError(f"reward_model must be a RidgeRewardModel or a scikit-learn estimator, got {model!r}")
    return _cross_fit_estimator(model, features, arms, rewards, folds, n_arms, n_folds)


def row_folds(key: int, first_row: int, n_rows: int, n_folds: int) -> IntArray:
    """Fold of rows ``first_row .. first_row + n_rows - 1``: a random, balanced split that chunks reproduce.

    Rows go in consecutive blocks of ``n_folds``; each block is a permutation of the folds, drawn by
    sorting hashes of (key, row index). Fold sizes differ by at most one block's remainder.

    Examples
    --------
    >>> folds = row_folds(key=3, first_row=0, n_rows=10, n_folds=5)
    >>> np.bincount(folds).tolist()
    [2, 2, 2, 2, 2]
    >>> bool((row_folds(3, 4, 6, 5) == folds[4:]).all())  # a chunk gets the folds of its rows
    True
    """
    first_block = first_row // n_folds
    n_blocks = -(-(first_row + n_rows) // n_folds) - first_block
    counters = np.uint64(key % (1 << 64)) + np.arange(
        first_block * n_folds, (first_block + n_blocks) * n_folds, dtype=np.uint64
    )
    permutations = np.argsort(mix(counters).reshape(n_blocks, n_folds), axis=1).reshape(-1)
    start = first_row - first_block * n_folds
    return permutations[start : start + n_rows]


def fold_coefficients(gram: FloatArray, moments: FloatArray, l2: float) -> tuple[FloatArray, FloatArray]:
    """Ridge slopes (F, d, K) and offsets (F, K) per fold from per-(fold, arm) statistics: "total - fold f"."""
    train_gram, train_moments = gram.sum(axis=0) - gram, moments.sum(axis=0) - moments  # (F, K, ...)
    slopes, offsets = [], []
    for fold in range(gram.shape[0]):
        mean = _mean_from(train_gram[fold], train_moments[fold])
        coefficients = solve_ridge(train_gram[fold], train_moments[fold], l2, mean)  # (K, 1 + d)
        slopes.append(np.ascontiguousarray(coefficients[:, 1:].T))
        offsets.append(coefficients[:, 0] + mean)
    return np.stack(slopes), np.stack(offsets)


def predict_folds(
    coefficients: tuple[FloatArray, FloatArray], features: FloatArray, folds: IntArray, chunk: int = 16_384
) -> FloatArray:
    """Predicted reward (n, K) of each row by its fold's model (slopes, offsets from :func:`fold_coefficients`)."""
    slopes, offsets = coefficients
    predictions = np.empty((features.shape[0], offsets.shape[1]))
    # Chunks of rows small enough to stay in cache while every fold writes its rows of the chunk.
    for start in range(0, features.shape[0], chunk):
        chunk_folds, chunk_features = folds[start : start + chunk], features[start : start + chunk]
        out = predictions[start : start + chunk]
        for fold in range(offsets.shape[0]):
            rows = np.flatnonzero(chunk_folds == fold)
            out[rows] = chunk_features[rows] @ slopes[fold] + offsets[fold]
    return predictions


def _cross_fit_estimator(
    model: Any, features: FloatArray, arms: IntArray, rewards: FloatArray, folds: IntArray, n_arms: int, n_folds: int
) -> FloatArray:
    from sklearn.base import clone

    classifier = hasattr(model, "predict_proba")
    predictions = np.empty((arms.shape[0], n_arms))
    for fold in range(n_folds):
        test, train = folds == fold, folds != fold
        fallback = rewards[train].mean() if train.any() else 0.0
        for arm in range(n_arms):
            rows = train & (arms == arm)
            values = np.unique(rewards[rows])
            if values.shape[0] < 2:  # nothing to learn: the constant it saw, or the fold mean
                predictions[test, arm] = values[0] if values.shape[0] else fallback
                continue
            fitted = clone(model).fit(features[rows], rewards[rows])
            if classifier:  # expected reward: class probabilities times the class values
                predictions[test, arm] = fitted.predict_proba(features[test]) @ fitted.classes_.astype(float)
            else:
                predictions[test, arm] = fitted.predict(features[test])
    return predictions

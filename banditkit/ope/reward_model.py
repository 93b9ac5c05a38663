"""Reward models for DM, DR and Switch-DR, fit with K-fold cross-fitting.

Two in-house models, both closed-form ridge regressions whose statistics are sums:

* :class:`RidgeRewardModel` (the default) fits ridge per arm on the context: per-arm sufficient
  statistics ``A_k = X_k^T X_k`` and ``b_k = X_k^T (r_k - mean)``
  come from one vectorized pass, and "fit on all folds but f" is ``total - fold f`` (shrinkage pulls
  each arm towards the training mean, so an arm with no rows predicts that mean).
* :class:`CrossedRidgeRewardModel` (for ``action_features``, e.g. the Open Bandit Dataset's item
  features) fits one ridge for all arms on the crossed feature map of
  :func:`crossed_features`, ``[x, onehot(a), z_a, x (outer) z_a]``: arms with few rewards borrow
  strength from arms with similar features.

Any other object with ``fit`` and ``predict`` (a scikit-learn regressor) or ``predict_proba`` (a
classifier: the expected reward over ``classes_``) works too, duck-typed (scikit-learn is never
imported here unless the model is one of its estimators, to clone it): one copy per (fold, arm) on
the context without action features, one copy per fold on the crossed feature map with them.
Cross-fitting (Chernozhukov et al. 2018) means no row is ever predicted by a model that saw its
reward. A row's fold is a hash of (key, row index), so a log read in chunks gets the folds it gets
in one piece, and the ridge statistics of the chunks add up to those of the whole log: streamed
ridge cross-fitting is exact.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

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


def crossed_features(
    contexts: ArrayLike, arms: ArrayLike, action_features: ArrayLike | None, n_arms: int
) -> FloatArray:
    """The crossed feature map of (context, arm) pairs: ``[x, onehot(a), z_a, x (outer) z_a]`` per row.

    ``x`` is the row's context (d), ``onehot(a)`` the arm's indicator (K), ``z_a`` the arm's row of
    ``action_features`` (K, m) and ``x (outer) z_a`` their products ``x_i * z_a[j]`` in row-major
    order (d * m): a linear model on these has a context effect, an effect per arm, an effect of the
    arm's features and an effect of every (context feature, arm feature) pair. Without action
    features (``None``) the map is ``[x, onehot(a)]``. Width ``d + K + m + d m``.

    Examples
    --------
    >>> contexts = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> items = np.array([[10.0], [20.0]])  # one feature per arm
    >>> crossed_features(contexts, [1, 0], items, 2).tolist()  # x, onehot(a), z_a, x * z_a
    [[1.0, 2.0, 0.0, 1.0, 20.0, 20.0, 40.0], [3.0, 4.0, 1.0, 0.0, 10.0, 30.0, 40.0]]
    """
    x = np.asarray(contexts, dtype=np.float64)
    arm_index = np.asarray(arms, dtype=np.int64)
    n_rows, d = x.shape
    z = np.zeros((n_arms, 0)) if action_features is None else np.asarray(action_features, dtype=np.float64)
    m = z.shape[1]
    out = np.zeros((n_rows, d + n_arms + m + d * m))
    out[:, :d] = x
    out[np.arange(n_rows), d + arm_index] = 1.0
    if m:
        item = z[arm_index]
        out[:, d + n_arms : d + n_arms + m] = item
        out[:, d + n_arms + m :] = (x[:, :, None] * item[:, None, :]).reshape(n_rows, d * m)
    return out


def check_action_features(action_features: ArrayLike | None, n_arms: int) -> FloatArray | None:
    """``action_features`` as a finite (K, m) float array with a row per arm, or None.

    Examples
    --------
    >>> check_action_features([[0.5], [1.0]], 2).shape
    (2, 1)
    """
    if action_features is None:
        return None
    z = np.asarray(action_features, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] != n_arms:
        raise InvalidParameterError(
            f"action_features must have shape (K, m) with a row per arm (K = {n_arms}), got shape {z.shape}"
        )
    if not np.isfinite(z).all():
        row, column = (int(i) for i in np.argwhere(~np.isfinite(z))[0])
        raise InvalidParameterError(
            f"action_features must be finite, got {float(z[row, column])!r} at arm {row}, column {column}"
        )
    return z


class CrossedRidgeRewardModel:
    """One ridge regression for all arms on :func:`crossed_features`, penalty ``l2``, towards the mean reward.

    With item features (``action_features``, one row per arm) an arm with few rewards borrows
    strength from the arms it resembles, and every (context feature, item feature) pair gets its own
    slope. The fit is closed form from the Gram matrix ``D^T D`` of the design ``D = [1, phi(x, a)]``,
    a sum over rows: cross-fitting subtracts one fold's sums from the total, and a streamed log adds
    its chunks' sums (exact). Prediction for every arm is factored,
    ``q(x, .) = c + x w_x + (w_a + Z w_z) + (x W) Z^T``, never materialising the (n K, p) design.

    Examples
    --------
    >>> contexts = np.array([[0.0], [1.0], [0.0], [1.0]])
    >>> items = np.array([[0.0], [1.0]])  # arm 1 has the item feature, arm 0 not
    >>> arms, rewards = np.array([0, 0, 1, 1]), np.array([0.0, 0.0, 0.0, 1.0])
    >>> model = CrossedRidgeRewardModel(l2=1e-9).fit(contexts, arms, rewards, items)
    >>> model.predict(np.array([[1.0]])).round(6).tolist()  # reward only for context 1 with arm 1
    [[0.0, 1.0]]
    """

    def __init__(self, l2: float = 1.0):
        self.l2 = check_real("l2", l2, low=0.0, low_open=True)

    def fit(
        self, features: np.ndarray, arms: np.ndarray, rewards: np.ndarray, action_features: np.ndarray | None
    ) -> CrossedRidgeRewardModel:
        n_arms = int(np.max(arms)) + 1 if action_features is None else np.asarray(action_features).shape[0]
        z = check_action_features(action_features, n_arms)
        gram, moments = crossed_statistics(features, arms, rewards, np.zeros_like(arms), 1, z, n_arms)
        mean = _mean_from(gram[0], moments[0])
        self.action_features_ = np.zeros((n_arms, 0)) if z is None else z
        self.mean_ = mean
        self.coefficients_ = solve_ridge(gram[0], moments[0], self.l2, mean)
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        return predict_crossed(self.coefficients_, self.mean_, features, self.action_features_)


def crossed_statistics(
    features: FloatArray,
    arms: IntArray,
    rewards: FloatArray,
    groups: IntArray,
    n_groups: int,
    action_features: FloatArray | None,
    n_arms: int,
    block: int = 4096,
) -> tuple[FloatArray, FloatArray]:
    """Per group Gram matrices ``D^T D`` (G, p, p) and moments ``D^T r`` (G, p) of ``D = [1, crossed_features]``.

    Rows go ``block`` at a time, so memory is ``block * p`` whatever the number of rows.
    """
    width = 1 + crossed_width(features.shape[1], n_arms, action_features)
    gram, moments = np.zeros((n_groups, width, width)), np.zeros((n_groups, width))
    for start in range(0, features.shape[0], block):
        rows = slice(start, start + block)
        design = _design(crossed_features(features[rows], arms[rows], action_features, n_arms))
        block_groups, block_rewards = groups[rows], rewards[rows]
        for group in range(n_groups):
            mask = block_groups == group
            if mask.all():
                part, part_rewards = design, block_rewards
            elif mask.any():
                part, part_rewards = design[mask], block_rewards[mask]
            else:
                continue
            gram[group] += part.T @ part
            moments[group] += part_rewards @ part
    return gram, moments


def crossed_width(n_features: int, n_arms: int, action_features: FloatArray | None) -> int:
    """Width of :func:`crossed_features`: ``d + K + m + d m``."""
    m = 0 if action_features is None else action_features.shape[1]
    return n_features + n_arms + m + n_features * m


def predict_crossed(
    coefficients: FloatArray, mean: float, features: FloatArray, action_features: FloatArray
) -> FloatArray:
    """Predicted reward (n, K) of every arm from crossed-ridge coefficients (1 + p,), factored per block."""
    d, (n_arms, m) = features.shape[1], action_features.shape
    intercept, w_x = coefficients[0], coefficients[1 : 1 + d]
    w_arm = coefficients[1 + d : 1 + d + n_arms]
    w_z = coefficients[1 + d + n_arms : 1 + d + n_arms + m]
    w_cross = coefficients[1 + d + n_arms + m :].reshape(d, m)
    per_arm = w_arm + action_features @ w_z  # (K,)
    predictions: FloatArray = (features @ w_x + (mean + intercept))[:, None] + per_arm[None, :]
    if m:
        predictions += (features @ w_cross) @ action_features.T
    return predictions


def crossed_fold_coefficients(gram: FloatArray, moments: FloatArray, l2: float) -> tuple[FloatArray, FloatArray]:
    """Crossed-ridge coefficients (F, 1 + p) and training means (F,) per fold: "total - fold f"."""
    train_gram, train_moments = gram.sum(axis=0) - gram, moments.sum(axis=0) - moments
    means = np.array([_mean_from(train_gram[f], train_moments[f]) for f in range(gram.shape[0])])
    width = gram.shape[-1]
    centred = train_moments - means[:, None] * train_gram[:, :, 0]
    coefficients = np.linalg.solve(train_gram + l2 * np.eye(width), centred[..., None])[..., 0]
    return coefficients, means


def predict_crossed_folds(
    fitted: tuple[FloatArray, FloatArray], features: FloatArray, folds: IntArray, action_features: FloatArray
) -> FloatArray:
    """Predicted reward (n, K) of each row by its fold's crossed-ridge model."""
    coefficients, means = fitted
    predictions = np.empty((features.shape[0], action_features.shape[0]))
    for fold in range(coefficients.shape[0]):
        rows = np.flatnonzero(folds == fold)
        if rows.shape[0]:
            predictions[rows] = predict_crossed(coefficients[fold], float(means[fold]), features[rows], action_features)
    return predictions


def fold_count(n_folds: int, sample_rows: int, n_rows: int) -> int:
    """The folds of a cross-fit on the first ``sample_rows`` of a log's ``n_rows``: ``n_folds``, at most one per row."""
    n_folds = min(check_int("n_folds", n_folds, low=2), sample_rows)
    if n_folds < 2:
        raise InvalidParameterError(f"cross-fitting needs at least 2 logged rows, got {n_rows}")
    return n_folds


def cross_fit_predictions(
    model: Any,
    features: np.ndarray | None,
    arms: np.ndarray,
    rewards: np.ndarray,
    n_arms: int,
    rng: np.random.Generator,
    n_folds: int = 5,
    *,
    action_features: ArrayLike | None = None,
    model_rows: int | None = None,
) -> np.ndarray:
    """Out-of-fold predicted reward of every arm on every row, shape (n, K).

    ``model`` is a :class:`RidgeRewardModel`, a :class:`CrossedRidgeRewardModel` or any object with
    ``fit`` and ``predict`` / ``predict_proba`` (scikit-learn regressors and classifiers); rows are split
    into ``n_folds`` (at most n) random folds with ``rng`` and each fold is predicted by a model fit on
    the others. ``action_features`` (K, m), one row per arm: a model other than the per-arm ridge is
    fit once per fold on :func:`crossed_features`; without them, one copy per (fold, arm) on the context.
    ``model_rows``: fit on the first ``model_rows`` rows only (cross-fitted among them), each later row
    predicted by the model fitted on all of them (see :func:`sample_folds`); default all rows.

    Examples
    --------
    >>> import numpy as np
    >>> arms, rewards = np.array([0, 1, 0, 1, 0, 1]), np.array([1.0, 0.0, 1.0, 0.0, 1.0, 1.0])
    >>> predicted = cross_fit_predictions(RidgeRewardModel(), None, arms, rewards, 2, np.random.default_rng(0), 3)
    >>> predicted.shape, bool((predicted[:, 0] > predicted[:, 1]).all())  # arm 0 rewarded more often
    ((6, 2), True)
    """
    n_rows = arms.shape[0]
    sample = n_rows if model_rows is None else min(check_int("model_rows", model_rows, low=2), n_rows)
    n_folds = fold_count(n_folds, sample, n_rows)
    if features is None:
        features = np.zeros((n_rows, 0))
    check_reward_model(model)
    z = check_action_features(action_features, n_arms)
    default_model(model, z)  # action features with the per-arm ridge: an error that says what to pass
    folds = sample_folds(draw_key(rng), 0, n_rows, n_folds, sample)
    groups = n_folds + (sample < n_rows)  # the extra group: the rows after the sample
    fit = slice(0, sample)
    if isinstance(model, RidgeRewardModel):
        gram, moments = ridge_statistics(features[fit], arms[fit], rewards[fit], folds[fit], n_arms, groups)
        return predict_folds(fold_coefficients(gram, moments, model.l2), features, folds)
    if isinstance(model, CrossedRidgeRewardModel):
        gram, crossed_moments = crossed_statistics(
            features[fit], arms[fit], rewards[fit], folds[fit], groups, z, n_arms
        )
        fitted = crossed_fold_coefficients(gram, crossed_moments, model.l2)
        return predict_crossed_folds(fitted, features, folds, np.zeros((n_arms, 0)) if z is None else z)
    if z is None:
        return _cross_fit_per_arm(model, features, arms, rewards, folds, n_arms, n_folds)
    return _cross_fit_crossed(model, features, arms, rewards, folds, n_folds, z)


def check_reward_model(model: Any) -> None:
    """Raise a TypeError naming ``reward_model`` unless it is an in-house model or has fit and predict(_proba).

    Examples
    --------
    >>> check_reward_model(RidgeRewardModel())
    >>> try:
    ...     check_reward_model("ridge")
    ... except TypeError as error:
    ...     print(str(error).split(", got ")[1])
    'ridge' (str), which has no fit and no predict or predict_proba
    """
    if isinstance(model, (RidgeRewardModel, CrossedRidgeRewardModel)):
        return
    missing = [name for name in ("fit",) if not callable(getattr(model, name, None))]
    if not callable(getattr(model, "predict", None)) and not callable(getattr(model, "predict_proba", None)):
        missing.append("predict or predict_proba")
    if missing:
        raise InvalidTypeError(
            "reward_model must be a RidgeRewardModel, a CrossedRidgeRewardModel or an estimator with fit and "
            f"predict (or predict_proba), got {model!r} ({type(model).__name__}), "
            f"which has no {' and no '.join(missing)}"
        )


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


def sample_folds(key: int, first_row: int, n_rows: int, n_folds: int, model_rows: int) -> IntArray:
    """Groups of rows ``first_row ..`` when the reward model is fitted on the log's first ``model_rows`` rows.

    Rows of the sample get their :func:`row_folds` fold (predicted out of fold); later rows get the extra
    group ``n_folds``, which no sample row is in, so its "out-of-fold" model is the one fitted on the whole
    sample: proper sample splitting, no row is predicted by a model that saw its reward.

    Examples
    --------
    >>> sample_folds(key=3, first_row=0, n_rows=12, n_folds=5, model_rows=10)[10:].tolist()
    [5, 5]
    >>> bool((sample_folds(3, 0, 12, 5, 10)[:10] == row_folds(3, 0, 10, 5)).all())
    True
    """
    inside = max(0, min(n_rows, model_rows - first_row))
    folds = np.full(n_rows, n_folds, dtype=np.intp)
    if inside:
        folds[:inside] = row_folds(key, first_row, inside, n_folds)
    return folds


def sample_note(model_rows: int, n_rows: int) -> str:
    """The rows a reward model was fitted on, for the report's note: all of them or the stated sample."""
    if model_rows >= n_rows:
        return f"all {n_rows:,} rows"
    return (
        f"the first {model_rows:,} of {n_rows:,} rows (model_rows; each later row predicted by the model "
        f"fitted on all {model_rows:,})"
    )


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
        first = int(chunk_folds[0]) if chunk_folds.shape[0] else 0
        if (chunk_folds == first).all():  # one group (rows after a model_rows sample): no gathering
            np.matmul(chunk_features, slopes[first], out=out)
            out += offsets[first]
            continue
        for fold in range(offsets.shape[0]):
            rows = np.flatnonzero(chunk_folds == fold)
            out[rows] = chunk_features[rows] @ slopes[fold] + offsets[fold]
    return predictions


def fresh_copy(model: Any) -> Any:
    """An unfitted copy of ``model``: scikit-learn's ``clone`` for its estimators, else a deep copy."""
    if callable(getattr(model, "get_params", None)) and type(model).__module__.startswith("sklearn"):
        from sklearn.base import clone  # only ever imported for a scikit-learn estimator

        return clone(model)
    return copy.deepcopy(model)


def predict_expected(model: Any, features: FloatArray) -> FloatArray:
    """Expected reward per row: ``predict_proba`` times ``classes_`` for a classifier, else ``predict``; finite."""
    if callable(getattr(model, "predict_proba", None)) and hasattr(model, "classes_"):
        values = np.asarray(model.predict_proba(features), dtype=np.float64) @ np.asarray(
            model.classes_, dtype=np.float64
        )
    elif callable(getattr(model, "predict", None)):
        values = np.asarray(model.predict(features), dtype=np.float64).reshape(-1)
    else:
        raise InvalidTypeError(
            f"reward_model {type(model).__name__} has predict_proba but no classes_ after fit, and no predict: "
            "cannot turn its output into an expected reward"
        )
    if values.shape != (features.shape[0],):
        raise InvalidParameterError(
            f"reward_model {type(model).__name__} returned {values.shape} predictions for {features.shape[0]} rows"
        )
    if not np.isfinite(values).all():
        row = int(np.flatnonzero(~np.isfinite(values))[0])
        raise InvalidParameterError(
            f"reward_model {type(model).__name__} predicted a non-finite reward ({float(values[row])!r}); "
            "DM and DR need finite predictions (check the model and its features)"
        )
    return values


def _cross_fit_per_arm(
    model: Any, features: FloatArray, arms: IntArray, rewards: FloatArray, folds: IntArray, n_arms: int, n_folds: int
) -> FloatArray:
    """One copy of ``model`` per (fold, arm), fit on that arm's rows of the other folds.

    Rows in group ``n_folds`` (after a ``model_rows`` sample) are never trained on and are predicted by
    the copies fitted on every fold.
    """
    predictions = np.empty((arms.shape[0], n_arms))
    for fold in range(n_folds + 1):
        test, train = folds == fold, (folds != fold) & (folds < n_folds)
        if not test.any():
            continue
        fallback = rewards[train].mean() if train.any() else 0.0
        for arm in range(n_arms):
            rows = train & (arms == arm)
            values = np.unique(rewards[rows])
            if values.shape[0] < 2:  # nothing to learn: the constant it saw, or the fold mean
                predictions[test, arm] = values[0] if values.shape[0] else fallback
                continue
            fitted = fresh_copy(model).fit(features[rows], rewards[rows])
            predictions[test, arm] = predict_expected(fitted, features[test])
    return predictions


def _cross_fit_crossed(
    model: Any,
    features: FloatArray,
    arms: IntArray,
    rewards: FloatArray,
    folds: IntArray,
    n_folds: int,
    action_features: FloatArray,
) -> FloatArray:
    """One copy of ``model`` per fold on :func:`crossed_features`; every arm of a held-out row predicted.

    Rows in group ``n_folds`` (after a ``model_rows`` sample) are predicted by a copy fitted on every fold.
    """
    n_arms = action_features.shape[0]
    predictions = np.empty((arms.shape[0], n_arms))
    for fold in range(n_folds + 1):
        test, train = np.flatnonzero(folds == fold), (folds != fold) & (folds < n_folds)
        if not test.shape[0]:
            continue
        values = np.unique(rewards[train])
        if values.shape[0] < 2:  # nothing to learn: the constant it saw
            predictions[test] = values[0] if values.shape[0] else 0.0
            continue
        fitted = fresh_copy(model).fit(
            crossed_features(features[train], arms[train], action_features, n_arms), rewards[train]
        )
        predictions[test] = predict_every_arm(fitted, features[test], action_features)
    return predictions


def predict_every_arm(
    fitted: Any, features: FloatArray, action_features: FloatArray, block_pairs: int = 1 << 16
) -> FloatArray:
    """A fitted model's expected reward (n, K) for every (row, arm) pair, ``block_pairs`` pairs at a time.

    Examples
    --------
    >>> class ArmIndicator:  # predicts the crossed map's indicator of arm 1
    ...     def predict(self, x):
    ...         return x[:, 2]
    >>> predict_every_arm(ArmIndicator(), np.zeros((2, 1)), np.zeros((2, 0))).tolist()
    [[0.0, 1.0], [0.0, 1.0]]
    """
    n_arms = action_features.shape[0]
    predictions = np.empty((features.shape[0], n_arms))
    rows_per_block = max(1, block_pairs // n_arms)
    all_arms = np.arange(n_arms)
    for start in range(0, features.shape[0], rows_per_block):
        rows = features[start : start + rows_per_block]
        pairs = crossed_features(
            np.repeat(rows, n_arms, axis=0), np.tile(all_arms, rows.shape[0]), action_features, n_arms
        )
        predictions[start : start + rows.shape[0]] = predict_expected(fitted, pairs).reshape(rows.shape[0], n_arms)
    return predictions


def default_model(reward_model: Any, action_features: ArrayLike | None) -> Any:
    """``reward_model``, or the default per-arm ridge; action features need a model that uses them.

    The default stays the per-arm ridge: on the Open Bandit Dataset sample it gave DR's lowest error
    (docs/ope.md); the crossed ridge is one ``reward_model=CrossedRidgeRewardModel()`` away.

    Examples
    --------
    >>> type(default_model(None, None)).__name__
    'RidgeRewardModel'
    >>> type(default_model(CrossedRidgeRewardModel(), [[1.0], [0.0]])).__name__
    'CrossedRidgeRewardModel'
    """
    model = RidgeRewardModel() if reward_model is None else reward_model
    if action_features is not None and isinstance(model, RidgeRewardModel):
        given = "the default reward model" if reward_model is None else "RidgeRewardModel"
        raise InvalidParameterError(
            f"action_features need a reward model that uses them, and {given} fits ridge per arm, where "
            "features constant within an arm add nothing: pass reward_model=CrossedRidgeRewardModel() or an "
            "estimator with fit and predict (see docs/ope.md, Reward models)"
        )
    return model


def describe_model(reward_model: Any, action_features: ArrayLike | None) -> str:
    """What DM/DR's model is, for a report's ``reward_model`` line.

    Examples
    --------
    >>> describe_model(None, None)
    'ridge per arm (l2=1)'
    """
    model = default_model(reward_model, action_features)
    width = "" if action_features is None else f", {np.asarray(action_features).shape[1]} action features"
    if isinstance(model, RidgeRewardModel):
        return f"ridge per arm (l2={model.l2:g})"
    if isinstance(model, CrossedRidgeRewardModel):
        return f"crossed ridge for all arms (l2={model.l2:g}{width})"
    if action_features is None:
        return f"{type(model).__name__} per arm"
    return f"{type(model).__name__} for all arms on the crossed feature map ({width[2:]})"


def target_action_features(
    action_features: ArrayLike | None, log_arms: tuple[str, ...], target_arms: tuple[str, ...]
) -> FloatArray | None:
    """``action_features`` (rows in the log's arm order) reordered to the target's arm order, checked.

    Examples
    --------
    >>> target_action_features([[0.0], [1.0]], ("a", "b"), ("b", "a")).tolist()
    [[1.0], [0.0]]
    """
    z = check_action_features(action_features, len(log_arms))
    if z is None or log_arms == target_arms:
        return z
    index = {name: i for i, name in enumerate(log_arms)}
    missing = [name for name in target_arms if name not in index]
    if missing:
        raise InvalidParameterError(
            f"action_features has a row per arm of the log {list(log_arms)[:5]}; the target's arm {missing[0]!r} "
            "is not one of them"
        )
    return z[[index[name] for name in target_arms]]

"""Online feature standardisation: running mean and variance kept as state arrays.

Each observed context is first folded into the running statistics (Welford's
update, so a row is standardised with statistics that include it) and then
mapped to ``(x - mean) / sd``. A feature whose variance is zero, or negligible
next to its mean (a constant), gets sd 1, so it maps to 0 instead of NaN.
Selection uses the statistics as they stand. Many rows into one state give
exactly the statistics of folding them one by one: prefix sums around a fixed
shift reproduce each intermediate step.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .._typing import FloatArray, IntArray

#: A variance below this fraction of mean**2 is rounding noise on a constant feature.
RELATIVE_VARIANCE_FLOOR = 1e-24


def init_feature_stats(batch: int, n_features: int) -> dict[str, FloatArray]:
    """No context seen yet: count 0, mean 0, sum of squared deviations 0."""
    return {
        "feature_count": np.zeros(batch),
        "feature_mean": np.zeros((batch, n_features)),
        "feature_m2": np.zeros((batch, n_features)),
    }


def standardize(contexts: FloatArray, mean: FloatArray, m2: FloatArray, count: FloatArray) -> FloatArray:
    """``(x - mean) / sd`` elementwise; all arguments broadcast to the shape of ``contexts``."""
    variance = m2 / np.maximum(count, 1.0)
    usable = (variance > 0) & (variance > RELATIVE_VARIANCE_FLOOR * mean * mean)
    sd = np.sqrt(np.where(usable, variance, 1.0))
    return (contexts - mean) / sd


def transform(stats: Mapping[str, FloatArray], contexts: FloatArray, rows: IntArray) -> FloatArray:
    """Standardise contexts (n, d) with the statistics of their state rows, as they stand."""
    count = stats["feature_count"][rows, None]
    return standardize(contexts, stats["feature_mean"][rows], stats["feature_m2"][rows], count)


def fold_and_transform(
    stats: Mapping[str, FloatArray], contexts: FloatArray, rows: IntArray
) -> tuple[dict[str, FloatArray], FloatArray]:
    """Fold contexts (n, d) into their state's statistics in row order; return new stats and standardised rows.

    Rows that share a state (state batch 1) are folded in order, and row i is
    standardised with the statistics after folding rows 0..i.
    """
    count0, mean0, m20 = stats["feature_count"], stats["feature_mean"], stats["feature_m2"]
    if count0.shape[0] == 1:
        groups = contexts[None]  # (1, n, d): every row goes to the one state
    else:
        groups = contexts[:, None]  # (n, 1, d): one row per state
        count0, mean0, m20 = count0[rows], mean0[rows], m20[rows]
    count0 = count0[:, None, None]
    # Shift by the current mean (or the first row when nothing was seen) to keep the sums small.
    shift = np.where(count0[:, 0] > 0, mean0, groups[:, 0])[:, None, :]
    deviations = groups - shift
    sums = count0 * (mean0[:, None, :] - shift) + np.cumsum(deviations, axis=1)
    squares = m20[:, None, :] + count0 * (mean0[:, None, :] - shift) ** 2 + np.cumsum(deviations * deviations, axis=1)
    counts = count0 + np.arange(1, groups.shape[1] + 1)[None, :, None]
    means = shift + sums / counts
    m2s = np.maximum(squares - sums * sums / counts, 0.0)
    standardized = standardize(groups, means, m2s, counts).reshape(contexts.shape)
    new = {"feature_count": counts[:, -1, 0], "feature_mean": means[:, -1], "feature_m2": m2s[:, -1]}
    if stats["feature_count"].shape[0] != 1:
        new = {key: _scatter(stats[key], rows, value) for key, value in new.items()}
    return new, standardized


def _scatter(old: FloatArray, rows: IntArray, values: FloatArray) -> FloatArray:
    fresh = old.copy()
    fresh[rows] = values
    return fresh

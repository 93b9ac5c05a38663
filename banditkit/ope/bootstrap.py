"""Poisson bootstrap of weighted sums: the resampling behind every OPE interval.

Every estimator here is a ratio of two sums over logged rows, ``sum(a) / sum(d)``
(``d = 1`` for plain means). A bootstrap resample reweights row ``i`` by a
count ``c_i``; the Poisson bootstrap draws the counts independently from
Poisson(1) (Hanley & MacGibbon 2006; Chamandy et al. 2012), which matches the
multinomial bootstrap to first order and needs no global coordination, so it
streams through the rows in chunks.

The counts are drawn *exactly* and cheaply: each count comes from 16 random
bits through an inverse-CDF table of Poisson(1). The 8 of the 65,536 table
cells that straddle a CDF step are resolved with a fresh 53-bit uniform inside
the cell, so every count follows Poisson(1) to double precision. One pass
gives the sums of all requested columns at once (common random numbers across
estimators). With numba installed (``banditkit[fast]``) the pass is compiled;
otherwise numpy does it in chunks. Both paths consume the same random bits and
give the same counts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import numpy as np

from .._typing import FloatArray, IntArray

_CELLS = 1 << 16
_FALLBACK = 255
#: Target number of (resample, row) cells per chunk: 16 MB of random bits.
_CHUNK_CELLS = 1 << 23


def _poisson_cdf() -> np.ndarray:
    """CDF of Poisson(1) at 0, 1, 2, ... until it rounds to 1."""
    terms, values, k = [], [], 0
    while True:
        terms.append(math.exp(-1.0) / math.factorial(k))
        values.append(math.fsum(terms))
        if values[-1] >= 1.0:
            return np.array(values)
        k += 1


_CDF = _poisson_cdf()


def _count_table() -> np.ndarray:
    """Poisson(1) count of each 16-bit cell, or ``_FALLBACK`` where the cell straddles a CDF step."""
    cells = np.arange(_CELLS + 1) / _CELLS
    low = np.searchsorted(_CDF, cells[:-1], side="right")
    high = np.searchsorted(_CDF, np.nextafter(cells[1:], 0.0), side="right")
    return np.where(low == high, low, _FALLBACK).astype(np.uint8)


_TABLE = _count_table()


def _kernel() -> Callable[[IntArray, IntArray, FloatArray, FloatArray], IntArray] | None:
    """The compiled pass, or None without numba (or with BANDITKIT_DISABLE_JIT set)."""
    if os.environ.get("BANDITKIT_DISABLE_JIT", "") not in ("", "0"):
        return None
    try:
        from ._bootstrap_kernel import weighted_sums
    except ImportError:
        return None
    return weighted_sums


def poisson_bootstrap_sums(
    columns: np.ndarray, n_resamples: int, rng: np.random.Generator, *, compiled: bool | None = None
) -> np.ndarray:
    """Sums of each column under ``n_resamples`` Poisson(1) reweightings of the rows.

    Parameters
    ----------
    columns : array, shape (n, m)
        Per-row statistics (numerators and denominators of the estimators).
    n_resamples : int
        Number of bootstrap resamples B.
    rng : numpy.random.Generator
        Source of the random bits (advanced by about ``B * n / 4`` 64-bit draws).
    compiled : bool or None
        Force the numba (True) or numpy (False) pass; None picks numba when installed.

    Returns
    -------
    array, shape (B, m): ``sums[b, j] = sum_i c[b, i] * columns[i, j]``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> sums = poisson_bootstrap_sums(np.ones((1000, 1)), 200, rng)
    >>> bool(abs(sums.mean() / 1000 - 1) < 0.01)
    True
    """
    columns = np.ascontiguousarray(columns, dtype=np.float64)
    n_rows, n_columns = columns.shape
    kernel = _kernel() if compiled in (None, True) else None
    if compiled and kernel is None:
        raise RuntimeError("the compiled bootstrap needs numba: pip install banditkit[fast]")
    words = -(-n_rows // 4)
    chunk = max(1, min(n_resamples, _CHUNK_CELLS // max(n_rows, 1)))
    sums = np.zeros((n_resamples, n_columns))
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        raw = rng.bit_generator.random_raw(size * words).reshape(size, words)
        if kernel is not None:
            cells = kernel(raw, _TABLE, columns, sums[start : start + size])
        else:
            cells = _numpy_pass(raw, columns, sums[start : start + size])
        _resolve_fallbacks(cells, columns, sums[start : start + size], rng)
    return sums


def _numpy_pass(raw: np.ndarray, columns: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Add table counts times columns into ``out``; return the straddling cells (resample, row, cell)."""
    n_rows = columns.shape[0]
    bits = raw.view("<u2").reshape(raw.shape[0], -1)[:, :n_rows]
    counts = np.take(_TABLE, bits)
    resample, row = np.nonzero(counts == _FALLBACK)
    counts[resample, row] = 0
    out += counts.astype(np.float64) @ columns
    return np.stack([resample, row, bits[resample, row]], axis=1)


def _resolve_fallbacks(cells: np.ndarray, columns: np.ndarray, out: np.ndarray, rng: np.random.Generator) -> None:
    """Draw the exact count of each straddling cell with a uniform inside it, add its contribution."""
    if cells.shape[0] == 0:
        return
    uniform = (cells[:, 2] + rng.random(cells.shape[0])) / _CELLS
    counts = np.searchsorted(_CDF, uniform, side="right").astype(np.float64)
    np.add.at(out, cells[:, 0], counts[:, None] * columns[cells[:, 1]])


def ratio_replicates(sums: np.ndarray, numerator: int, denominator: int) -> np.ndarray:
    """Bootstrap replicates ``sums[:, numerator] / sums[:, denominator]``, dropping empty resamples."""
    den = sums[:, denominator]
    keep = den != 0
    replicates: FloatArray = sums[keep, numerator] / den[keep]
    return replicates


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates; NaN when there are none."""
    if replicates.size == 0:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(replicates, [tail, 1.0 - tail])
    return float(low), float(high)

"""Poisson bootstrap of weighted sums: the resampling behind every OPE interval.

Every estimator here is a ratio of two sums over logged rows, ``sum(a) / sum(d)``
(``d = 1`` for plain means). A bootstrap resample reweights row ``i`` by a
count ``c_i``; the Poisson bootstrap draws the counts independently from
Poisson(1) (Hanley & MacGibbon 2006; Chamandy et al. 2012), which matches the
multinomial bootstrap to first order and needs no global coordination, so it
streams through the rows in chunks.

The counts are drawn *exactly* and cheaply: each count comes from 16 random
bits through an inverse-CDF table of Poisson(1). The 8 of the 65,536 table
cells that straddle a CDF step are resolved with a 53-bit uniform inside the
cell, so every count follows Poisson(1) to double precision.

The bits are counter-based: the count of row ``i`` in resample ``b`` is a pure
function of (key, b, i), a SplitMix64 hash (Steele et al. 2014) of the three.
A log read in chunks therefore gets exactly the counts it gets in one piece,
whatever the chunk boundaries (``first_row`` places a chunk in the log), which
is what lets a larger-than-memory log stream with the same intervals. One pass
gives the sums of all requested columns at once (common random numbers across
estimators). With numba installed (``banditkit[fast]``) the pass is compiled;
otherwise numpy does it in chunks. Both paths hash the same counters and give
the same counts.
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


#: SplitMix64 constants: the golden-ratio increment and the two multipliers of its finaliser.
_GOLDEN, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
#: A resample's counters start at ``b << 40``: room for 2^42 rows (4 per 64-bit word) per resample.
_RESAMPLE_SHIFT = 40
#: Offset of the counters of the uniforms that resolve straddling cells (one per cell, not per word).
_FALLBACK_STREAM = 0x5851F42D4C957F2D


def mix(counters: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of uint64 counters (in place when given a fresh array): 64 well-mixed bits each."""
    z = counters + _GOLDEN
    z ^= z >> np.uint64(30)
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    return z


def draw_key(rng: np.random.Generator) -> int:
    """A 64-bit key for counter-based draws (bootstrap counts, folds), from ``rng`` (one 64-bit draw)."""
    return int(rng.bit_generator.random_raw())


def _kernel() -> Callable[..., IntArray] | None:
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
        Source of the bootstrap's key (advanced by one 64-bit draw); see :func:`keyed_bootstrap_sums`.
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
    return keyed_bootstrap_sums(columns, n_resamples, draw_key(rng), compiled=compiled)


def keyed_bootstrap_sums(
    columns: np.ndarray,
    n_resamples: int,
    key: int,
    *,
    first_row: int = 0,
    out: np.ndarray | None = None,
    compiled: bool | None = None,
) -> np.ndarray:
    """Add the Poisson-bootstrap sums of rows ``first_row, first_row + 1, ...`` of a log into ``out``.

    Row ``first_row + i`` of resample ``b`` gets the count hashed from (key, b, first_row + i), so the
    sums of consecutive chunks add up to the sums of the whole log in one call.

    Parameters
    ----------
    columns : array, shape (n, m)
        This chunk's per-row statistics.
    n_resamples : int
        Number of bootstrap resamples B.
    key : int
        The bootstrap's 64-bit key (:func:`draw_key`).
    first_row : int
        Index in the whole log of the chunk's first row.
    out : array, shape (B, m), optional
        Running sums to add into; a new zero array by default.
    compiled : bool or None
        Force the numba (True) or numpy (False) pass; None picks numba when installed.

    Examples
    --------
    >>> columns = np.arange(10.0)[:, None]
    >>> whole = keyed_bootstrap_sums(columns, 50, key=7)
    >>> parts = keyed_bootstrap_sums(columns[:3], 50, key=7)
    >>> parts = keyed_bootstrap_sums(columns[3:], 50, key=7, first_row=3, out=parts)
    >>> bool(np.allclose(whole, parts))
    True
    """
    columns = np.ascontiguousarray(columns, dtype=np.float64)
    n_rows, n_columns = columns.shape
    if out is None:
        out = np.zeros((n_resamples, n_columns))
    kernel = _kernel() if compiled in (None, True) else None
    if compiled and kernel is None:
        raise RuntimeError("the compiled bootstrap needs numba: pip install banditkit[fast]")
    if n_rows == 0 or n_resamples == 0:
        return out
    key_word = np.uint64(key % (1 << 64))
    words = ((first_row + n_rows - 1) >> 2) - (first_row >> 2) + 1
    chunk = max(1, min(n_resamples, _CHUNK_CELLS // max(4 * words, 1)))
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        if kernel is not None:
            cells = kernel(key_word, first_row, start, _TABLE, columns, out[start : start + size])
        else:
            cells = _numpy_pass(key_word, first_row, start, columns, out[start : start + size])
        _resolve_fallbacks(cells, columns, out, key_word, first_row)
    return out


def _numpy_pass(
    key: np.uint64, first_row: int, first_resample: int, columns: np.ndarray, out: np.ndarray
) -> np.ndarray:
    """Add table counts times columns into ``out``; return the straddling cells (resample, row, cell)."""
    n_rows = columns.shape[0]
    first_word, lane = first_row >> 2, first_row & 3
    words = ((first_row + n_rows - 1) >> 2) - first_word + 1
    resamples = (np.arange(out.shape[0], dtype=np.uint64) + np.uint64(first_resample)) << np.uint64(_RESAMPLE_SHIFT)
    counters = key + resamples[:, None] + (np.arange(words, dtype=np.uint64) + np.uint64(first_word))[None, :]
    bits = mix(counters).view("<u2").reshape(out.shape[0], -1)[:, lane : lane + n_rows]
    counts = np.take(_TABLE, bits)
    resample, row = np.nonzero(counts == _FALLBACK)
    counts[resample, row] = 0
    out += counts.astype(np.float64) @ columns
    return np.stack([resample + first_resample, row, bits[resample, row]], axis=1)


def _resolve_fallbacks(cells: np.ndarray, columns: np.ndarray, out: np.ndarray, key: np.uint64, first_row: int) -> None:
    """Exact count of each straddling cell (resample, row, cell) from a hashed uniform inside it."""
    if cells.shape[0] == 0:
        return
    resample, row = cells[:, 0].astype(np.uint64), cells[:, 1].astype(np.uint64)
    stream = np.uint64((int(key) + _FALLBACK_STREAM + first_row) % (1 << 64))  # Python ints: no scalar overflow
    counters = (resample << np.uint64(_RESAMPLE_SHIFT + 2)) + row + stream
    uniform = (cells[:, 2] + (mix(counters) >> np.uint64(11)) * 2.0**-53) / _CELLS
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

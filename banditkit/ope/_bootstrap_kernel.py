"""Compiled pass of the Poisson bootstrap (numba); see :mod:`banditkit.ope.bootstrap`."""

from __future__ import annotations

import numba
import numpy as np

_BLOCK = 2048
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_RESAMPLE_SHIFT = np.uint64(40)


@numba.njit(cache=True, nogil=True, inline="always")
def _mix(counter):
    z = counter + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, nogil=True)
def _pass(key, first_row, first_resample, table, columns, out, cells, found):
    """Add count * row into ``out`` per resample; record straddling cells per resample.

    Rows go in blocks that stay in cache while every resample of the chunk reads them; one hash per
    4 rows (16 bits each), the same counters as ``bootstrap._numpy_pass``.
    """
    n_rows, n_columns = columns.shape
    capacity = cells.shape[1]
    for start in range(0, n_rows, _BLOCK):
        stop = min(start + _BLOCK, n_rows)
        for resample in range(out.shape[0]):
            base = key + (np.uint64(first_resample + resample) << _RESAMPLE_SHIFT)
            word = np.uint64(0)
            for row in range(start, stop):
                position = np.uint64(first_row + row)
                lane = position & np.uint64(3)
                if row == start or lane == np.uint64(0):
                    word = _mix(base + (position >> np.uint64(2)))
                bits = (word >> (np.uint64(16) * lane)) & np.uint64(0xFFFF)
                count = table[bits]
                if count == 255:
                    slot = found[resample]
                    if slot < capacity:
                        cells[resample, slot, 0] = row
                        cells[resample, slot, 1] = bits
                    found[resample] = slot + 1
                    continue
                for column in range(n_columns):
                    out[resample, column] += count * columns[row, column]


def weighted_sums(
    key: np.uint64, first_row: int, first_resample: int, table: np.ndarray, columns: np.ndarray, out: np.ndarray
) -> np.ndarray:
    """Numba twin of ``bootstrap._numpy_pass``: same counters, same counts, same straddling cells."""
    n_resamples, n_rows = out.shape[0], columns.shape[0]
    expected = n_rows * 8 / table.shape[0]
    capacity = int(4 * expected) + 64
    while True:
        cells = np.empty((n_resamples, capacity, 2), dtype=np.int64)
        found = np.zeros(n_resamples, dtype=np.int64)
        partial = np.zeros_like(out)
        _pass(key, first_row, first_resample, table, columns, partial, cells, found)
        if found.max(initial=0) <= capacity:
            break
        capacity = int(found.max())  # astronomically rare: redo with room for every cell
    out += partial
    resample = np.repeat(np.arange(n_resamples) + first_resample, found)
    taken = (
        np.concatenate([cells[r, : found[r]] for r in range(n_resamples)])
        if found.sum()
        else np.empty((0, 2), dtype=np.int64)
    )
    return np.column_stack([resample, taken]).astype(np.int64)

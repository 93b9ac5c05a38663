"""Compiled pass of the Poisson bootstrap (numba); see :mod:`banditkit.ope.bootstrap`."""

from __future__ import annotations

import numba
import numpy as np

_BLOCK = 2048


@numba.njit(cache=True, nogil=True)
def _pass(raw, table, columns, out, cells, found):
    """Add count * row into ``out`` per resample; record straddling cells per resample.

    Rows go in blocks that stay in cache while every resample of the chunk reads them.
    """
    n_rows, n_columns = columns.shape
    capacity = cells.shape[1]
    for start in range(0, n_rows, _BLOCK):
        stop = min(start + _BLOCK, n_rows)
        for resample in range(raw.shape[0]):
            for row in range(start, stop):
                bits = (raw[resample, row >> 2] >> np.uint64(16 * (row & 3))) & np.uint64(0xFFFF)
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


def weighted_sums(raw: np.ndarray, table: np.ndarray, columns: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Numba twin of ``bootstrap._numpy_pass``: same bits, same counts, same straddling cells."""
    n_resamples, n_rows = raw.shape[0], columns.shape[0]
    expected = n_rows * 8 / table.shape[0]
    capacity = int(4 * expected) + 64
    while True:
        cells = np.empty((n_resamples, capacity, 2), dtype=np.int64)
        found = np.zeros(n_resamples, dtype=np.int64)
        partial = np.zeros_like(out)
        _pass(raw, table, columns, partial, cells, found)
        if found.max(initial=0) <= capacity:
            break
        capacity = int(found.max())  # astronomically rare: redo with room for every cell
    out += partial
    resample = np.repeat(np.arange(n_resamples), found)
    taken = (
        np.concatenate([cells[r, : found[r]] for r in range(n_resamples)])
        if found.sum()
        else np.empty((0, 2), dtype=np.int64)
    )
    return np.column_stack([resample, taken]).astype(np.int64)

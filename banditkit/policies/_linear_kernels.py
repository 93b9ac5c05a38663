"""Compiled one-row kernels of the linear policies (loaded through :func:`banditkit.policies._jit.kernels`).

Each mirrors the numpy path in :mod:`banditkit.policies._ridge` and
:mod:`banditkit.policies.linear`: the same formulas, the same random draws in
the same order (so the same decisions), and results equal to rounding
(different summation order; the tests compare both paths).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._jit_kernels import _generator, random_tie_argmax


@numba.njit(cache=True)
def linear_select(pointers, theta, A_inv, x, mask, scale, thompson):
    """One arm for one context: LinUCB (``scale`` = alpha) or LinTS (``scale`` = v, one normal per arm).

    theta (K, d), A_inv (K, d, d), x (d,), mask (K,) bool.
    """
    n_arms, dim = theta.shape
    scores = np.empty(n_arms)
    spreads = np.empty(n_arms)
    for arm in range(n_arms):
        mean = 0.0
        width = 0.0
        for i in range(dim):
            mean += theta[arm, i] * x[i]
            row = 0.0
            for j in range(dim):
                row += A_inv[arm, i, j] * x[j]
            width += row * x[i]
        scores[arm] = mean
        spreads[arm] = scale * math.sqrt(max(width, 0.0))
    if thompson:
        rng = _generator(pointers)
        for arm in range(n_arms):  # the numpy path draws standard_normal((1, K)): same order
            scores[arm] += spreads[arm] * rng.standard_normal()
    else:
        for arm in range(n_arms):
            scores[arm] += spreads[arm]
    return random_tie_argmax(pointers, scores, mask)


@numba.njit(cache=True)
def rank1_update(A, b, A_inv, theta, arm, x, reward):
    """Add one row to arm ``arm`` in place (A, A_inv (K, d, d); b, theta (K, d)); return 1 + x^T A^-1 x."""
    dim = x.shape[0]
    projected = np.zeros(dim)
    for i in range(dim):
        for j in range(dim):
            projected[i] += A_inv[arm, i, j] * x[j]
    denominator = 1.0
    for i in range(dim):
        denominator += projected[i] * x[i]
    for i in range(dim):
        b[arm, i] += reward * x[i]
        for j in range(dim):
            A[arm, i, j] += x[i] * x[j]
            A_inv[arm, i, j] -= projected[i] * projected[j] / denominator
    for i in range(dim):
        total = 0.0
        for j in range(dim):
            total += A_inv[arm, i, j] * b[arm, j]
        theta[arm, i] = total
    return denominator

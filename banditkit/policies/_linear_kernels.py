"""Compiled one-row kernels of the linear policies (loaded through :func:`banditkit.policies._ridge.linear_kernels`).

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


@numba.njit(cache=True)
def replay_rows(
    pointers,
    A,
    b,
    A_inv,
    theta,
    rank1_updates,
    feature_count,
    feature_mean,
    feature_m2,
    standardize,
    relative_floor,
    contexts,
    logged,
    rewards,
    mask,
    scale,
    thompson,
    start,
    accepted,
    steps,
    refresh_every,
    drift,
):
    """Replay rows ``start`` on: decide each as one ``select`` would, learn the rows whose arm is the logged one.

    The state (A, A_inv (K, D, D); b, theta (K, D); rank1_updates (K,); with ``standardize`` the feature
    statistics feature_count (1,), feature_mean and feature_m2 (d,)) is updated in place, each accepted
    row by :func:`standardize_row` and :func:`rank1_update` as one ``update`` does; contexts (n, d), logged
    (n,) arm indices, rewards (n,), mask (K,). Accepted rows go to ``accepted[steps:]`` until it is full.
    Returns (next row, steps, arm whose caches need a rebuild from ``A`` now or -1): the caller rebuilds
    them as ``update`` would (a drifted cache or ``refresh_every`` rank-1 steps) and calls again.
    """
    for row in range(start, contexts.shape[0]):
        features = contexts[row]
        if standardize:
            features = standardize_row(
                feature_count[0], feature_mean, feature_m2, contexts[row], False, relative_floor
            )[0]
        arm = linear_select(pointers, theta, A_inv, features, mask, scale, thompson)
        if arm != logged[row]:
            continue
        if standardize:
            features, count, mean, m2 = standardize_row(
                feature_count[0], feature_mean, feature_m2, contexts[row], True, relative_floor
            )
            feature_count[0] = count
            feature_mean[:] = mean
            feature_m2[:] = m2
        denominator = rank1_update(A, b, A_inv, theta, arm, features, rewards[row])
        rank1_updates[arm] += 1
        accepted[steps] = row
        steps += 1
        if not (denominator >= 1.0 - drift and rank1_updates[arm] < refresh_every):
            return row + 1, steps, arm
        if steps == accepted.shape[0]:
            return row + 1, steps, -1
    return contexts.shape[0], steps, -1


_Z_BREAKS = np.arange(-8.0, 8.5, 2.0)
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(6)
_SQRT_2PI = math.sqrt(2.0 * math.pi)


@numba.njit(cache=True)
def _ndtr(z):
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


@numba.njit(cache=True)
def gaussian_argmax_row(means, sds, mask, point_mass_sd):
    """One row of :func:`banditkit.policies._gaussian_argmax.gaussian_argmax_probabilities`, same quadrature."""
    n_arms = means.shape[0]
    out = np.zeros(n_arms)
    continuous = np.zeros(n_arms, dtype=np.bool_)
    floor = -np.inf
    for arm in range(n_arms):
        continuous[arm] = mask[arm] and sds[arm] > point_mass_sd
        if mask[arm]:
            floor = max(floor, means[arm] - (8.0 * sds[arm] if continuous[arm] else 0.0))
    arms = [
        arm for arm in range(n_arms) if mask[arm] and means[arm] + (8.0 * sds[arm] if continuous[arm] else 0.0) >= floor
    ]
    if len(arms) == 0:
        return out
    if len(arms) == 1:
        out[arms[0]] = 1.0
        return out
    low, high, point_best, any_continuous = -np.inf, -np.inf, -np.inf, False
    for arm in arms:
        if continuous[arm]:
            any_continuous = True
            low = max(low, means[arm] - 8.0 * sds[arm])
            high = max(high, means[arm] + 8.0 * sds[arm])
        else:
            point_best = max(point_best, means[arm])
    low = max(low, point_best)
    if any_continuous and high > low:
        cuts = np.empty(len(arms) * _Z_BREAKS.shape[0])
        for i, arm in enumerate(arms):
            for j in range(_Z_BREAKS.shape[0]):
                cut = means[arm] + sds[arm] * _Z_BREAKS[j] if continuous[arm] else means[arm]
                cuts[i * _Z_BREAKS.shape[0] + j] = min(max(cut, low), high)
        cuts.sort()
        count = len(arms)
        cdf, pdf, after = np.empty(count), np.zeros(count), np.empty(count + 1)
        for piece in range(cuts.shape[0] - 1):
            half = 0.5 * (cuts[piece + 1] - cuts[piece])
            if half <= 0.0:
                continue
            for node in range(_NODES.shape[0]):
                t = cuts[piece] + half + half * _NODES[node]
                for i, arm in enumerate(arms):
                    if continuous[arm]:
                        z = (t - means[arm]) / sds[arm]
                        cdf[i] = _ndtr(z)
                        pdf[i] = math.exp(-0.5 * z * z) / (sds[arm] * _SQRT_2PI)
                    else:  # a point mass: the step 1[t > m]
                        cdf[i] = 1.0 if t > means[arm] else 0.0
                after[count] = 1.0
                for i in range(count - 1, -1, -1):
                    after[i] = after[i + 1] * cdf[i]
                before = 1.0
                for i, arm in enumerate(arms):  # prod over the others = prefix * suffix, no division
                    if continuous[arm]:
                        out[arm] += half * _WEIGHTS[node] * pdf[i] * before * after[i + 1]
                    before *= cdf[i]
    if point_best > -np.inf:
        ties = 0
        for arm in arms:
            if not continuous[arm] and means[arm] == point_best:
                ties += 1
        beats_all = 1.0
        for arm in arms:
            if continuous[arm]:
                beats_all *= _ndtr((point_best - means[arm]) / sds[arm])
        for arm in arms:
            if not continuous[arm] and means[arm] == point_best:
                out[arm] = beats_all / ties
    total = out.sum()
    for arm in range(n_arms):
        out[arm] /= total
    return out


@numba.njit(cache=True)
def standardize_row(count, mean, m2, x, fold, relative_floor):
    """One context through :mod:`banditkit.policies._standardize`: optionally fold it in, then standardise.

    Returns (features with the intercept appended (d + 1,), count, mean, m2), the
    statistics new arrays when ``fold`` and the inputs otherwise.
    """
    dim = x.shape[0]
    if fold:
        new_mean, new_m2 = np.empty(dim), np.empty(dim)
        new_count = count + 1.0
        for j in range(dim):
            shift = mean[j] if count > 0 else x[j]
            deviation = x[j] - shift
            total = count * (mean[j] - shift) + deviation
            squares = m2[j] + count * (mean[j] - shift) ** 2 + deviation * deviation
            new_mean[j] = shift + total / new_count
            new_m2[j] = max(squares - total * total / new_count, 0.0)
        count, mean, m2 = new_count, new_mean, new_m2
    features = np.empty(dim + 1)
    for j in range(dim):
        variance = m2[j] / max(count, 1.0)
        usable = variance > 0 and variance > relative_floor * mean[j] * mean[j]
        features[j] = (x[j] - mean[j]) / (math.sqrt(variance) if usable else 1.0)
    features[dim] = 1.0
    return features, count, mean, m2

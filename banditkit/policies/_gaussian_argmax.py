"""P(arm k has the largest score) for independent Gaussian scores, by 1-d quadrature.

Linear Thompson sampling draws, for one context x, arm scores
``x^T theta_k ~ N(m_k, s_k^2)`` that are independent across arms. The chance
that arm k wins is the 1-d integral

    P_k = integral phi_k(t) * prod_{j != k} Phi_j(t) dt,

evaluated here by composite Gauss-Legendre quadrature: the real line is cut at
``m_j + s_j * z`` for every arm j and ``z`` in -8, -6, ..., 8, so every piece
is at most two standard deviations wide *for every arm*, and the integrand is
a smooth function at that scale. Six nodes per piece give an absolute error
below 1e-8 (tested against adaptive quadrature); the mass beyond 8 standard
deviations is below 1e-15, so an arm whose mean + 8 sd lies below another
arm's mean - 8 sd is left out (its probability is below 1e-15). Arms with ``s_k == 0`` are point masses and are
handled in closed form, so an all-zero context (every ``s == 0``) gives the
tie-aware argmax distribution.
"""

from __future__ import annotations

import numpy as np

from .._typing import BoolArray, FloatArray

_Z_BREAKS = np.arange(-8.0, 8.5, 2.0)
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(6)
_SQRT_2PI = np.sqrt(2.0 * np.pi)
#: Scores with a smaller standard deviation are treated as point masses (avoids overflow in 1/sd).
POINT_MASS_SD = 1e-150
#: Rows per chunk: bounds the (rows, arms, nodes) temporaries to a few MB.
_CHUNK = 256


def gaussian_argmax_probabilities(means: np.ndarray, sds: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Probability that each allowed arm has the largest independent Gaussian score.

    Parameters
    ----------
    means, sds : shape (n, K); ``sds >= 0``, a zero means a point mass.
    mask : shape (n, K) bool; arms outside it never win and get probability 0.

    Returns shape (n, K), rows summing to 1 (absolute error per entry < 1e-8).

    >>> p = gaussian_argmax_probabilities(np.array([[0.0, 0.0]]), np.array([[1.0, 1.0]]),
    ...                                   np.ones((1, 2), bool))
    >>> bool(np.allclose(p, 0.5, atol=1e-12))
    True
    """
    out = np.zeros(means.shape)
    contenders = _contenders(means, sds, mask)
    counts = contenders.sum(axis=1)
    # Rows grouped by their number of contenders, packed to the left: a row with a single
    # contender needs no integral, and most rows of a trained model have two or three.
    for count in np.unique(counts[counts > 0]):  # a row with no allowed arm stays all zero
        rows = np.flatnonzero(counts == count)
        order = np.argsort(~contenders[rows], axis=1, kind="stable")[:, :count]
        for start in range(0, rows.shape[0], _CHUNK):
            chunk, chunk_order = rows[start : start + _CHUNK], order[start : start + _CHUNK]
            packed = [np.take_along_axis(a[chunk], chunk_order, axis=1) for a in (means, sds, contenders)]
            values = np.ones((chunk.shape[0], 1)) if count == 1 else _chunk_probabilities(*packed)
            block = np.zeros((chunk.shape[0], means.shape[1]))
            np.put_along_axis(block, chunk_order, values, axis=1)
            out[chunk] = block
    return out


def _contenders(means: np.ndarray, sds: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Allowed arms that can win: an arm whose score stays below 8 sd under another's 8-sd floor cannot (P < 1e-15)."""
    spread = np.where(sds > POINT_MASS_SD, 8.0 * sds, 0.0)
    floor = np.where(mask, means - spread, -np.inf).max(axis=1, keepdims=True)
    contenders: BoolArray = mask & (means + spread >= floor)
    return contenders


def _chunk_probabilities(means: np.ndarray, sds: np.ndarray, mask: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr  # deferred: scipy.special is slow to import

    continuous = mask & (sds > POINT_MASS_SD)
    point = mask & ~continuous
    safe_sds = np.where(continuous, sds, 1.0)
    probabilities = np.zeros(means.shape)

    if continuous.any():
        t, weights = _quadrature_nodes(means, safe_sds, continuous, point)  # (n, T)
        z = (t[:, None, :] - means[:, :, None]) / safe_sds[:, :, None]  # (n, K, T)
        cdf = np.where(continuous[:, :, None], ndtr(z), 1.0)
        # A point-mass arm j contributes the step 1[t > m_j].
        cdf = np.where(point[:, :, None] & (t[:, None, :] <= means[:, :, None]), 0.0, cdf)
        pdf = np.exp(-0.5 * z * z) / (safe_sds[:, :, None] * _SQRT_2PI)
        integrand = pdf * _product_of_others(cdf)
        probabilities = np.where(continuous, np.einsum("nkt,nt->nk", integrand, weights), 0.0)

    if point.any():
        probabilities += _point_mass_probabilities(means, safe_sds, continuous, point)
    normalised: FloatArray = probabilities / probabilities.sum(axis=1, keepdims=True)
    return normalised


def _product_of_others(factors: np.ndarray) -> np.ndarray:
    """prod_{j != k} factors[:, j, :] for every k, without division (prefix times suffix products)."""
    ones = np.ones_like(factors[:, :1])
    before = np.cumprod(np.concatenate([ones, factors[:, :-1]], axis=1), axis=1)
    after = np.cumprod(np.concatenate([ones, factors[:, :0:-1]], axis=1), axis=1)[:, ::-1]
    return before * after


def _quadrature_nodes(
    means: FloatArray, safe_sds: FloatArray, continuous: BoolArray, point: BoolArray
) -> tuple[FloatArray, FloatArray]:
    """Gauss-Legendre nodes and weights on the pieces cut at every arm's breakpoints, shape (n, T)."""
    cuts = means[:, :, None] + safe_sds[:, :, None] * _Z_BREAKS  # (n, K, Z)
    # Non-continuous arms cut once at their point (or not at all when masked): reuse a continuous cut.
    anchor = np.take_along_axis(cuts[:, :, 0], continuous.argmax(axis=1)[:, None], axis=1)[:, :, None]
    cuts = np.where(continuous[:, :, None], cuts, np.where(point[:, :, None], means[:, :, None], anchor))
    cuts = np.sort(cuts.reshape(cuts.shape[0], -1), axis=1)
    # Integrate only where some continuous arm has mass.
    # Below the largest "mean - 8 sd" that arm's factor is < 1e-15: no arm wins there.
    low = np.where(continuous, means - 8.0 * safe_sds, -np.inf).max(axis=1, keepdims=True)
    low = np.maximum(low, np.where(point, means, -np.inf).max(axis=1, keepdims=True))
    high = np.where(continuous, means + 8.0 * safe_sds, -np.inf).max(axis=1, keepdims=True)
    has_mass = np.isfinite(low) & (high > low)
    cuts = np.clip(cuts, np.where(has_mass, low, 0.0), np.where(has_mass, high, 0.0))
    left, right = cuts[:, :-1], cuts[:, 1:]
    useful = (right > left).any(axis=0)  # drop pieces that are empty in every row
    left, right = left[:, useful], right[:, useful]
    half = 0.5 * (right - left)
    t = (left + half)[:, :, None] + half[:, :, None] * _NODES
    weights = half[:, :, None] * _WEIGHTS
    return t.reshape(t.shape[0], -1), np.broadcast_to(weights, t.shape).reshape(t.shape[0], -1)


def _point_mass_probabilities(
    means: FloatArray, safe_sds: FloatArray, continuous: BoolArray, point: BoolArray
) -> FloatArray:
    """P(a point-mass arm wins): it must top the other point masses (ties share) and every continuous arm."""
    from scipy.special import log_ndtr

    point_best = np.where(point, means, -np.inf).max(axis=1, keepdims=True)
    at_top = point & (means == point_best)
    share = at_top / np.maximum(at_top.sum(axis=1, keepdims=True), 1)
    z = (point_best - means) / safe_sds  # (n, K): each continuous arm below the top point mass
    beats_all = np.exp(np.where(continuous, log_ndtr(z), 0.0).sum(axis=1, keepdims=True))
    probabilities: FloatArray = share * beats_all
    return probabilities

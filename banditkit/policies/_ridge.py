"""Per-arm ridge regression state for the linear contextual policies.

The source of truth is additive: ``A = l2*I + sum x x^T`` and ``b = sum r x``
per arm. ``A_inv`` and ``theta = A_inv b`` are caches: a one-row update keeps
them current with a Sherman-Morrison rank-1 step (O(d^2)), and they are
rebuilt from ``A`` by a Cholesky solve (never an explicit ``inv``) after a
batch update, every :data:`REFRESH_EVERY` rank-1 steps of an arm, or when a
rank-1 step looks numerically unsound.
"""

from __future__ import annotations

import warnings

import numpy as np

#: Rank-1 cache updates of an arm between two rebuilds from ``A``.
REFRESH_EVERY = 1000
#: Condition number of an arm's ``A`` above which its estimates are flagged as unreliable.
CONDITION_WARNING = 1e10
#: Rows per chunk when one state scores many contexts (bounds the (rows, K, d) temporary).
_CHUNK = 8192


class IllConditionedWarning(UserWarning):
    """An arm's design matrix is close to singular: its estimates are numerically unreliable."""


def init_ridge(n_arms: int, batch: int, dim: int, l2: float) -> dict[str, np.ndarray]:
    """Prior state: ``A = l2*I`` and ``b = 0`` for every (batch, arm), caches to match."""
    eye = np.eye(dim)
    return {
        "A": np.broadcast_to(l2 * eye, (batch, n_arms, dim, dim)).copy(),
        "b": np.zeros((batch, n_arms, dim)),
        "A_inv": np.broadcast_to(eye / l2, (batch, n_arms, dim, dim)).copy(),
        "theta": np.zeros((batch, n_arms, dim)),
        "rank1_updates": np.zeros((batch, n_arms), dtype=np.int64),
    }


def spd_inverse(matrices: np.ndarray, l2: float) -> np.ndarray:
    """Inverse of a stack of SPD matrices (m, d, d) by a Cholesky solve after diagonal scaling.

    Scaling by ``sqrt(diag)`` removes the ill-conditioning that comes from
    features on very different scales. If a factorisation still fails (a
    near-singular ``A`` in floating point), that matrix falls back to an
    eigendecomposition with eigenvalues floored at ``l2`` -- the smallest
    eigenvalue ``A = l2*I + X^T X`` can have -- so the result is always finite.
    """
    from scipy.linalg import cho_solve

    scale = np.sqrt(np.einsum("mii->mi", matrices))
    outer = scale[:, :, None] * scale[:, None, :]
    scaled = matrices / outer
    eye = np.broadcast_to(np.eye(matrices.shape[-1]), matrices.shape)
    try:
        factor = np.linalg.cholesky(scaled)
        inverse = cho_solve((factor, True), eye, check_finite=False) / outer
    except np.linalg.LinAlgError:
        inverse = np.empty_like(matrices)
        for i, matrix in enumerate(matrices):  # rare path: one arm at a time
            try:
                factor = np.linalg.cholesky(scaled[i])
                inverse[i] = cho_solve((factor, True), eye[i], check_finite=False) / outer[i]
            except np.linalg.LinAlgError:
                values, vectors = np.linalg.eigh(matrix)
                inverse[i] = (vectors / np.maximum(values, l2)) @ vectors.T
    return 0.5 * (inverse + np.swapaxes(inverse, -1, -2))


def _warn_if_ill_conditioned(matrices: np.ndarray, inverses: np.ndarray, arms: np.ndarray, l2: float) -> None:
    """Warn naming each arm whose 1-norm condition number ||A||_1 ||A^-1||_1 passes the threshold."""
    condition = np.abs(matrices).sum(axis=-2).max(axis=-1) * np.abs(inverses).sum(axis=-2).max(axis=-1)
    for arm in np.unique(arms[condition > CONDITION_WARNING]):
        warnings.warn(condition_message(f"arm index {int(arm)}", l2), IllConditionedWarning, stacklevel=4)


def condition_message(arm: str, l2: float) -> str:
    """The warning text for an ill-conditioned arm, with the remedy."""
    return (f"{arm} has a condition number above {CONDITION_WARNING:.0e}: its estimates are numerically "
            f"unreliable; raise l2 (now {l2}) or set standardize=True (features on very different scales "
            f"or collinear features cause this)")


def condition_numbers(A: np.ndarray) -> np.ndarray:
    """2-norm condition number of every arm's ``A``, shape (B, K) (ratio of extreme eigenvalues)."""
    values = np.linalg.eigvalsh(A)
    return values[..., -1] / values[..., 0]


def add_rows(state: dict, rows: np.ndarray, arms: np.ndarray, rewards: np.ndarray,
             features: np.ndarray, l2: float) -> dict:
    """New ridge arrays after adding rows (n,) x (n, d) to (state row, arm); inputs are not mutated.

    With one state and several rows the per-arm sums ``X_k^T X_k`` are one
    matrix product per touched arm and the caches of those arms are rebuilt;
    otherwise every row is a rank-1 update of its own (state row, arm).
    """
    A, b = state["A"].copy(), state["b"].copy()
    A_inv, theta = state["A_inv"].copy(), state["theta"].copy()
    rank1 = state["rank1_updates"].copy()
    if A.shape[0] == 1 and rows.shape[0] > 1:
        touched = np.unique(arms)
        for arm in touched:  # a loop over arms, never over rows
            chosen = arms == arm
            arm_features = features[chosen]
            A[0, arm] += arm_features.T @ arm_features
            b[0, arm] += rewards[chosen] @ arm_features
        pairs = (np.zeros_like(touched), touched)
    else:
        A[rows, arms] += features[:, :, None] * features[:, None, :]
        b[rows, arms] += rewards[:, None] * features
        inverse = A_inv[rows, arms]
        projected = np.einsum("nij,nj->ni", inverse, features)
        denominator = 1.0 + np.einsum("ni,ni->n", projected, features)
        A_inv[rows, arms] = inverse - projected[:, :, None] * projected[:, None, :] / denominator[:, None, None]
        rank1[rows, arms] += 1
        theta[rows, arms] = np.einsum("nij,nj->ni", A_inv[rows, arms], b[rows, arms])
        # In exact arithmetic the denominator is >= 1; below that the cache has drifted.
        unsound = ~(denominator >= 1.0 - 1e-9) | (rank1[rows, arms] >= REFRESH_EVERY)
        pairs = (rows[unsound], arms[unsound])
    if pairs[0].size:
        fresh = spd_inverse(A[pairs], l2)
        _warn_if_ill_conditioned(A[pairs], fresh, pairs[1], l2)
        A_inv[pairs] = fresh
        theta[pairs] = np.einsum("nij,nj->ni", fresh, b[pairs])
        rank1[pairs] = 0
    return {"A": A, "b": b, "A_inv": A_inv, "theta": theta, "rank1_updates": rank1}


def rebuild(state: dict, l2: float) -> dict:
    """Ridge arrays with every cache recomputed from the additive ``A`` and ``b``."""
    A, b = state["A"], state["b"]
    flat = spd_inverse(A.reshape(-1, *A.shape[2:]), l2)
    A_inv = flat.reshape(A.shape)
    return {"A": A.copy(), "b": b.copy(), "A_inv": A_inv, "theta": np.einsum("bkij,bkj->bki", A_inv, b),
            "rank1_updates": np.zeros(A.shape[:2], dtype=np.int64)}


def scores(state: dict, features: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per (row, arm) predicted mean ``x^T theta_k`` and width ``x^T A_k^-1 x``, each shape (n, K)."""
    theta, A_inv = state["theta"], state["A_inv"]
    if theta.shape[0] == 1:
        n, dim = features.shape
        n_arms = theta.shape[1]
        means = features @ theta[0].T
        # One matrix product against every arm's inverse side by side: (n, d) @ (d, K*d).
        stacked = A_inv[0].transpose(1, 0, 2).reshape(dim, n_arms * dim)
        widths = np.empty((n, n_arms))
        for start in range(0, n, _CHUNK):
            chunk = features[start:start + _CHUNK]
            projected = (chunk @ stacked).reshape(-1, n_arms, dim)
            widths[start:start + _CHUNK] = np.einsum("nkd,nd->nk", projected, chunk)
    else:
        means = np.einsum("nd,nkd->nk", features, theta[rows])
        widths = np.einsum("ni,nkij,nj->nk", features, A_inv[rows], features, optimize=True)
    # A_inv is PSD: a tiny negative width is rounding.
    return means, np.maximum(widths, 0.0)

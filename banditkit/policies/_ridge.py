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
from types import ModuleType

import numpy as np

from .._typing import AnyArray, BoolArray, FloatArray, IntArray
from . import _jit
from ._standardize import RELATIVE_VARIANCE_FLOOR

#: Ridge arrays by name: float sums and caches, and the int64 ``rank1_updates`` counters.
Ridge = dict[str, AnyArray]

#: Rank-1 cache updates of an arm between two rebuilds from ``A``.
REFRESH_EVERY = 1000
#: Condition number of an arm's ``A`` above which its estimates are flagged as unreliable.
CONDITION_WARNING = 1e10
#: A Sherman-Morrison denominator below 1 - _DRIFT means the cached inverse has drifted from A.
_DRIFT = 1e-9
_RIDGE_KEYS = ("A", "b", "A_inv", "theta", "rank1_updates")
#: Largest residual of a merged cache (|A A_inv - I|, and |A theta - b| relative to the terms' size) kept as is.
_CONSISTENT = 1e-8
#: Rows per chunk when one state scores many contexts (bounds the (rows, K, d) temporary).
_CHUNK = 1024


_compiled: ModuleType | None = None


def linear_kernels() -> ModuleType | None:
    """The compiled linear kernels (:mod:`._linear_kernels`) when numba is enabled, else None.

    Loaded on first use, not after a numpy-path budget as the other kernels are: they agree with
    the numpy path only to rounding (another summation order), so a switch in the middle of a
    run would make a seeded run's state depend on what else the process had run before.
    """
    global _compiled
    if _jit.load() is None:
        return None
    if _compiled is None:
        from . import _linear_kernels

        _compiled = _linear_kernels
    return _compiled


class IllConditionedWarning(UserWarning):
    """An arm's design matrix is close to singular: its estimates are numerically unreliable."""


def init_ridge(n_arms: int, batch: int, dim: int, l2: float) -> Ridge:
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
    symmetric: FloatArray = 0.5 * (inverse + np.swapaxes(inverse, -1, -2))
    return symmetric


def _warn_if_ill_conditioned(matrices: np.ndarray, inverses: np.ndarray, arms: np.ndarray, l2: float) -> None:
    """Warn naming each arm whose 1-norm condition number ||A||_1 ||A^-1||_1 passes the threshold."""
    condition = np.abs(matrices).sum(axis=-2).max(axis=-1) * np.abs(inverses).sum(axis=-2).max(axis=-1)
    for arm in np.unique(arms[condition > CONDITION_WARNING]):
        warnings.warn(condition_message(f"arm index {int(arm)}", l2), IllConditionedWarning, stacklevel=4)


def condition_message(arm: str, l2: float) -> str:
    """The warning text for an ill-conditioned arm, with the remedy."""
    return (
        f"{arm} has a condition number above {CONDITION_WARNING:.0e}: its estimates are numerically "
        f"unreliable; raise l2 (now {l2}) or set standardize=True (features on very different scales "
        f"or collinear features cause this)"
    )


def condition_numbers(A: FloatArray) -> FloatArray:
    """2-norm condition number of every arm's ``A``, shape (B, K) (ratio of extreme eigenvalues)."""
    values = np.linalg.eigvalsh(A)
    return values[..., -1] / values[..., 0]


def add_rows(
    state: Ridge, rows: IntArray, arms: IntArray, rewards: FloatArray, features: FloatArray, l2: float
) -> Ridge:
    """New ridge arrays after adding rows (n,) x (n, d) to (state row, arm); inputs are not mutated.

    With one state and several rows the per-arm sums ``X_k^T X_k`` are one
    matrix product per touched arm and the caches of those arms are rebuilt;
    otherwise every row is a rank-1 update of its own (state row, arm).
    """
    new = {key: state[key].copy() for key in _RIDGE_KEYS}
    one_state = new["A"].shape[0] == 1
    compiled = linear_kernels() if one_state and rows.shape[0] == 1 else None
    if compiled is not None:
        arm = int(arms[0])
        denominator = compiled.rank1_update(
            new["A"][0], new["b"][0], new["A_inv"][0], new["theta"][0], arm, features[0], float(rewards[0])
        )
        new["rank1_updates"][0, arm] += 1
        if denominator >= 1.0 - _DRIFT and new["rank1_updates"][0, arm] < REFRESH_EVERY:
            return new
        pairs = (np.zeros(1, dtype=np.intp), np.array([arm]))
    elif one_state and rows.shape[0] > 1:
        pairs = _add_grouped(new, arms, rewards, features)
    else:
        pairs = _add_rank1(new, rows, arms, rewards, features)
    _rebuild_pairs(new, pairs, l2)
    return new


def replay(
    state: Ridge,
    l2: float,
    pointers: AnyArray,
    contexts: FloatArray,
    logged: IntArray,
    rewards: FloatArray,
    mask: BoolArray,
    limit: int,
    scale: float,
    thompson: bool,
    standardize: bool,
) -> tuple[IntArray, Ridge] | None:
    """Replay a one-row state on contexts (n, d) with the compiled kernel; None without numba.

    Each row is decided as one compiled ``select`` decides it (the same draws from the generator behind
    ``pointers``) and, when the arm is ``logged`` (n,), learned as one ``update`` learns it (rank-1 steps,
    caches rebuilt from ``A`` exactly when :func:`add_rows` rebuilds them). Stops after ``limit`` accepted
    rows. Returns the accepted row positions, in order, and the new arrays of every key of ``state``
    (fresh: ``state`` is not mutated).
    """
    compiled = linear_kernels() if state["theta"].shape[0] == 1 else None
    if compiled is None:
        return None
    new = {key: value.copy() for key, value in state.items()}
    if standardize:
        count, mean, m2 = new["feature_count"], new["feature_mean"][0], new["feature_m2"][0]
    else:  # unused by the kernel, typed alike
        count, mean, m2 = np.zeros(1), np.zeros(contexts.shape[1]), np.zeros(contexts.shape[1])
    accepted = np.empty(min(limit, contexts.shape[0]), dtype=np.intp)
    position = steps = 0
    while position < contexts.shape[0] and steps < accepted.shape[0]:
        position, steps, stale = compiled.replay_rows(
            pointers,
            new["A"][0],
            new["b"][0],
            new["A_inv"][0],
            new["theta"][0],
            new["rank1_updates"][0],
            count,
            mean,
            m2,
            standardize,
            RELATIVE_VARIANCE_FLOOR,
            contexts,
            logged,
            rewards,
            mask,
            scale,
            thompson,
            position,
            accepted,
            steps,
            REFRESH_EVERY,
            _DRIFT,
        )
        if stale >= 0:
            _rebuild_pairs(new, (np.zeros(1, dtype=np.intp), np.array([stale])), l2)
    return accepted[:steps], new


def check_merged(new: Ridge, delta: Ridge, l2: float) -> None:
    """Check the caches of a merged ridge state: keep the summed ones that are still exact, rebuild the others.

    After a delta was added to every ridge array (fresh arrays in ``new``): keep the summed caches of each
    touched (state row, arm) only if they still invert ``A`` and solve ``A theta = b``, else rebuild them.

    ``A`` and ``b`` are the truth. Summed caches are the caches the delta's
    update computed when the delta was computed from this very state (one
    writer); when two deltas were computed from the same older state (several
    writers) their sum misses a cross term, fails the check and is rebuilt.
    """
    # A row x moves the diagonal of A (by x_i^2) and of A_inv: arms where neither moved got no row.
    touched = np.einsum("bkii->bki", delta["A"]).any(axis=2)
    if "A_inv" in delta:
        touched |= np.einsum("bkii->bki", delta["A_inv"]).any(axis=2)
    pairs = np.nonzero(touched)
    if not pairs[0].size:
        return
    A, b, A_inv, theta = new["A"][pairs], new["b"][pairs], new["A_inv"][pairs], new["theta"][pairs]
    residual = A @ A_inv
    residual -= np.eye(A.shape[-1])
    solved = (A @ theta[:, :, None])[:, :, 0]
    scale = np.abs(b).max(axis=1) + np.abs(solved).max(axis=1)
    solved -= b
    stale = ~((np.abs(residual).max(axis=(1, 2)) <= _CONSISTENT) & (np.abs(solved).max(axis=1) <= _CONSISTENT * scale))
    if stale.any():
        _rebuild_pairs(new, (pairs[0][stale], pairs[1][stale]), l2)


def _rebuild_pairs(new: Ridge, pairs: tuple[IntArray, IntArray], l2: float) -> None:
    """Recompute, in place on ``new`` (fresh arrays), the caches of the (state row, arm) ``pairs`` from ``A``."""
    if pairs[0].size:
        fresh = spd_inverse(new["A"][pairs], l2)
        _warn_if_ill_conditioned(new["A"][pairs], fresh, pairs[1], l2)
        new["A_inv"][pairs] = fresh
        new["theta"][pairs] = np.einsum("nij,nj->ni", fresh, new["b"][pairs])
        new["rank1_updates"][pairs] = 0


def _add_grouped(new: Ridge, arms: IntArray, rewards: FloatArray, features: FloatArray) -> tuple[IntArray, IntArray]:
    """Add many rows to the one state in place, one Gram matrix per touched arm; every touched arm needs a rebuild."""
    touched = np.unique(arms)
    for arm in touched:  # a loop over arms, never over rows
        chosen = arms == arm
        arm_features = features[chosen]
        new["A"][0, arm] += arm_features.T @ arm_features
        new["b"][0, arm] += rewards[chosen] @ arm_features
    return np.zeros_like(touched), touched


def _add_rank1(
    new: Ridge, rows: IntArray, arms: IntArray, rewards: FloatArray, features: FloatArray
) -> tuple[IntArray, IntArray]:
    """Add one row to each distinct (state row, arm) in place with Sherman-Morrison; return the pairs to rebuild."""
    new["A"][rows, arms] += features[:, :, None] * features[:, None, :]
    new["b"][rows, arms] += rewards[:, None] * features
    inverse = new["A_inv"][rows, arms]
    projected = np.einsum("nij,nj->ni", inverse, features)
    denominator = 1.0 + np.einsum("ni,ni->n", projected, features)
    updated = inverse - projected[:, :, None] * projected[:, None, :] / denominator[:, None, None]
    new["A_inv"][rows, arms] = updated
    new["theta"][rows, arms] = np.einsum("nij,nj->ni", updated, new["b"][rows, arms])
    new["rank1_updates"][rows, arms] += 1
    # In exact arithmetic the denominator is >= 1; below that the cache has drifted.
    unsound = ~(denominator >= 1.0 - _DRIFT) | (new["rank1_updates"][rows, arms] >= REFRESH_EVERY)
    return rows[unsound], arms[unsound]


def rebuild(state: Ridge, l2: float) -> Ridge:
    """Ridge arrays with every cache recomputed from the additive ``A`` and ``b``."""
    A, b = state["A"], state["b"]
    flat = spd_inverse(A.reshape(-1, *A.shape[2:]), l2)
    A_inv = flat.reshape(A.shape)
    return {
        "A": A.copy(),
        "b": b.copy(),
        "A_inv": A_inv,
        "theta": np.einsum("bkij,bkj->bki", A_inv, b),
        "rank1_updates": np.zeros(A.shape[:2], dtype=np.int64),
    }


def scores(state: Ridge, features: FloatArray, rows: IntArray) -> tuple[FloatArray, FloatArray]:
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
            chunk = features[start : start + _CHUNK]
            projected = (chunk @ stacked).reshape(-1, n_arms, dim)
            widths[start : start + _CHUNK] = np.einsum("nkd,nd->nk", projected, chunk)
    else:
        means = np.einsum("nd,nkd->nk", features, theta[rows])
        projected = np.matmul(A_inv[rows], features[:, None, :, None])[..., 0]  # (n, K, d)
        widths = np.einsum("nkd,nd->nk", projected, features)
    # A_inv is PSD: a tiny negative width is rounding.
    return means, np.maximum(widths, 0.0)

"""The target policy's action distribution on every logged row, in one vectorized pass.

A target can be a :class:`banditkit.Bandit` (its ``probabilities_many`` over
the logged contexts), a bare policy (its prior state), a deterministic policy
(integer actions per row, or a callable from contexts to actions), or an
explicit distribution of shape (n, K), or (n, K, L) for position-based logs
(a leading axis of 1 broadcasts one distribution to every row).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidParameterError, InvalidTypeError, UnknownArmError
from ..policies.base import Policy
from .logs import LoggedData

if TYPE_CHECKING:
    from ..bandit import Bandit

_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True, eq=False)
class RowTarget:
    """Target distribution at each row's own position, in the target's arm order.

    probabilities : (n, K); arms : (n,) logged arms as target column indices; arm_names : K names.
    """

    probabilities: np.ndarray
    arms: np.ndarray
    arm_names: tuple[str, ...]


def resolve_target(target: Any, log: LoggedData) -> RowTarget:
    """Evaluate ``target`` on every row of ``log``; see the module docstring for what it may be."""
    if hasattr(target, "probabilities_many") and hasattr(target, "arms"):
        return _bandit_target(target, log)
    if isinstance(target, Policy):
        return _policy_target(target, log)
    if callable(target):
        target = np.asarray(target(log.contexts, log.n_rows))
    array = np.asarray(target)
    if array.dtype.kind in "iu":
        return _deterministic_target(array, log)
    if array.dtype.kind != "f":
        raise InvalidTypeError(
            f"target must be a policy, a Bandit or an array of probabilities, got {type(target).__name__}"
        )
    return _explicit_target(array, log)


def _bandit_target(bandit: Bandit, log: LoggedData) -> RowTarget:
    names = tuple(bandit.arms)
    lookup = {name: i for i, name in enumerate(names)}
    used = np.unique(log.arms)
    missing = [log.arm_names[i] for i in used if log.arm_names[i] not in lookup]
    if missing:
        raise UnknownArmError(f"logged arm {missing[0]!r} is not an arm of the target bandit {list(names)}")
    remap = np.full(log.n_arms, -1, dtype=np.intp)
    remap[used] = [lookup[log.arm_names[i]] for i in used]
    _require_single_position(log, "a Bandit")
    if getattr(bandit, "n_features", None):
        if log.contexts is None:
            raise InvalidParameterError("target bandit is contextual but the log has no context")
        probabilities = bandit.probabilities_many(contexts=log.contexts)
    else:
        probabilities = bandit.probabilities_many(n=log.n_rows)
    return RowTarget(np.asarray(probabilities, dtype=np.float64), remap[log.arms], names)


def _policy_target(policy: Policy, log: LoggedData) -> RowTarget:
    _require_single_position(log, "a policy")
    n_features = None if log.contexts is None else log.contexts.shape[1]
    if policy.contextual and n_features is None:
        raise InvalidParameterError(f"policy {policy.name!r} is contextual but the log has no context")
    state = policy.init_state(log.n_arms, 1, n_features if policy.contextual else None)
    mask = np.ones((log.n_rows, log.n_arms), dtype=bool)
    probabilities = policy.probabilities(state, mask, log.contexts if policy.contextual else None)
    return RowTarget(np.asarray(probabilities, dtype=np.float64), log.arms, log.arm_names)


def _deterministic_target(actions: np.ndarray, log: LoggedData) -> RowTarget:
    """One-hot distribution of a deterministic policy: actions (n,), or (n, L) per position."""
    n_positions = log.n_positions
    expected = (log.n_rows,) if n_positions == 1 else (log.n_rows, n_positions)
    if actions.shape != expected:
        raise InvalidParameterError(f"deterministic target actions must have shape {expected}, got {actions.shape}")
    bad = (actions < 0) | (actions >= log.n_arms)
    if bad.any():
        raise InvalidParameterError(
            f"deterministic target actions must be arm indices in [0, {log.n_arms}), got {actions[bad][0]}"
        )
    row_actions = actions if n_positions == 1 else actions[np.arange(log.n_rows), log.positions]
    probabilities = np.zeros((log.n_rows, log.n_arms))
    probabilities[np.arange(log.n_rows), row_actions] = 1.0
    return RowTarget(probabilities, log.arms, log.arm_names)


def _explicit_target(array: np.ndarray, log: LoggedData) -> RowTarget:
    n_positions = log.n_positions
    position_based = log.positions is not None and array.ndim == 3
    if array.ndim not in (2, 3) or (array.ndim == 3 and log.positions is None):
        raise InvalidParameterError(
            f"target probabilities must have shape (n, K){' or (n, K, L)' if log.positions is not None else ''}, "
            f"got {array.shape}"
        )
    if array.ndim == 2 and n_positions > 1:
        raise InvalidParameterError(
            f"the log has {n_positions} positions: give the target per position, shape (n, K, {n_positions})"
        )
    if array.shape[0] not in (1, log.n_rows) or array.shape[1] != log.n_arms:
        raise InvalidParameterError(
            f"target probabilities must have {log.n_rows} (or 1) rows and {log.n_arms} arms, got shape {array.shape}"
        )
    if position_based and array.shape[2] < n_positions:
        raise InvalidParameterError(
            f"target probabilities cover {array.shape[2]} positions but the log has {n_positions}"
        )
    _check_distribution(array)
    if position_based:
        rows = np.zeros(log.n_rows, dtype=np.intp) if array.shape[0] == 1 else np.arange(log.n_rows)
        probabilities = array[rows, :, log.positions]
    elif array.ndim == 3:
        probabilities = array[:, :, 0]
    else:
        probabilities = array
    probabilities = np.broadcast_to(probabilities, (log.n_rows, log.n_arms))
    return RowTarget(probabilities, log.arms, log.arm_names)


def _check_distribution(array: np.ndarray) -> None:
    if not np.isfinite(array).all() or (array < 0).any():
        raise InvalidParameterError("target probabilities must be finite and >= 0")
    sums = array.sum(axis=1)
    bad = np.abs(sums - 1.0) > _SUM_TOLERANCE
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InvalidParameterError(
            f"target probabilities must sum to 1 over arms, got {float(sums[bad][0])!r} at row {index[0]}"
            + (f", position {index[1]}" if len(index) > 1 else "")
        )


def _require_single_position(log: LoggedData, what: str) -> None:
    if log.n_positions > 1:
        raise InvalidParameterError(
            f"{what} chooses one arm per decision; for a log with {log.n_positions} positions give the "
            "target per position as an (n, K, L) array (see thompson_ranking_distribution)"
        )

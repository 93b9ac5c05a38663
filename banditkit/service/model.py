"""How a served Bandit is kept in a store: a model that changes rarely and arrays that change often.

The arrays are the policy state plus the Bandit's reward ledger (pulls, reward
sums, sums of squares, total reward): a reward makes a *delta* of them, which a
store merges with :func:`~.stores.base.merge_delta` (the policy state by the
policy's merge rule, the ledger by addition). The model is everything else in
``Bandit.to_dict()`` (arms, policy, guardrails, which arms are active); it
changes only on arm changes, guardrail actions and rollback.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..bandit import Bandit
from .stores.base import CANARY_KEYS, LEDGER_PREFIX, POLICY_PREFIX, State, policy_state
from .stores.planner import DeltaPlanner, reward_delta

__all__ = [
    "DeltaPlanner",
    "adopt_rewards",
    "apply_rewards",
    "guarded",
    "join",
    "ledger",
    "reward_delta",
    "served_state",
    "split",
]

_LEDGER = ("pulls", "reward_sums", "reward_sq_sums")
_ADDITIVE = {"state", "version", "rng", "total_reward", *_LEDGER}


def served_state(bandit: Bandit) -> State:
    """The policy state of a served Bandit, which always has one.

    ``Bandit.state`` is None only for a contextual policy before its first context;
    the service makes contextual Bandits with ``n_features``, so their state exists from the start.
    """
    state = bandit.state
    assert state is not None, "a served contextual Bandit is made with n_features"
    return state


def split(bandit: Bandit) -> tuple[dict[str, Any], State]:
    """The model (JSON-ready) and the additive arrays of ``bandit``."""
    data = bandit.to_dict()
    model = {key: value for key, value in data.items() if key not in _ADDITIVE}
    arrays = {POLICY_PREFIX + key: value for key, value in served_state(bandit).items()}
    arrays.update({LEDGER_PREFIX + key: np.array(data[key], dtype=np.float64) for key in _LEDGER})
    arrays[LEDGER_PREFIX + "total_reward"] = np.array([data["total_reward"]])
    return model, arrays


def join(model: dict[str, Any], arrays: State, version: int, rng: np.random.Generator) -> Bandit:
    """The Bandit that :func:`split` took apart, at ``version``, drawing from ``rng``."""
    data = {key: value for key, value in model.items() if key not in CANARY_KEYS}  # a candidate's: not the Bandit's
    data["state"] = None
    for key in _LEDGER:
        data[key] = arrays[LEDGER_PREFIX + key].tolist()
    data["total_reward"] = float(arrays[LEDGER_PREFIX + "total_reward"][0])
    data["version"] = version
    data["rng"] = rng.bit_generator.state
    return Bandit.from_dict(data, state=policy_state(arrays))


def apply_rewards(
    bandit: Bandit, delta: State, arm_indices: np.ndarray, rewards: np.ndarray, *, version: int | None = None
) -> None:
    """Learn the rewards in memory exactly as the store did: the policy merges its part of ``delta``.

    ``Bandit.absorb`` runs the Bandit's own bookkeeping (its reward ledger adds
    the same numbers in the same order as the store's delta) and guardrails
    (SLO, abort), so memory and store stay bit-identical without the policy's
    update being computed twice. ``version`` is the store's version after this
    delta (other writers may have added theirs in between); by default the
    Bandit's version goes up by one.
    """
    bandit.absorb(
        arm_indices, rewards, bandit.policy.merge_delta(served_state(bandit), policy_state(delta)), version=version
    )


def adopt_rewards(bandit: Bandit, arrays: State, *, version: int | None = None) -> None:
    """Serve the arrays a store merged the rewards' delta into (its commit's ``arrays``).

    The very same arrays, the policy state and the reward ledger alike (:meth:`Bandit.adopt`), so memory and
    store are identical, and the server computes nothing of the update a second time: the guardrails follow as
    in :func:`apply_rewards`.
    """
    bandit.adopt(policy_state(arrays), ledger(arrays), version=version)


def ledger(arrays: State) -> State:
    """The reward ledger among an experiment's arrays (pulls, reward sums, sums of squares, total), without prefix."""
    return {key: arrays[LEDGER_PREFIX + key] for key in (*_LEDGER, "total_reward")}


def guarded(bandit: Bandit) -> tuple[bytes, bool]:
    """What guardrails can change during an update: which arms are active, and the abort flag.

    Compared before and after every reward batch, so the active flags are taken as the bytes of their boolean
    array (equal exactly when the flags are), not one Python bool per arm.
    """
    return bandit.active.tobytes(), bool(bandit.aborted)

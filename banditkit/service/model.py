"""How a served Bandit is kept in a store: a model that changes rarely and arrays that change often.

The arrays are the policy state plus the Bandit's reward ledger (pulls, reward
sums, sums of squares, total reward): a reward makes a *delta* of them, which a
store merges with :func:`~.stores.base.merge_delta` (the policy state by the
policy's merge rule, the ledger by addition). The model is everything else in
``Bandit.to_dict()`` (arms, policy, guardrails, which arms are active); it
changes only on arm changes, guardrail actions and rollback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..bandit import Bandit
from ..policies import Policy
from .stores.base import (
    LEDGER_PREFIX,
    POLICY_PREFIX,
    DecisionRecord,
    Delta,
    RewardRecord,
    State,
    policy_state,
)

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
    data = dict(model, state=None)
    for key in _LEDGER:
        data[key] = arrays[LEDGER_PREFIX + key].tolist()
    data["total_reward"] = float(arrays[LEDGER_PREFIX + "total_reward"][0])
    data["version"] = version
    data["rng"] = rng.bit_generator.state
    return Bandit.from_dict(data, state=policy_state(arrays))


def reward_delta(
    policy: Policy,
    n_arms: int,
    state: State,
    arm_indices: np.ndarray,
    rewards: np.ndarray,
    contexts: np.ndarray | None,
    propensities: np.ndarray | None,
) -> State:
    """The delta of the arrays of :func:`split` for ``rewards`` (n,) of ``arm_indices`` (n,); nothing is changed.

    ``state`` is the policy state the delta is computed from and will be
    merged into. The policy forms its part (:meth:`Policy.state_delta`).
    """
    new_state = policy.update(state, arm_indices, rewards, propensities=propensities, context=contexts)
    delta = {POLICY_PREFIX + key: value for key, value in policy.state_delta(state, new_state).items()}
    delta[LEDGER_PREFIX + "pulls"] = np.bincount(arm_indices, minlength=n_arms).astype(np.float64)
    delta[LEDGER_PREFIX + "reward_sums"] = np.bincount(arm_indices, weights=rewards, minlength=n_arms)
    delta[LEDGER_PREFIX + "reward_sq_sums"] = np.bincount(arm_indices, weights=rewards * rewards, minlength=n_arms)
    delta[LEDGER_PREFIX + "total_reward"] = np.array([rewards.sum()])
    return delta


@dataclass(frozen=True, slots=True)
class DeltaPlanner:
    """The :class:`~.stores.base.RewardPlanner` of a served Bandit.

    It plans with the Bandit's policy and arms (as served when the rewards were submitted), and the logged
    decisions the rewards join (their contexts and propensities).

    It holds no reference to the Bandit, so a store may call it from its writer thread while the server
    goes on serving.
    """

    policy: Policy
    arm_index: dict[str, int]
    decisions: dict[str, DecisionRecord]

    @classmethod
    def of(cls, bandit: Bandit, decisions: dict[str, DecisionRecord]) -> DeltaPlanner:
        return cls(bandit.policy, {arm: i for i, arm in enumerate(bandit.arms)}, decisions)

    def plan(self, new: list[RewardRecord], arrays: State) -> tuple[Delta | None, list[bool]]:
        """See :meth:`RewardPlanner.plan`: a reward whose arm was removed is recorded, not learned."""
        index = self.arm_index
        applied = [reward.arm in index for reward in new]
        kept = [reward for reward, ok in zip(new, applied, strict=True) if ok]
        if not kept:
            return None, applied
        policy = self.policy
        rows = [self.decisions[reward.decision_id] for reward in kept]
        arms = np.array([index[reward.arm] for reward in kept], dtype=np.intp)
        values = np.array([reward.value for reward in kept], dtype=np.float64)
        contexts = np.array([row.context for row in rows], dtype=np.float64) if policy.contextual else None
        propensities = (
            np.array([row.propensity for row in rows], dtype=np.float64) if policy.needs_propensities else None
        )
        change = reward_delta(policy, len(index), policy_state(arrays), arms, values, contexts, propensities)
        return Delta(policy, change, arms, values), applied


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


def guarded(bandit: Bandit) -> tuple[tuple[bool, ...], bool]:
    """What guardrails can change during an update: which arms are active, and the abort flag."""
    return tuple(bool(on) for on in bandit.active), bool(bandit.aborted)

"""The policy side of learning rewards, as plain data a store can run: a reward's delta and its planner.

A store that learns in process runs :class:`DeltaPlanner` on the arrays it
holds; it builds one from the stored model too (:meth:`DeltaPlanner.of_model`),
to learn again the rewards logged after its last checkpoint when it opens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ...policies import Policy, make_policy
from .base import LEDGER_PREFIX, POLICY_PREFIX, DecisionRecord, Delta, RewardRecord, State, policy_state

if TYPE_CHECKING:
    from ...bandit import Bandit


def reward_delta(
    policy: Policy,
    n_arms: int,
    state: State,
    arm_indices: np.ndarray,
    rewards: np.ndarray,
    contexts: np.ndarray | None,
    propensities: np.ndarray | None,
) -> State:
    """The delta of an experiment's arrays for ``rewards`` (n,) of ``arm_indices`` (n,); nothing is changed.

    ``state`` is the policy state the delta is computed from and will be
    merged into. The policy forms its part (:meth:`Policy.state_delta`); the
    reward ledger (pulls, sums, sums of squares, total) adds.
    """
    return _learned(policy, n_arms, state, arm_indices, rewards, contexts, propensities)[0]


def _learned(
    policy: Policy,
    n_arms: int,
    state: State,
    arm_indices: np.ndarray,
    rewards: np.ndarray,
    contexts: np.ndarray | None,
    propensities: np.ndarray | None,
) -> tuple[State, State]:
    """:func:`reward_delta`, and the policy's state after the update it describes."""
    new_state = policy.update(state, arm_indices, rewards, propensities=propensities, context=contexts)
    delta = {POLICY_PREFIX + key: value for key, value in policy.state_delta(state, new_state).items()}
    delta[LEDGER_PREFIX + "pulls"] = np.bincount(arm_indices, minlength=n_arms).astype(np.float64)
    delta[LEDGER_PREFIX + "reward_sums"] = np.bincount(arm_indices, weights=rewards, minlength=n_arms)
    delta[LEDGER_PREFIX + "reward_sq_sums"] = np.bincount(arm_indices, weights=rewards * rewards, minlength=n_arms)
    delta[LEDGER_PREFIX + "total_reward"] = np.array([rewards.sum()])
    return delta, new_state


@dataclass(frozen=True, slots=True)
class DeltaPlanner:
    """The :class:`~.base.RewardPlanner` of a served experiment.

    Its policy and arms (as served when the
    rewards were submitted), and the logged decisions the rewards join (their contexts and propensities).

    It holds no reference to a Bandit, so a store may call it from its own threads while the server goes
    on serving.
    """

    policy: Policy
    arm_index: dict[str, int]
    decisions: dict[str, DecisionRecord]

    @classmethod
    def of(cls, bandit: Bandit, decisions: dict[str, DecisionRecord]) -> DeltaPlanner:
        return cls(bandit.policy, {arm: i for i, arm in enumerate(bandit.arms)}, decisions)

    @classmethod
    def of_model(cls, model: dict[str, Any], decisions: dict[str, DecisionRecord]) -> DeltaPlanner:
        """The planner of a stored model (``model.split``'s model: its ``policy`` and ``arms``)."""
        return cls(make_policy(model["policy"]), {arm: i for i, arm in enumerate(model["arms"])}, decisions)

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
        change, updated = _learned(policy, len(index), policy_state(arrays), arms, values, contexts, propensities)
        # The arrays with the delta merged, as the update made them (the delta came from these arrays).
        merged = {
            key: updated[key.removeprefix(POLICY_PREFIX)]
            if key.startswith(POLICY_PREFIX)
            else value + change[key]
            if key in change
            else value
            for key, value in arrays.items()
        }
        return Delta(policy, change, arms, values, merged), applied

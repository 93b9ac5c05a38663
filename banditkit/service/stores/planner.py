"""The policy side of learning rewards, as plain data a store can run: a reward's delta and its planner.

A store that learns in process runs :class:`DeltaPlanner` on the arrays it
holds; it builds one from the stored model too (:meth:`DeltaPlanner.of_model`),
to learn again the rewards logged after its last checkpoint when it opens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ...policies import Policy, make_policy
from .base import (
    CANDIDATE_PREFIX,
    CURRENT_POLICY,
    LEDGER_PREFIX,
    POLICY_PREFIX,
    DecisionRecord,
    Delta,
    RewardRecord,
    State,
    policy_state,
)

#: Who learns a reward (:meth:`Routes.learner`): the experiment's policy, or its candidate.
MAIN, CANDIDATE = "main", "candidate"


def candidate_arrays(arrays: State) -> State:
    """The candidate's arrays among an experiment's (its ``policy/`` and ``ledger/`` keys, without the prefix)."""
    return {
        key.removeprefix(CANDIDATE_PREFIX): value for key, value in arrays.items() if key.startswith(CANDIDATE_PREFIX)
    }


@dataclass(frozen=True, slots=True)
class Routes:
    """Which policy learns the reward of a decision, by the policy that served it (plain data).

    ``candidate``/``candidate_id``: the experiment's candidate policy and its id, if it has one;
    ``promoted``: the id of the candidate that became the experiment's policy last (its decisions are the
    policy's), and ``retired_before``: the version of that promotion (decisions the policy it replaced served,
    at earlier versions, have no policy left to learn them).
    """

    candidate: Policy | None = None
    candidate_id: str | None = None
    promoted: str | None = None
    retired_before: int = 0

    @classmethod
    def of_model(cls, model: dict[str, Any]) -> Routes:
        """The routes of a stored model: its ``candidate`` and ``lineage`` entries (absent: none)."""
        candidate = model.get("candidate")
        lineage = model.get("lineage") or {}
        return cls(
            None if candidate is None else make_policy(candidate["policy"]),
            None if candidate is None else candidate["id"],
            lineage.get("promoted"),
            int(lineage.get("retired_before", 0)),
        )

    def learner(self, decision: DecisionRecord) -> str | None:
        """:data:`MAIN`, :data:`CANDIDATE`, or None when the policy that served ``decision`` is gone."""
        served = decision.policy
        if served == CURRENT_POLICY:
            return MAIN if decision.policy_version >= self.retired_before else None
        if served == self.candidate_id:
            return CANDIDATE
        return MAIN if served == self.promoted else None


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
    ``routes``: which policy learns the reward of a decision, from the experiment's ``candidate`` and
    ``lineage`` (:class:`~banditkit.service.candidates.Routes`); a reward is learned by the policy that served
    its decision, and by nothing else.

    It holds no reference to a Bandit, so a store may call it from its own threads while the server goes
    on serving.
    """

    policy: Policy
    arm_index: dict[str, int]
    decisions: dict[str, DecisionRecord]
    routes: Routes = field(default_factory=lambda: Routes())

    @classmethod
    def of(cls, bandit: Bandit, decisions: dict[str, DecisionRecord], routes: Routes | None = None) -> DeltaPlanner:
        return cls(bandit.policy, {arm: i for i, arm in enumerate(bandit.arms)}, decisions, routes or Routes())

    @classmethod
    def of_model(cls, model: dict[str, Any], decisions: dict[str, DecisionRecord]) -> DeltaPlanner:
        """The planner of a stored model (``model.split``'s model: its ``policy``, ``arms``, candidate and lineage)."""
        return cls(
            make_policy(model["policy"]),
            {arm: i for i, arm in enumerate(model["arms"])},
            decisions,
            Routes.of_model(model),
        )

    def plan(self, new: list[RewardRecord], arrays: State) -> tuple[Delta | None, list[bool]]:
        """See :meth:`RewardPlanner.plan`: a reward whose arm was removed is recorded, not learned.

        A reward of a decision the candidate served changes the candidate's arrays only; one of a decision
        whose serving policy is gone (a candidate rolled back, a policy replaced by a promotion) is recorded,
        not learned.
        """
        index = self.arm_index
        learner = [self.routes.learner(self.decisions[reward.decision_id]) for reward in new]
        applied = [reward.arm in index and who is not None for reward, who in zip(new, learner, strict=True)]
        kept = [reward for reward, ok, who in zip(new, applied, learner, strict=True) if ok and who == MAIN]
        tried = [reward for reward, ok, who in zip(new, applied, learner, strict=True) if ok and who == CANDIDATE]
        if not kept and not tried:
            return None, applied
        change: State = {}
        merged = dict(arrays)
        arms = np.zeros(0, dtype=np.intp)
        values = np.zeros(0, dtype=np.float64)
        if kept:
            arms, values, change, updated = self._learned(self.policy, kept, policy_state(arrays))
            for key, value in arrays.items():  # as the update made them (the delta came from these arrays)
                if key.startswith(POLICY_PREFIX):
                    merged[key] = updated[key.removeprefix(POLICY_PREFIX)]
                elif key in change:
                    merged[key] = value + change[key]
        tried_arms = tried_values = None
        if tried:
            candidate = self.routes.candidate
            assert candidate is not None  # routed to the candidate only while it exists
            own = candidate_arrays(arrays)
            tried_arms, tried_values, tried_change, tried_updated = self._learned(candidate, tried, policy_state(own))
            for key, value in own.items():
                if key.startswith(POLICY_PREFIX):
                    merged[CANDIDATE_PREFIX + key] = tried_updated[key.removeprefix(POLICY_PREFIX)]
                elif key in tried_change:
                    merged[CANDIDATE_PREFIX + key] = value + tried_change[key]
            change.update((CANDIDATE_PREFIX + key, value) for key, value in tried_change.items())
        return Delta(self.policy, change, arms, values, merged, tried_arms, tried_values), applied

    def _learned(
        self, policy: Policy, rewards: list[RewardRecord], state: State
    ) -> tuple[np.ndarray, np.ndarray, State, State]:
        """Arm indices, values, the delta and the updated policy state of ``rewards`` learned by ``policy``."""
        index = self.arm_index
        rows = [self.decisions[reward.decision_id] for reward in rewards]
        arms = np.array([index[reward.arm] for reward in rewards], dtype=np.intp)
        values = np.array([reward.value for reward in rewards], dtype=np.float64)
        contexts = np.array([row.context for row in rows], dtype=np.float64) if policy.contextual else None
        propensities = (
            np.array([row.propensity for row in rows], dtype=np.float64) if policy.needs_propensities else None
        )
        change, updated = _learned(policy, len(index), state, arms, values, contexts, propensities)
        return arms, values, change, updated

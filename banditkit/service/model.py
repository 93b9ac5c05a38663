"""How a served Bandit is kept in a store: a model that changes rarely and additive arrays that change often.

The additive part is the policy state plus the Bandit's reward ledger (pulls,
reward sums, sums of squares, total reward): a reward adds a *delta* to it. The
model is everything else in ``Bandit.to_dict()`` (arms, policy, guardrails,
which arms are active); it changes only on arm changes, guardrail actions and
rollback.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..bandit import Bandit
from .stores.base import State

_LEDGER = ("pulls", "reward_sums", "reward_sq_sums")
_ADDITIVE = {"state", "version", "rng", "total_reward", *_LEDGER}


def split(bandit: Bandit) -> tuple[dict[str, Any], State]:
    """The model (JSON-ready) and the additive arrays of ``bandit``."""
    data = bandit.to_dict()
    model = {key: value for key, value in data.items() if key not in _ADDITIVE}
    arrays = {f"policy/{key}": value for key, value in bandit.state.items()}
    arrays.update({f"ledger/{key}": np.array(data[key], dtype=np.float64) for key in _LEDGER})
    arrays["ledger/total_reward"] = np.array([data["total_reward"]])
    return model, arrays


def join(model: dict[str, Any], arrays: State, version: int, rng: np.random.Generator) -> Bandit:
    """The Bandit that :func:`split` took apart, at ``version``, drawing from ``rng``."""
    data = dict(model, state=None)
    for key in _LEDGER:
        data[key] = arrays[f"ledger/{key}"].tolist()
    data["total_reward"] = float(arrays["ledger/total_reward"][0])
    data["version"] = version
    data["rng"] = rng.bit_generator.state
    return Bandit.from_dict(data, state=_policy_state(arrays))


def reward_delta(bandit: Bandit, arm_indices: np.ndarray, rewards: np.ndarray,
                 contexts: np.ndarray | None, propensities: np.ndarray | None) -> State:
    """What ``rewards`` (n,) for ``arm_indices`` (n,) add to the arrays of :func:`split`; nothing is changed."""
    state = bandit.state
    new_state = bandit.policy.update(state, arm_indices, rewards, propensities=propensities, context=contexts)
    delta = {f"policy/{key}": new_state[key] - state[key] for key in state}
    n_arms = len(bandit.arms)
    delta["ledger/pulls"] = np.bincount(arm_indices, minlength=n_arms).astype(np.float64)
    delta["ledger/reward_sums"] = np.bincount(arm_indices, weights=rewards, minlength=n_arms)
    delta["ledger/reward_sq_sums"] = np.bincount(arm_indices, weights=rewards * rewards, minlength=n_arms)
    delta["ledger/total_reward"] = np.array([rewards.sum()])
    return delta


def apply_rewards(bandit: Bandit, delta: State, arm_indices: np.ndarray, rewards: np.ndarray, *,
                  version: int | None = None) -> None:
    """Learn the rewards in memory exactly as the store did: the policy state becomes ``state + delta``.

    ``Bandit.absorb`` runs the Bandit's own bookkeeping (its reward ledger adds
    the same numbers in the same order as the store's delta) and guardrails
    (SLO, abort), so memory and store stay bit-identical without the policy's
    update being computed twice. ``version`` is the store's version after this
    delta (other writers may have added theirs in between); by default the
    Bandit's version goes up by one.
    """
    bandit.absorb(arm_indices, rewards, {key: value + delta[f"policy/{key}"] for key, value in bandit.state.items()},
                  version=version)


def guarded(bandit: Bandit) -> tuple[tuple[bool, ...], bool]:
    """What guardrails can change during an update: which arms are active, and the abort flag."""
    return tuple(bool(on) for on in bandit.active), bool(bandit.aborted)


def _policy_state(arrays: State) -> State:
    return {key.removeprefix("policy/"): value for key, value in arrays.items() if key.startswith("policy/")}

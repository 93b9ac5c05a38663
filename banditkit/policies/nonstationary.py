"""Policies for drifting rewards: forget old evidence by discounting or by a sliding window.

References: Raj & Kalyani, "Taming Non-stationary Bandits: A Bayesian
Approach" (2017) for discounted Thompson sampling; Garivier & Moulines, "On
Upper-Confidence Bound Policies for Switching Bandit Problems" (ALT 2011) for
sliding-window UCB.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import numpy as np

from .._typing import BoolArray, FloatArray, IntArray
from .._validation import check_int, check_real
from . import _jit
from .base import ORDERED, State, arm_sums, batch_rows, empirical_means
from .bounded import BoundedPolicy
from .registry import register
from .thompson import beta_argmax, beta_max_probabilities
from .ucb import IndexPolicy


@register
class DiscountedThompsonSampling(BoundedPolicy):
    """Beta Thompson sampling whose success and failure counts all decay by ``gamma`` per reward.

    Each reward first multiplies every arm's discounted counts by gamma, then
    adds (r, 1 - r) to the played arm; the posterior is Beta(prior_alpha +
    successes, prior_beta + failures). n rewards applied at once give exactly
    the same state as n applied one by one (weights gamma^(n-1-i)). Rewards in
    another interval ``reward_range`` are mapped onto [0, 1] first.

    >>> import numpy as np
    >>> policy = DiscountedThompsonSampling(gamma=0.5)
    >>> state = policy.update(policy.init_state(1), np.array([0, 0]), np.array([1.0, 1.0]))
    >>> state["successes"].tolist()
    [[1.5]]
    """

    name = "discounted_thompson"
    #: Each reward multiplies every count by gamma: a delta is exact only against the state it came from.
    merge_rule = ORDERED

    def __init__(
        self,
        gamma: float = 0.99,
        prior_alpha: float = 1.0,
        prior_beta: float = 1.0,
        reward_range: Sequence[float] = (0.0, 1.0),
    ):
        self.gamma = check_real("gamma", gamma, low=0.0, high=1.0, low_open=True)
        self.prior_alpha = check_real("prior_alpha", prior_alpha, low=0.0, low_open=True)
        self.prior_beta = check_real("prior_beta", prior_beta, low=0.0, low_open=True)
        super().__init__(reward_range)

    def init_state(self, n_arms: int, batch: int = 1, n_features: int | None = None) -> State:
        return {"successes": np.zeros((batch, n_arms)), "failures": np.zeros((batch, n_arms))}

    def posterior(self, state: State) -> tuple[np.ndarray, np.ndarray]:
        return self.prior_alpha + state["successes"], self.prior_beta + state["failures"]

    def probabilities(self, state: State, mask: BoolArray, context: FloatArray | None = None) -> FloatArray:
        return beta_max_probabilities(*self.posterior(state), mask)

    def sample(
        self, state: State, rng: np.random.Generator, mask: BoolArray, context: FloatArray | None = None
    ) -> IntArray:
        return beta_argmax(*self.posterior(state), rng, mask)

    def learn(self, state: State, arms: IntArray, rewards: FloatArray, propensities: FloatArray | None) -> State:
        batch, n_arms = state["successes"].shape
        n = arms.shape[0]
        if batch == 1 and n == 1:
            return self.learn_one(state, int(arms[0]), float(rewards[0]), None)
        if batch == 1:
            # Row i is followed by n-1-i later rewards, each discounting it once more.
            weights = self.gamma ** np.arange(n - 1, -1, -1, dtype=np.float64)
            decay = self.gamma**n
        else:
            weights, decay = np.ones(n), self.gamma
        return {
            "successes": decay * state["successes"] + arm_sums(state, arms, weights * rewards, n_arms),
            "failures": decay * state["failures"] + arm_sums(state, arms, weights * (1 - rewards), n_arms),
        }

    def learn_one(self, state: State, arm: int, reward: float, propensity: float | None) -> State:
        """The same as :meth:`learn` for one reward into one state: discount every count, add to one arm."""
        successes, failures = self.gamma * state["successes"], self.gamma * state["failures"]
        successes[0, arm] += reward
        failures[0, arm] += 1 - reward
        return {"successes": successes, "failures": failures}

    def unit_means(self, state: State) -> FloatArray:
        alpha, beta = self.posterior(state)
        means: FloatArray = alpha / (alpha + beta)
        return means


@register
class SlidingWindowUCB(IndexPolicy):
    """UCB on the last ``window`` rewards only: mean_w + sqrt(xi * ln(min(t, window)) / n_w).

    The state keeps the window as a ring buffer (arms and rewards) beside the
    windowed per-arm counts and sums; a new reward adds its delta and evicts
    the oldest entry's. Arms absent from the window are tried first. Rewards
    in ``reward_range`` are kept mapped onto [0, 1], the scale of the bonus.

    >>> import numpy as np
    >>> policy = SlidingWindowUCB(window=2)
    >>> state = policy.update(policy.init_state(2), np.array([0, 0, 1]), np.array([1.0, 0.0, 1.0]))
    >>> state["pulls"].tolist(), state["reward_sums"].tolist()
    ([[1.0, 1.0]], [[0.0, 1.0]])
    """

    name = "sliding_window_ucb"
    shared_keys = frozenset({"window_arms", "window_rewards", "steps"})
    #: A reward overwrites the ring slot ``steps % window``: a delta is exact only against the state it came from.
    merge_rule = ORDERED

    def __init__(self, window: int = 1000, xi: float = 0.6, reward_range: Sequence[float] = (0.0, 1.0)):
        self.window = check_int("window", window, low=1)
        self.xi = check_real("xi", xi, low=0.0, low_open=True)
        super().__init__(reward_range)

    def init_state(self, n_arms: int, batch: int = 1, n_features: int | None = None) -> State:
        state = super().init_state(n_arms, batch)
        state["window_arms"] = np.full((batch, self.window), -1, dtype=np.int64)
        state["window_rewards"] = np.zeros((batch, self.window))
        state["steps"] = np.zeros(batch, dtype=np.int64)
        return state

    def indices(self, state: State) -> FloatArray:
        pulls = state["pulls"]
        horizon = np.minimum(state["steps"], self.window)[:, None].astype(np.float64)
        log_horizon = np.log(np.maximum(horizon, 1.0))
        bonus = np.sqrt(np.divide(self.xi * log_horizon, pulls, out=np.full(pulls.shape, np.inf), where=pulls > 0.5))
        indices: FloatArray = np.where(pulls > 0.5, empirical_means(state), 0.0) + bonus
        return indices

    def choose_compiled(self, compiled: ModuleType, state: State, rng: np.random.Generator, mask: BoolArray) -> int:
        arm: int = compiled.sliding_window_ucb_argmax(
            _jit.generator_pointers(rng),
            state["pulls"],
            state["reward_sums"],
            state["steps"],
            self.window,
            self.xi,
            mask,
        )
        return arm

    def learn(self, state: State, arms: IntArray, rewards: FloatArray, propensities: FloatArray | None) -> State:
        batch, n_arms = state["pulls"].shape
        if batch == 1 and arms.shape[0] == 1:
            return self.learn_one(state, int(arms[0]), float(rewards[0]), None)
        rows = batch_rows(state, arms.shape[0])
        # Rows that a later row of the same batch would evict never enter the window.
        skipped = max(arms.shape[0] - self.window, 0) if batch == 1 else 0
        arms, rewards, rows = arms[skipped:], rewards[skipped:], rows[skipped:]
        # Position of each new entry in its row's ring (rows with one entry each, or one row in order).
        offsets = np.arange(arms.shape[0]) if batch == 1 else np.zeros(arms.shape[0], dtype=np.int64)
        slots = (state["steps"][rows] + skipped + offsets) % self.window
        evicted_arms = state["window_arms"][rows, slots]
        evicted_rewards = state["window_rewards"][rows, slots]
        kept = evicted_arms >= 0
        window_arms = state["window_arms"].copy()
        window_rewards = state["window_rewards"].copy()
        window_arms[rows, slots] = arms
        window_rewards[rows, slots] = rewards
        evicted = {"pulls": kept.astype(np.float64), "reward_sums": np.where(kept, evicted_rewards, 0.0)}
        evicted_arm_index = np.where(kept, evicted_arms, 0)
        new = {
            "window_arms": window_arms,
            "window_rewards": window_rewards,
            "steps": state["steps"] + np.bincount(rows, minlength=batch) + skipped,
        }
        for key, added in (("pulls", np.ones(arms.shape[0])), ("reward_sums", rewards)):
            delta = arm_sums(state, arms, added, n_arms) - arm_sums(state, evicted_arm_index, evicted[key], n_arms)
            new[key] = np.maximum(state[key] + delta, 0.0)
        return new

    def learn_one(self, state: State, arm: int, reward: float, propensity: float | None) -> State:
        """The same delta as :meth:`learn` for one reward into one state, on scalars."""
        step = int(state["steps"][0])
        slot = step % self.window
        new = {key: value.copy() for key, value in state.items()}
        evicted_arm = int(new["window_arms"][0, slot])
        if evicted_arm >= 0:
            new["pulls"][0, evicted_arm] = max(new["pulls"][0, evicted_arm] - 1.0, 0.0)
            new["reward_sums"][0, evicted_arm] = max(
                new["reward_sums"][0, evicted_arm] - new["window_rewards"][0, slot], 0.0
            )
        new["pulls"][0, arm] += 1.0
        new["reward_sums"][0, arm] += reward
        new["window_arms"][0, slot] = arm
        new["window_rewards"][0, slot] = reward
        new["steps"][0] = step + 1
        return new

    def remove_arm(self, state: State, index: int) -> State:
        new = super().remove_arm(state, index)
        arms = state["window_arms"]
        new["window_arms"] = np.where(arms == index, -1, np.where(arms > index, arms - 1, arms))
        return new

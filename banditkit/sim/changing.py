"""Environments whose rewards change over time: scheduled Bernoulli means, and an oblivious adversary."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._validation import check_int
from ..errors import InvalidParameterError, InvalidTypeError
from .environments import Chunk, Environment, check_vector, uniform_noise


class NonStationary(Environment):
    """Bernoulli arms whose means follow a schedule: abrupt change points or a linear drift.

    Regret is *dynamic*: measured against the best arm at each step, so a policy
    must track the changes to keep it low.

    Parameters
    ----------
    means : array_like, shape (S, K)
        Arm means at each waypoint, each in [0, 1].
    times : sequence of int, shape (S,)
        The step of each waypoint, strictly increasing, starting at 0.
    drift : bool
        False for abrupt changes (``means[i]`` holds on [times[i], times[i+1])),
        True for means moving linearly from one waypoint to the next.

    Examples
    --------
    >>> env = NonStationary([[0.9, 0.1], [0.1, 0.9]], times=[0, 100], drift=True)
    >>> env.means_at(np.array([0, 50, 100, 500])).round(2).tolist()
    [[0.9, 0.1], [0.5, 0.5], [0.1, 0.9], [0.1, 0.9]]
    """

    def __init__(self, means: Sequence[Sequence[float]], times: Sequence[int], drift: bool = False):
        self.means = check_vector("means", means, low=0.0, high=1.0, ndim=2)
        self.times = np.asarray([check_int(f"times[{i}]", t, low=0) for i, t in enumerate(times)], dtype=np.int64)
        if self.times.size != self.means.shape[0]:
            raise InvalidParameterError(
                f"times must have one step per row of means ({self.means.shape[0]}), got {self.times.size}",
                field="times",
            )
        if self.times[0] != 0 or np.any(np.diff(self.times) <= 0):
            raise InvalidParameterError(
                f"times must start at 0 and increase strictly, got {self.times.tolist()}", field="times"
            )
        if not isinstance(drift, bool):
            raise InvalidTypeError(f"drift must be true or false, got {drift!r}", field="drift")
        self.drift = drift
        self.n_arms = self.means.shape[1]

    def means_at(self, steps: np.ndarray) -> np.ndarray:
        """Arm means at each of ``steps`` (n,), shape (n, K)."""
        if self.drift:
            return np.stack([np.interp(steps, self.times, self.means[:, k]) for k in range(self.n_arms)], axis=1)
        segment = np.searchsorted(self.times, steps, side="right") - 1
        return self.means[segment]

    def draw(self, rngs, start, n_steps):
        schedule = self.means_at(np.arange(start, start + n_steps))
        return Chunk(start, {"uniform": uniform_noise(rngs, n_steps), "means": schedule})

    def expected_rewards(self, chunk, step):
        return chunk.arrays["means"][step][None, :]

    def rewards(self, chunk, step, arms, expected):
        return (chunk.arrays["uniform"][step] < expected[0, arms]).astype(np.float64)

    def describe(self):
        return {
            "kind": "non_stationary",
            "means": self.means.tolist(),
            "times": self.times.tolist(),
            "drift": self.drift,
        }


class Adversarial(Environment):
    """An oblivious adversary: a reward table fixed before the run, the same in every replication.

    Regret is measured against the best *fixed* arm in hindsight over the table,
    the benchmark EXP3 is designed for; it can decrease, since a policy that
    switches arms may beat every fixed arm.

    Parameters
    ----------
    table : array_like, shape (S, K)
        Reward of each arm at each step (or block of steps).
    repeat : int >= 1
        Each row holds for this many consecutive steps; the horizon must be S * repeat.

    Examples
    --------
    >>> env = Adversarial([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], repeat=10)
    >>> env.best_arm, env.length
    (1, 30)
    """

    reward_bounds = (-np.inf, np.inf)

    def __init__(self, table: Sequence[Sequence[float]], repeat: int = 1):
        self.table = check_vector("table", table, ndim=2)
        self.repeat = check_int("repeat", repeat, low=1)
        self.n_arms = self.table.shape[1]
        self.length = self.table.shape[0] * self.repeat
        self.best_arm = int(np.argmax(self.table.sum(axis=0)))
        self.reward_bounds = (float(self.table.min()), float(self.table.max()))

    def check_horizon(self, horizon: int) -> None:
        if horizon != self.length:
            raise InvalidParameterError(
                f"horizon must equal the adversarial table's length ({self.length} steps), got {horizon}",
                field="horizon",
            )

    def draw(self, rngs, start, n_steps):
        rows = np.arange(start, start + n_steps) // self.repeat
        return Chunk(start, {"table": self.table[rows]})

    def expected_rewards(self, chunk, step):
        return chunk.arrays["table"][step][None, :]

    def rewards(self, chunk, step, arms, expected):
        return expected[0, arms]

    def reference_rewards(self, expected):
        return expected[:, self.best_arm]

    def describe(self):
        return {"kind": "adversarial", "table": self.table.tolist(), "repeat": self.repeat}

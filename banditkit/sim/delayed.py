"""Delayed and batched feedback: when each observation reaches the policy.

Production rewards rarely arrive before the next decision: conversions come
late, models are retrained hourly. ``Delayed`` wraps any environment and holds
each (arm, reward) back until its arrival step; decisions in between are made
on the stale state. Pending observations are kept in buckets keyed by arrival
step, so memory grows with the number in flight, not with the horizon.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .._validation import check_int, check_real
from ..errors import InvalidParameterError
from .environments import Chunk, Environment


@dataclass(frozen=True)
class Observations:
    """Feedback for a set of replications: ``rows`` (n,) index them, None meaning all R in order."""

    rows: np.ndarray | None
    arms: np.ndarray
    rewards: np.ndarray
    propensities: np.ndarray | None = None
    contexts: np.ndarray | None = None

    def take(self, index: np.ndarray, rows: np.ndarray) -> Observations:
        """The observations at positions ``index``, belonging to replications ``rows``."""
        pick = (lambda a: None if a is None else a[index])
        return Observations(rows, self.arms[index], self.rewards[index], pick(self.propensities),
                            pick(self.contexts))


def _concatenate(parts: list[np.ndarray | None]) -> np.ndarray | None:
    return None if parts[0] is None else np.concatenate(parts)


def update_passes(batches: list[Observations], replications: int) -> list[Observations]:
    """Regroup observations into passes in which every replication appears at most once.

    A pass is one call of ``policy.update`` on the states of its rows; several
    observations of one replication are applied in arrival order, one pass each.
    """
    if all(batch.rows is None for batch in batches):
        return batches
    every = np.arange(replications)
    rows = np.concatenate([every if b.rows is None else b.rows for b in batches])
    merged = Observations(rows, *(_concatenate([getattr(b, field) for b in batches])
                                  for field in ("arms", "rewards", "propensities", "contexts")))
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    first = np.searchsorted(sorted_rows, sorted_rows, side="left")
    rank = np.arange(sorted_rows.size) - first
    passes = []
    for level in range(int(rank.max()) + 1 if rank.size else 0):
        index = order[rank == level]
        chosen = rows[index]
        full = chosen.size == replications and np.array_equal(chosen, every)
        passes.append(merged.take(index, None if full else chosen))
    return passes


class ImmediateFeedback:
    """Each observation reaches the policy before the next decision."""

    def __init__(self) -> None:
        self._pending: list[Observations] = []

    def add(self, time: int, chunk: Chunk, step: int, observations: Observations) -> None:
        self._pending = [observations]

    def due(self, time: int) -> list[Observations]:
        """Update passes to apply before the decision at ``time``."""
        pending, self._pending = self._pending, []
        return pending


class DelayedFeedback:
    """Observations held in buckets by arrival step; see :class:`Delayed` for the arrival rules."""

    def __init__(self, environment: Delayed, replications: int):
        self._environment = environment
        self._replications = replications
        self._buckets: dict[int, list[Observations]] = {}

    def add(self, time: int, chunk: Chunk, step: int, observations: Observations) -> None:
        arrival = self._environment.arrival_steps(time, chunk, step)
        if np.ndim(arrival) == 0:
            self._buckets.setdefault(int(arrival), []).append(observations)
            return
        order = np.argsort(arrival, kind="stable")
        steps, starts = np.unique(arrival[order], return_index=True)
        for when, index in zip(steps.tolist(), np.split(order, starts[1:])):
            self._buckets.setdefault(when, []).append(observations.take(index, index))

    def due(self, time: int) -> list[Observations]:
        batches = self._buckets.pop(time, None)
        return update_passes(batches, self._replications) if batches else []


class Delayed(Environment):
    """Wrap ``environment`` so that feedback arrives late; give exactly one of the three rules.

    Args:
        environment: the environment whose rewards are delayed.
        delay: fixed delay in steps (>= 0): the reward of step t is seen before decision t + 1 + delay.
        mean_delay: random delay, geometric on {0, 1, ...} with this mean (> 0), drawn per decision.
        batch: updates applied in batches: all feedback of steps [jB, (j+1)B) before decision (j+1)B.

    >>> from banditkit.sim import Bernoulli
    >>> Delayed(Bernoulli([0.1, 0.2]), batch=100).describe()["batch"]
    100
    """

    def __init__(self, environment: Environment, *, delay: int | None = None, mean_delay: float | None = None,
                 batch: int | None = None):
        if not isinstance(environment, Environment):
            raise InvalidParameterError(f"environment must be a banditkit.sim environment, got {environment!r}")
        given = [name for name, value in (("delay", delay), ("mean_delay", mean_delay), ("batch", batch))
                 if value is not None]
        if len(given) != 1:
            raise InvalidParameterError(f"Delayed takes exactly one of delay, mean_delay, batch; got {given or 'none'}")
        self.environment = environment
        self.delay = None if delay is None else check_int("delay", delay, low=0)
        self.mean_delay = None if mean_delay is None else check_real("mean_delay", mean_delay, low=0.0, low_open=True)
        self.batch = None if batch is None else check_int("batch", batch, low=1)
        self.n_arms = environment.n_arms
        self.n_features = environment.n_features
        self.reward_bounds = environment.reward_bounds

    def arrival_steps(self, time: int, chunk: Chunk, step: int) -> int | np.ndarray:
        """Step before whose decision the feedback of ``time`` arrives: an int, or one per replication (R,)."""
        if self.delay is not None:
            return time + 1 + self.delay
        if self.batch is not None:
            return (time // self.batch + 1) * self.batch
        return time + 1 + chunk.arrays["delay"][step]

    def feedback(self, replications: int) -> DelayedFeedback:
        return DelayedFeedback(self, replications)

    def check_horizon(self, horizon: int) -> None:
        self.environment.check_horizon(horizon)

    def draw(self, rngs, start, n_steps):
        chunk = self.environment.draw(rngs, start, n_steps)
        if self.mean_delay is None:
            return chunk
        success = 1.0 / (1.0 + self.mean_delay)
        delays = np.stack([rng.geometric(success, n_steps) - 1 for rng in rngs], axis=1)
        return replace(chunk, arrays={**chunk.arrays, "delay": delays})

    def expected_rewards(self, chunk, step):
        return self.environment.expected_rewards(chunk, step)

    def rewards(self, chunk, step, arms, expected):
        return self.environment.rewards(chunk, step, arms, expected)

    def outcome(self, chunk, step, arms):
        return self.environment.outcome(chunk, step, arms)

    def contexts(self, chunk, step):
        return self.environment.contexts(chunk, step)

    def reference_rewards(self, expected):
        return self.environment.reference_rewards(expected)

    def lower_bound_constant(self):
        return self.environment.lower_bound_constant()

    def describe(self) -> dict[str, Any]:
        rule = {k: v for k, v in (("delay", self.delay), ("mean_delay", self.mean_delay), ("batch", self.batch))
                if v is not None}
        return {"kind": "delayed", "environment": self.environment.describe(), **rule}

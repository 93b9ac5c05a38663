"""Delayed and batched feedback: when each observation reaches the policy.

Production rewards rarely arrive before the next decision: conversions come
late, models are retrained hourly. ``Delayed`` wraps any environment and holds
each (arm, reward) back until its arrival step; decisions in between are made
on the stale state. The runner's :class:`~banditkit.sim.feedback.Feedback`
queue keeps what is pending.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from .._validation import check_int, check_real
from ..errors import InvalidParameterError, InvalidTypeError
from .environments import Chunk, Environment


class Delayed(Environment):
    """Wrap ``environment`` so that feedback arrives late; give exactly one of the three rules.

    Parameters
    ----------
    environment : Environment
        The environment whose rewards are delayed.
    delay : int >= 0, optional
        Fixed delay in steps: the reward of step t is seen before decision t + 1 + delay.
    mean_delay : float > 0, optional
        Random delay, geometric on {0, 1, ...} with this mean, drawn per decision.
    batch : int, optional
        Updates applied in batches: all feedback of steps [jB, (j+1)B) before decision (j+1)B.

    Examples
    --------
    >>> from banditkit.sim import Bernoulli
    >>> Delayed(Bernoulli([0.1, 0.2]), batch=100).describe()["batch"]
    100
    """

    def __init__(
        self,
        environment: Environment,
        *,
        delay: int | None = None,
        mean_delay: float | None = None,
        batch: int | None = None,
    ):
        if not isinstance(environment, Environment):
            raise InvalidTypeError(
                f"environment must be a banditkit.sim environment, got {environment!r}", field="environment"
            )
        given = [
            name
            for name, value in (("delay", delay), ("mean_delay", mean_delay), ("batch", batch))
            if value is not None
        ]
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
        rule = {
            k: v
            for k, v in (("delay", self.delay), ("mean_delay", self.mean_delay), ("batch", self.batch))
            if v is not None
        }
        return {"kind": "delayed", "environment": self.environment.describe(), **rule}

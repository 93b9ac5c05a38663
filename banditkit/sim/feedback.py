"""When each observation reaches the policy: a queue of observations keyed by arrival step.

The runner adds the feedback of every step with the step before whose decision
it arrives (:meth:`Environment.arrival_steps`: the next step, unless a
:class:`~banditkit.sim.Delayed` wrapper holds it back), and applies what is due
before each decision. Memory grows with the number of observations in flight,
not with the horizon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np


@dataclass(frozen=True)
class Observations:
    """Feedback for a set of replications: ``rows`` (n,) index them, None meaning all R in order."""

    rows: np.ndarray | None
    arms: np.ndarray
    rewards: np.ndarray
    propensities: np.ndarray | None = None
    contexts: np.ndarray | None = None

    def take(self, index: np.ndarray, rows: np.ndarray | None) -> Observations:
        """The observations at positions ``index``, belonging to replications ``rows``."""
        pick = lambda a: None if a is None else a[index]
        return Observations(rows, self.arms[index], self.rewards[index], pick(self.propensities), pick(self.contexts))


def _concatenate(parts: list[np.ndarray | None]) -> np.ndarray | None:
    """The parts end to end, or None when the field is absent (it then is in every part)."""
    return None if parts[0] is None else np.concatenate(cast("list[np.ndarray]", parts))


def update_passes(batches: list[Observations], replications: int) -> list[Observations]:
    """Regroup observations into passes in which every replication appears at most once.

    A pass is one call of ``policy.update`` on the states of its rows; several
    observations of one replication are applied in arrival order, one pass each.
    """
    if all(batch.rows is None for batch in batches):
        return batches
    every = np.arange(replications)
    rows = np.concatenate([every if b.rows is None else b.rows for b in batches])
    merged = Observations(
        rows,
        np.concatenate([b.arms for b in batches]),
        np.concatenate([b.rewards for b in batches]),
        _concatenate([b.propensities for b in batches]),
        _concatenate([b.contexts for b in batches]),
    )
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


class Feedback:
    """Observations of ``replications`` runs held in buckets by arrival step.

    >>> queue = Feedback(replications=2)
    >>> queue.add(1, Observations(None, np.array([0, 1]), np.array([1.0, 0.0])))
    >>> queue.due(0), len(queue.due(1)), queue.due(1)
    ([], 1, [])
    """

    def __init__(self, replications: int):
        self._replications = replications
        self._buckets: dict[int, list[Observations]] = {}

    def add(self, arrival: int | np.ndarray, observations: Observations) -> None:
        """Hold ``observations`` until step ``arrival``: one step for all, or one per replication (R,)."""
        if np.ndim(arrival) == 0:
            self._buckets.setdefault(int(arrival), []).append(observations)
            return
        arrivals = np.asarray(arrival)
        order = np.argsort(arrivals, kind="stable")
        steps, starts = np.unique(arrivals[order], return_index=True)
        for when, index in zip(steps.tolist(), np.split(order, starts[1:]), strict=True):
            self._buckets.setdefault(when, []).append(observations.take(index, index))

    def due(self, time: int) -> list[Observations]:
        """Update passes to apply before the decision at ``time`` (see :func:`update_passes`)."""
        batches = self._buckets.pop(time, None)
        return update_passes(batches, self._replications) if batches else []

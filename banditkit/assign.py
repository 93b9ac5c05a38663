"""Deterministic per-unit assignment: the same unit gets the same arm on any machine, in any process.

``u = int.from_bytes(SHA1(f"{name}:{unit}")[:8], "big") / 2**64``, then the
first arm, in arm order, whose cumulative probability exceeds u. A unit's arm
changes only when the probabilities move across its u, so assignments are
stable while the policy is, and each arm gets its probability's share of units.

The decision service and :mod:`banditkit.client`'s local decisions both draw
with the functions below, so one unit gets one arm, bit for bit, in either.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from .policies.base import inverse_cdf, inverse_cdf_row, last_positive


def unit_uniform(experiment: str, unit: str) -> float:
    """The unit's fixed point in [0, 1) for this experiment.

    >>> round(unit_uniform("default", "user-42"), 6)
    0.845561
    """
    digest = hashlib.sha1(f"{experiment}:{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(probabilities: np.ndarray, u: np.ndarray | float) -> np.ndarray:
    """Arm index per row for the units' points ``u`` (n,): :func:`banditkit.policies.base.inverse_cdf`."""
    return inverse_cdf(probabilities, u)


def cumulative(probabilities: np.ndarray) -> tuple[list[float], int]:
    """Running sums of one (K,) distribution as Python floats and its last positive arm, for :func:`assign_one`.

    >>> cumulative(np.array([0.25, 0.75, 0.0]))
    ([0.25, 1.0, 1.0], 1)
    """
    return np.cumsum(probabilities).tolist(), int(last_positive(probabilities))


def assign_one(sums: list[float], last: int, experiment: str, unit: str | None, rng: np.random.Generator) -> int:
    """Arm index for one decision: the unit's point if it has one, else a fresh uniform from ``rng``.

    >>> assign_one([0.5, 1.0], 1, "default", "user-42", np.random.default_rng(0))
    1
    """
    point = rng.random() if unit is None else unit_uniform(experiment, unit)
    return inverse_cdf_row(sums, last, point)


def assign_rows(
    probabilities: np.ndarray, experiment: str, units: list[str | None], rng: np.random.Generator
) -> np.ndarray:
    """Arm index per row from ``probabilities`` (1 or n, K): the unit's point or a fresh uniform.

    >>> assign_rows(np.array([[0.5, 0.5]]), "default", ["user-42", "user-7"], np.random.default_rng(0)).tolist()
    [1, 0]
    """
    points = rng.random(len(units))
    for row, unit in enumerate(units):
        if unit is not None:
            points[row] = unit_uniform(experiment, unit)
    return np.asarray(assign(probabilities, points)).reshape(len(units))


def contextual_probabilities(bandit: Any, contexts: np.ndarray, allowed: tuple[str, ...] | None) -> np.ndarray:
    """(n, K) served probabilities of a contextual :class:`~banditkit.Bandit` for ``contexts`` (n, d) and ``allowed``.

    >>> from banditkit import Bandit
    >>> b = Bandit(["a", "b"], policy="linucb", n_features=1)
    >>> contextual_probabilities(b, np.array([[1.0]]), None).shape
    (1, 2)
    """
    if allowed is None:
        return np.asarray(bandit.probabilities_many(contexts=contexts))
    return np.array([list(bandit.probabilities(context=x, allowed=list(allowed)).values()) for x in contexts])

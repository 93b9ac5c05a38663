"""Deterministic per-unit assignment: the same unit gets the same arm on any machine, in any process.

``u = int.from_bytes(SHA1(f"{name}:{unit}")[:8], "big") / 2**64``, then the
first arm, in arm order, whose cumulative probability exceeds u. A unit's arm
changes only when the probabilities move across its u, so assignments are
stable while the policy is, and each arm gets its probability's share of units.
"""

from __future__ import annotations

import hashlib

import numpy as np

from .policies.base import inverse_cdf


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

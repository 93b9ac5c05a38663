"""Deterministic per-unit assignment: the same unit gets the same arm on any machine, in any process.

``u = int.from_bytes(SHA1(f"{name}:{unit}")[:8], "big") / 2**64``, then the
first arm, in arm order, whose cumulative probability exceeds u. A unit's arm
changes only when the probabilities move across its u, so assignments are
stable while the policy is, and each arm gets its probability's share of units.
"""

from __future__ import annotations

import hashlib

import numpy as np


def unit_uniform(experiment: str, unit: str) -> float:
    """The unit's fixed point in [0, 1) for this experiment.

    >>> round(unit_uniform("default", "user-42"), 6)
    0.845561
    """
    digest = hashlib.sha1(f"{experiment}:{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(probabilities: np.ndarray, u: np.ndarray | float) -> np.ndarray:
    """Arm index per row: walk the cumulative ``probabilities`` (n, K) in arm order up to ``u`` (n,)."""
    cumulative = np.cumsum(probabilities, axis=-1)
    u = np.asarray(u, dtype=np.float64)[..., None]
    arms = (cumulative <= u).sum(axis=-1)
    # Rounding can leave the total a hair below u: fall back to the last arm with mass.
    last = probabilities.shape[-1] - 1 - np.argmax(probabilities[..., ::-1] > 0, axis=-1)
    return np.minimum(arms, last)

"""What each logged row contributes: the estimators' per-row terms and the reward model's features.

Shared by the in-memory path (:func:`banditkit.ope.evaluate` on a whole log) and the streamed one
(:mod:`banditkit.ope.streaming`, chunk by chunk), so both compute the same thing.
"""

from __future__ import annotations

import numpy as np

from .._typing import FloatArray, IntArray
from . import estimators as est
from .logs import LoggedData

#: The estimators that need a reward model's predictions.
MODEL_BASED = frozenset({"dm", "dr", "switch_dr"})


def model_features(log: LoggedData, n_positions: int | None = None) -> np.ndarray:
    """Reward-model features: the context, plus a one-hot of the position (slot 0 as baseline).

    ``n_positions`` sets the one-hot's width (default: the log's own), so chunks of a log get the whole
    log's features.

    Examples
    --------
    >>> from banditkit.ope import load_log
    >>> log = load_log({"arm": [0, 1, 1], "reward": [1.0, 0.0, 1.0], "propensity": [0.5] * 3, "position": [0, 1, 2]})
    >>> model_features(log).tolist()  # no context: the one-hot of positions 1 and 2
    [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    """
    parts = [np.zeros((log.n_rows, 0))] if log.contexts is None else [log.contexts]
    width = log.n_positions if n_positions is None else n_positions
    if log.positions is not None and width > 1:
        parts.append((log.positions[:, None] == np.arange(1, width)).astype(np.float64))
    return parts[0] if len(parts) == 1 else np.hstack(parts)


def estimator_terms(
    name: str,
    log: LoggedData,
    probabilities: FloatArray,
    arms: IntArray,
    predictions: FloatArray | None,
    rng: np.random.Generator,
    clip_weight: float,
    switch_weight: float,
) -> est.Terms:
    """Per-row terms of estimator ``name`` on ``log`` (a whole log or one chunk of it)."""
    rewards, propensities = log.rewards, log.propensities
    if name == "replay":
        return est.replay_terms(rewards, arms, propensities, probabilities, rng)
    if name in ("ips", "clipped_ips"):
        cap = clip_weight if name == "clipped_ips" else np.inf
        return est.ips_terms(rewards, propensities, probabilities, arms, max_weight=cap, name=name)
    if name == "snips":
        return est.snips_terms(rewards, propensities, probabilities, arms)
    assert predictions is not None, "the model-based estimators get predictions from evaluate()"
    if name == "dm":
        return est.dm_terms(probabilities, predictions)
    cap = switch_weight if name == "switch_dr" else np.inf
    return est.dr_terms(rewards, propensities, probabilities, arms, predictions, max_weight=cap, name=name)

"""What a Bandit returns: decisions that know their propensity, and per-arm statistics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import overload

import numpy as np

from .errors import InvalidParameterError


def _computed(owner: Decision | DecisionBatch, slot: str) -> np.ndarray:
    """The array in ``owner``'s ``slot``, ``_compute(*_arguments)`` on first use (both then dropped)."""
    value: np.ndarray | None = getattr(owner, slot)
    if value is None:
        compute = owner._compute
        assert compute is not None  # the constructor took exactly one of the two
        value = compute(*owner._arguments)
        setattr(owner, slot, value)
        owner._compute, owner._arguments = None, ()
    return value


class Decision:
    """One served choice: the arm, and the exact probability with which it was chosen.

    The action distribution is given, or computed on first access to
    ``propensity`` or ``probabilities`` by ``compute``, which holds a snapshot of
    the state at decision time (states are never mutated in place): a plain
    ``select()`` stays on the fast path and a later ``update`` cannot change
    what this decision reports.

    Examples
    --------
    >>> import banditkit as bk
    >>> bandit = bk.Bandit(["a", "b"], policy=bk.EpsilonGreedy(0.1), seed=0)
    >>> decision = bandit.select()
    >>> decision.arm, decision.propensity, decision.probabilities
    ('a', 0.5, {'a': 0.5, 'b': 0.5})
    >>> bandit.update(decision, 1.0)  # the propensity stays that of the decision
    >>> decision.propensity, round(bandit.probabilities()["a"], 2)
    (0.5, 0.95)
    """

    __slots__ = (
        "_arm",
        "_arm_index",
        "_arms",
        "_context",
        "_unit",
        "_fallback",
        "_version",
        "_distribution",
        "_compute",
        "_arguments",
    )

    def __init__(
        self,
        arm: str,
        arm_index: int,
        arms: tuple[str, ...],
        context: np.ndarray | None,
        unit: str | None,
        fallback: bool,
        version: int,
        distribution: np.ndarray | None = None,
        compute: Callable[..., np.ndarray] | None = None,
        arguments: tuple = (),
    ):
        """Give exactly one of ``distribution`` (K,) or ``compute``, called with ``arguments`` when first needed.

        A function and its arguments rather than a closure: the fast path makes one Decision per call, and a
        closure costs more to build.
        """
        if (distribution is None) is (compute is None):
            raise InvalidParameterError("a Decision takes exactly one of distribution and compute")
        self._arm, self._arm_index, self._arms = arm, arm_index, arms
        self._context, self._unit, self._fallback, self._version = context, unit, fallback, version
        self._distribution, self._compute, self._arguments = distribution, compute, arguments

    arm = property(lambda self: self._arm, doc="Name of the chosen arm.")
    arm_index = property(lambda self: self._arm_index, doc="Index of the arm in ``arms`` at decision time.")
    arms = property(lambda self: self._arms, doc="The bandit's arm names at decision time.")
    context = property(lambda self: self._context, doc="Context vector the decision used, or None.")
    unit = property(lambda self: self._unit, doc="Unit (user id) for deterministic assignment, or None.")
    fallback = property(lambda self: self._fallback, doc="True when a guardrail served the default arm.")
    version = property(lambda self: self._version, doc="The bandit's state version at decision time.")

    def distribution(self) -> np.ndarray:
        """Probability of every arm at decision time, shape (K,), summing to 1."""
        return _computed(self, "_distribution")

    @property
    def propensity(self) -> float:
        """Probability with which ``arm`` was chosen: exact, in (0, 1]."""
        return float(self.distribution()[self._arm_index])

    @property
    def probabilities(self) -> dict[str, float]:
        """Probability of every arm at decision time, by name."""
        return dict(zip(self._arms, self.distribution().tolist(), strict=True))

    def __repr__(self) -> str:
        return (
            f"Decision(arm={self._arm!r}, propensity={self.propensity:.6g}, "
            f"probabilities={ {k: round(v, 6) for k, v in self.probabilities.items()} }, "
            f"fallback={self._fallback})"
        )


class DecisionBatch:
    """Many decisions at once, as arrays of length n (from ``Bandit.select_many``).

    Examples
    --------
    >>> import banditkit as bk
    >>> bandit = bk.Bandit(["a", "b"], policy=bk.EpsilonGreedy(0.1), seed=0)
    >>> bandit.update("a", 1.0)
    >>> batch = bandit.select_many(4)
    >>> len(batch), batch.arms.tolist(), batch.propensities.round(2).tolist()
    (4, ['a', 'a', 'a', 'a'], [0.95, 0.95, 0.95, 0.95])
    >>> batch.probabilities.shape  # every arm's probability, per row
    (4, 2)
    """

    __slots__ = (
        "arm_indices",
        "arm_names",
        "contexts",
        "units",
        "fallback",
        "version",
        "_probabilities",
        "_compute",
        "_arguments",
    )

    def __init__(
        self,
        arm_indices: np.ndarray,
        arm_names: tuple[str, ...],
        *,
        contexts: np.ndarray | None,
        units: list[str] | None,
        fallback: np.ndarray,
        version: int,
        probabilities: np.ndarray | None = None,
        compute: Callable[..., np.ndarray] | None = None,
        arguments: tuple = (),
    ):
        """Give exactly one of ``probabilities`` (n, K) or ``compute``, called with ``arguments`` when first needed."""
        if (probabilities is None) is (compute is None):
            raise InvalidParameterError("a DecisionBatch takes exactly one of probabilities and compute")
        self.arm_indices, self.arm_names = arm_indices, arm_names
        self.contexts, self.units, self.fallback, self.version = contexts, units, fallback, version
        self._probabilities, self._compute, self._arguments = probabilities, compute, arguments

    def __len__(self) -> int:
        return self.arm_indices.shape[0]

    @property
    def arms(self) -> np.ndarray:
        """Chosen arm names, object array of shape (n,)."""
        return np.asarray(self.arm_names, dtype=object)[self.arm_indices]

    @property
    def probabilities(self) -> np.ndarray:
        """Action distribution of every row, shape (n, K) (computed on first access)."""
        return _computed(self, "_probabilities")

    @property
    def propensities(self) -> np.ndarray:
        """Probability of each chosen arm, shape (n,)."""
        probabilities = self.probabilities
        return probabilities[np.arange(len(self)), self.arm_indices]


@dataclass(frozen=True)
class ArmStats:
    """One arm's summary: what was observed and what the policy would do now.

    ``low`` and ``high`` are the fixed-n 95% interval of the mean reward, valid
    for a sample size fixed in advance; ``cs_low`` and ``cs_high`` the 95%
    confidence sequence, valid at every sample size at once under adaptive
    allocation. ``p_best`` is the posterior probability that this arm's mean
    is the largest, ``p_beats_default`` that it is above the default arm's.
    None where a number is not defined (see :mod:`banditkit.health`).

    Examples
    --------
    >>> import banditkit as bk
    >>> bandit = bk.Bandit(["a", "b"], policy=bk.EpsilonGreedy(0.1), seed=0)
    >>> bandit.update("a", 1.0)
    >>> first = bandit.stats()[0]
    >>> first.arm, first.pulls, first.mean, round(first.probability, 2), first.active
    ('a', 1, 1.0, 0.95, True)
    """

    arm: str
    pulls: int
    mean: float | None
    low: float | None
    high: float | None
    probability: float | None
    active: bool
    disabled_reason: str | None
    #: Policy-specific numerical health, e.g. ``{"condition_number": ...}`` for linear policies.
    diagnostics: dict[str, float] = field(default_factory=dict)
    cs_low: float | None = None
    cs_high: float | None = None
    p_best: float | None = None
    p_beats_default: float | None = None


@dataclass(frozen=True)
class ExperimentStats(Sequence[ArmStats]):
    """What ``Bandit.stats()`` returns: the arms' rows (it is a sequence of them) and the regret so far.

    ``regret_estimate`` is the cumulative regret of the rewards observed,
    sum_k n_k (mu* - mu_k), estimated with the observed means;
    ``regret_low`` and ``regret_high`` bound it at every step with
    probability 0.95 (None without a known reward range). All three are None
    for a contextual policy, whose arms have no single mean.

    Examples
    --------
    >>> import banditkit as bk
    >>> bandit = bk.Bandit(["a", "b"], seed=0)
    >>> bandit.update_many(["a", "a", "b"], [1.0, 1.0, 0.0])
    >>> stats = bandit.stats()
    >>> len(stats), stats[0].arm, stats.regret_estimate, stats.regret_low
    (2, 'a', 1.0, 0.0)
    """

    arms: tuple[ArmStats, ...]
    regret_estimate: float | None
    regret_low: float | None
    regret_high: float | None

    @overload
    def __getitem__(self, index: int) -> ArmStats: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[ArmStats, ...]: ...

    def __getitem__(self, index: int | slice) -> ArmStats | tuple[ArmStats, ...]:
        return self.arms[index]

    def __len__(self) -> int:
        return len(self.arms)

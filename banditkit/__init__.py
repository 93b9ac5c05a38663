"""banditkit: multi-armed bandits from the algorithm to production.

The core (policies, Bandit, guardrails) imports numpy and scipy only; the
simulator, offline evaluation and the service load on first use.
"""

from __future__ import annotations

import importlib

from .bandit import Bandit
from .changes import ShiftDetector, ShiftState
from .decision import ArmStats, Decision, DecisionBatch, ExperimentStats
from .errors import BanditkitError, InvalidParameterError, InvalidTypeError, NoActiveArmError, UnknownArmError
from .guardrails import Guardrails
from .policies import (
    EXP3,
    KLUCB,
    REGISTRY,
    UCB1,
    BayesUCB,
    BootstrappedThompson,
    ContextualEpsilonGreedy,
    DiscountedThompsonSampling,
    EpsilonGreedy,
    GaussianThompsonSampling,
    LinTS,
    LinUCB,
    Policy,
    SlidingWindowUCB,
    Softmax,
    ThompsonSampling,
    make_policy,
)

__version__ = "0.1.0"
"""The version of this banditkit (PEP 440), as its package metadata gives it.

>>> import importlib.metadata
>>> import banditkit
>>> banditkit.__version__ == importlib.metadata.version("banditkit")
True
"""

_SUBPACKAGES = {"sim", "ope", "service", "datasets"}


def __getattr__(name: str):
    """Load ``bk.sim``, ``bk.ope``, ... lazily, so ``import banditkit`` stays fast."""
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'banditkit' has no attribute {name!r}")


__all__ = [
    "Bandit",
    "Decision",
    "DecisionBatch",
    "ArmStats",
    "ExperimentStats",
    "Guardrails",
    "ShiftDetector",
    "ShiftState",
    "Policy",
    "REGISTRY",
    "make_policy",
    "BanditkitError",
    "InvalidParameterError",
    "InvalidTypeError",
    "NoActiveArmError",
    "UnknownArmError",
    "EXP3",
    "KLUCB",
    "UCB1",
    "BayesUCB",
    "DiscountedThompsonSampling",
    "EpsilonGreedy",
    "GaussianThompsonSampling",
    "SlidingWindowUCB",
    "Softmax",
    "ThompsonSampling",
    "LinUCB",
    "LinTS",
    "ContextualEpsilonGreedy",
    "BootstrappedThompson",
    "__version__",
]

"""Bandit policies, one module per family, each reachable by its registry name."""

from __future__ import annotations

from .base import Policy, State
from .registry import REGISTRY, make_policy, register

__all__ = ["Policy", "State", "REGISTRY", "register", "make_policy"]

# Importing the family modules registers their policies.
from .exp3 import EXP3
from .greedy import EpsilonGreedy
from .linear import LinTS, LinUCB
from .model_based import BootstrappedThompson, ContextualEpsilonGreedy
from .nonstationary import DiscountedThompsonSampling, SlidingWindowUCB
from .softmax import Softmax
from .thompson import GaussianThompsonSampling, ThompsonSampling
from .ucb import KLUCB, UCB1

# Newer policies last, so the registry's order (and the benchmark table's) keeps the older ones in place.
# isort: split
from .bayes_ucb import BayesUCB

__all__ += [
    "BayesUCB",
    "EXP3",
    "EpsilonGreedy",
    "DiscountedThompsonSampling",
    "SlidingWindowUCB",
    "Softmax",
    "GaussianThompsonSampling",
    "ThompsonSampling",
    "KLUCB",
    "UCB1",
    "LinUCB",
    "LinTS",
    "ContextualEpsilonGreedy",
    "BootstrappedThompson",
]

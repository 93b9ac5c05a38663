"""Bandit policies, one module per family, each reachable by its registry name."""

from __future__ import annotations

from .base import Policy, State
from .registry import REGISTRY, make_policy, register

__all__ = ["Policy", "State", "REGISTRY", "register", "make_policy"]

# Importing the family modules registers their policies.
from .exp3 import EXP3  # noqa: E402
from .greedy import EpsilonGreedy  # noqa: E402
from .linear import LinTS, LinUCB  # noqa: E402
from .model_based import BootstrappedThompson, ContextualEpsilonGreedy  # noqa: E402
from .nonstationary import DiscountedThompsonSampling, SlidingWindowUCB  # noqa: E402
from .softmax import Softmax  # noqa: E402
from .thompson import GaussianThompsonSampling, ThompsonSampling  # noqa: E402
from .ucb import KLUCB, UCB1  # noqa: E402
# Newer policies last, so the registry's order (and the benchmark table's) keeps the older ones in place.
from .bayes_ucb import BayesUCB  # noqa: E402

__all__ += ["BayesUCB", "EXP3", "EpsilonGreedy", "DiscountedThompsonSampling", "SlidingWindowUCB", "Softmax",
            "GaussianThompsonSampling", "ThompsonSampling", "KLUCB", "UCB1", "LinUCB", "LinTS",
            "ContextualEpsilonGreedy", "BootstrappedThompson"]

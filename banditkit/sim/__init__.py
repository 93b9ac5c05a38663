"""Simulate bandit policies on synthetic problems to choose one: regret curves with intervals.

import banditkit as bk
result = bk.sim.run({"TS": "thompson", "UCB1": "ucb1"}, bk.sim.Bernoulli([0.1, 0.2, 0.25]),
                    horizon=10_000, replications=1_000, seed=0)
result.summary(); result.regret("TS"); result.plot("regret.png")
"""

from __future__ import annotations

from .changing import Adversarial, NonStationary
from .contextual import LinearContextual, LogisticContextual, random_coefficients
from .delayed import Delayed
from .environments import Bernoulli, Environment, Gaussian
from .results import SimulationResult
from .runner import environment_seed, policy_seed, run
from .table import Table

__all__ = [
    "Adversarial",
    "Bernoulli",
    "Delayed",
    "Environment",
    "Gaussian",
    "LinearContextual",
    "LogisticContextual",
    "NonStationary",
    "SimulationResult",
    "Table",
    "environment_seed",
    "policy_seed",
    "random_coefficients",
    "run",
]

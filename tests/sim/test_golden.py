"""Seeded golden values: mean final regret of fixed small runs.

A change here means the draws or the decisions changed (the runner's use of
randomness, an environment, or a policy's sampling), which breaks the promise
that a seed reproduces a published number. Tolerance 1e-9: only float
summation order may move them.
"""

from __future__ import annotations

import pytest

from banditkit.sim import Bernoulli, Delayed, NonStationary, run

ENVIRONMENTS = {
    "bernoulli": Bernoulli([0.3, 0.5, 0.45, 0.2]),
    "batched": Delayed(Bernoulli([0.3, 0.5, 0.45, 0.2]), batch=20),
    "drift": NonStationary([[0.8, 0.2], [0.2, 0.8]], times=[0, 400], drift=True),
}
GOLDEN = {  # (environment, policy): mean cumulative regret after 500 steps, 20 replications, seed 2024
    ("bernoulli", "thompson"): 18.435,
    ("bernoulli", "ucb1"): 35.55,
    ("bernoulli", "exp3"): 40.535,
    ("batched", "thompson"): 16.855,
    ("batched", "ucb1"): 39.065,
    ("batched", "exp3"): 41.79,
    ("drift", "thompson"): 39.17145,
    ("drift", "ucb1"): 19.8804,
    ("drift", "exp3"): 74.6289,
}


@pytest.mark.parametrize("environment", sorted(ENVIRONMENTS))
def test_seeded_runs_reproduce_their_golden_regret(environment):
    result = run(
        {name: name for name in ("thompson", "ucb1", "exp3")},
        ENVIRONMENTS[environment],
        horizon=500,
        replications=20,
        seed=2024,
    )
    for policy in result.policies:
        assert result.regret(policy)[-1] == pytest.approx(GOLDEN[environment, policy], rel=1e-9, abs=1e-9)

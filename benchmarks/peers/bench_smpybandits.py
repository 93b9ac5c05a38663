"""SMPyBandits on the simulator benchmark's Bernoulli problem: decisions/s and regret, same draws.

SMPyBandits steps one replication at a time in Python (``choice`` / ``getReward``).
Each replication here uses banditkit's environment stream for that replication
(one uniform per step: reward = uniform < mean), so the regret can be compared
with ``bk.sim.run`` on the same seed. Run it in the peer's own venv, with the
repository on PYTHONPATH for the stream definition only:

    PYTHONPATH=. ~/.venvs/banditkit-peers-sim/bin/python benchmarks/peers/bench_smpybandits.py --replications 20
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from SMPyBandits.Policies import UCB, Thompson

from banditkit.sim.runner import environment_seed

MEANS = np.array([0.5] + [0.4] * 9)
POLICIES = {"thompson": Thompson, "ucb1": UCB}


def run_policy(make, horizon: int, replications: int, seed: int) -> tuple[float, float]:
    """Decisions per second and mean final pseudo-regret over ``replications`` runs."""
    gaps = MEANS.max() - MEANS
    regrets, elapsed = [], 0.0
    for replication in range(replications):
        uniforms = np.random.default_rng(environment_seed(seed, replication)).random(horizon)
        np.random.seed(replication)  # noqa: NPY002 - SMPyBandits draws from numpy's global generator
        policy = make(MEANS.size)
        policy.startGame()
        regret = 0.0
        started = time.perf_counter()
        for step in range(horizon):
            arm = policy.choice()
            policy.getReward(arm, float(uniforms[step] < MEANS[arm]))
            regret += gaps[arm]
        elapsed += time.perf_counter() - started
        regrets.append(regret)
    return horizon * replications / elapsed, float(np.mean(regrets))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon", type=int, default=10_000)
    parser.add_argument("--replications", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = {}
    for name, make in POLICIES.items():
        rate, regret = run_policy(make, args.horizon, args.replications, args.seed)
        rows[name] = {"decisions_per_s": rate, "regret_mean": regret}
        print(f"SMPyBandits {name:<9} {rate:>12,.0f} decisions/s   regret at T={args.horizon}: {regret:,.1f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()

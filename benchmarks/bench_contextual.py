"""Contextual policy benchmarks: LinUCB and LinTS on K=10 arms, d=20 features, linear rewards.

Run: python benchmarks/bench_contextual.py [--rounds 20000] [--repeats 3]

Workloads (each figure is the median of ``repeats`` runs in this process):
* online: ``select(context)`` then ``update(decision, reward)`` through the Bandit,
  and the same loop on the policy kernels alone (``policy.sample`` / ``policy.update``);
* select_many on 100,000 contexts, and on 10,000 with every row's propensity
  (for LinTS each propensity is a numerical integration);
* update_many fitting 1,000,000 logged rows into a fresh bandit.
Rewards are ``x^T theta_k + N(0, 0.1^2)`` with ``x ~ N(0, I)``, ``theta_k ~ N(0, I/d)``;
the online rows also report the mean expected reward over the last 20% of rounds
next to the oracle's (the best arm for every context). Rates are given in wall
time and in this process's CPU time: on a shared machine the second is our own
cost, the first also counts waiting for a core.

BLAS runs single-threaded (OPENBLAS_NUM_THREADS=1 unless set): on two shared
cores a multi-threaded OpenBLAS spin-waits and was 10-50x slower on these
small matrix products.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import statistics
import time

import numpy as np
from rich.console import Console
from rich.table import Table

import banditkit as bk
from banditkit.policies import make_policy

N_ARMS, N_FEATURES, NOISE = 10, 20, 0.1
POLICIES = {"linucb": {"alpha": 1.0}, "lints": {"v": 0.3}}
TARGETS = {"online (Bandit)": 20_000, "select_many": 500_000, "update_many": 1_000_000}


def problem(rounds: int, seed: int = 0):
    """Arm weights (K, d), contexts (rounds, d) and reward noise (rounds,) from one seed."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(N_ARMS, N_FEATURES)) / np.sqrt(N_FEATURES)
    return theta, rng.normal(size=(rounds, N_FEATURES)), NOISE * rng.normal(size=rounds)


def new_bandit(name: str) -> bk.Bandit:
    return bk.Bandit(
        [f"arm{i}" for i in range(N_ARMS)],
        policy={"name": name, "params": POLICIES[name]},
        seed=0,
        n_features=N_FEATURES,
    )


class Clock:
    """Wall-clock and CPU seconds of a block: on a shared machine the CPU figure shows our own cost."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def rates(self, count: int) -> tuple[float, float]:
        return count / self.wall, count / self.cpu


def online_bandit(name: str, rounds: int) -> tuple[float, float, float, float]:
    """Decisions/s (wall, CPU) of select(context) + update(decision, reward), mean reward reached, the oracle's."""
    theta, contexts, noise = problem(rounds)
    expected = contexts @ theta.T
    bandit = new_bandit(name)
    bandit.update(bandit.select(context=contexts[0]), 0.0)  # compile kernels outside the timing
    rows = list(contexts)
    chosen = np.empty(rounds, dtype=np.intp)
    with Clock() as clock:
        for t, x in enumerate(rows):
            decision = bandit.select(context=x)
            arm = decision.arm_index
            bandit.update(decision, float(expected[t, arm] + noise[t]))
            chosen[t] = arm
    tail = np.arange(int(0.8 * rounds), rounds)
    return (*clock.rates(rounds), float(expected[tail, chosen[tail]].mean()), float(expected[tail].max(axis=1).mean()))


def online_kernels(name: str, rounds: int) -> tuple[float, float]:
    """Decisions/s of policy.sample + policy.update on a one-row state: the policy's own cost."""
    theta, contexts, noise = problem(rounds)
    policy = make_policy({"name": name, "params": POLICIES[name]})
    state = policy.init_state(N_ARMS, 1, N_FEATURES)
    rng, mask = np.random.default_rng(0), np.ones((1, N_ARMS), bool)
    rows = contexts[:, None, :]
    state = policy.update(state, policy.sample(state, rng, mask, rows[0]), [0.0], context=rows[0])
    with Clock() as clock:
        for t in range(rounds):
            x = rows[t]
            arms = policy.sample(state, rng, mask, x)
            state = policy.update(state, arms, np.array([x[0] @ theta[arms[0]] + noise[t]]), context=x)
    return clock.rates(rounds)


def trained_bandit(name: str, rows: int = 20_000) -> bk.Bandit:
    theta, contexts, noise = problem(rows, seed=1)
    arms = np.random.default_rng(2).integers(0, N_ARMS, rows)
    bandit = new_bandit(name)
    bandit.update_many(arms, np.einsum("nd,nd->n", contexts, theta[arms]) + noise, contexts=contexts)
    return bandit


def select_many_rate(name: str, n: int, with_propensities: bool) -> tuple[float, float]:
    bandit = trained_bandit(name)
    contexts = problem(n, seed=3)[1]
    _ = bandit.select_many(contexts=contexts[:100]).propensities  # warm-up: compile and cache
    with Clock() as clock:
        batch = bandit.select_many(contexts=contexts)
        if with_propensities:
            _ = batch.propensities  # computed lazily: reading it is the cost measured
    return clock.rates(n)


def update_many_rate(name: str, n: int) -> tuple[float, float]:
    theta, contexts, noise = problem(n, seed=4)
    arms = np.random.default_rng(5).integers(0, N_ARMS, n)
    rewards = np.einsum("nd,nd->n", contexts, theta[arms]) + noise
    bandit = new_bandit(name)
    bandit.update_many(arms[:100], rewards[:100], contexts=contexts[:100])  # load scipy.linalg outside the timing
    with Clock() as clock:
        bandit.update_many(arms, rewards, contexts=contexts)
    return clock.rates(n)


def median(function, repeats: int, *args):
    results = [function(*args) for _ in range(repeats)]
    if isinstance(results[0], tuple):
        return tuple(statistics.median(column) for column in zip(*results, strict=True))
    return statistics.median(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    table = Table(title=f"Contextual policies, K={N_ARMS}, d={N_FEATURES} (median of {args.repeats})")
    for column in ("policy", "workload", "rate (wall)", "rate (CPU time)", "target", "mean reward (oracle)"):
        table.add_column(column, justify="left" if column in ("policy", "workload") else "right")
    for name in POLICIES:
        wall, cpu, reward, best = median(online_bandit, args.repeats, name, args.rounds)
        table.add_row(
            name,
            "online select+update (Bandit)",
            f"{wall:,.0f}/s",
            f"{cpu:,.0f}/s",
            f"{TARGETS['online (Bandit)']:,}",
            f"{reward:.3f} ({best:.3f})",
        )
        rows = [
            ("online sample+update (policy kernels)", online_kernels, (args.rounds,), ""),
            ("select_many, 100k contexts", select_many_rate, (100_000, False), f"{TARGETS['select_many']:,}"),
            ("select_many + every propensity, 10k", select_many_rate, (10_000, True), ""),
            ("update_many, 1M logged rows", update_many_rate, (1_000_000,), f"{TARGETS['update_many']:,}"),
        ]
        for label, function, extra, target in rows:
            wall, cpu = median(function, args.repeats, name, *extra)
            table.add_row(name, label, f"{wall:,.0f}/s", f"{cpu:,.0f}/s", target, "")
    Console(width=150).print(table)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (at the start: {load:.1f}) on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()

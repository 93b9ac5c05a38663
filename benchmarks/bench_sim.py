"""Simulator throughput and memory: decisions per second of ``bk.sim.run`` and its peak RSS.

Each case runs in a fresh process (so peak memory is the case's own) after a
warm-up that compiles the optional numba kernels. Prints a markdown table and
the machine's load average, since other work on the machine moves the figures.

    PYTHONPATH=. python benchmarks/bench_sim.py            # all cases
    PYTHONPATH=. python benchmarks/bench_sim.py --quick    # horizons / 10
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

CASES = [
    # label, policy, arms, features, replications, horizon
    ("Thompson sampling, K=10", "thompson", 10, None, 1_000, 10_000),
    ("UCB1, K=10", "ucb1", 10, None, 1_000, 10_000),
    ("LinUCB, K=10, d=10", "linucb", 10, 10, 100, 5_000),
    ("memory: UCB1, K=10, T=10^4", "ucb1", 10, None, 1_000, 10_000),
    ("memory: UCB1, K=10, T=10^5", "ucb1", 10, None, 1_000, 100_000),
]


def measure(policy: str, arms: int, features: int | None, replications: int, horizon: int) -> dict:
    """Run one case in this process; return its rate, time, peak memory and final regret."""
    import banditkit as bk
    from banditkit.policies import _jit

    if policy not in bk.REGISTRY:
        return {"skipped": f"policy {policy!r} is not in this build's registry"}
    _jit.load()  # the steady state: a long run loads the compiled kernels once they pay for themselves
    if features is None:
        env = bk.sim.Bernoulli([0.5] + [0.4] * (arms - 1))
    else:
        env = bk.sim.LinearContextual(bk.sim.random_coefficients(arms, features, seed=0))
    bk.sim.run({"p": policy}, env, horizon=50, replications=4, seed=1)  # warm-up
    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    result = bk.sim.run({"p": policy}, env, horizon=horizon, replications=replications, seed=0)
    seconds = time.perf_counter() - started
    return {
        "decisions_per_s": horizon * replications / seconds,
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "baseline_rss_mb": baseline_mb,
        "regret": float(result.regret_mean[0, -1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="horizons divided by 10")
    parser.add_argument("--case", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case is not None:
        _, policy, arms, features, replications, horizon = CASES[args.case]
        print(json.dumps(measure(policy, arms, features, replications, horizon // (10 if args.quick else 1))))
        return
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| case | R | T | decisions/s | seconds | peak RSS (MB) | regret at T |")
    print("|---|---|---|---|---|---|---|")
    for index, (label, _, _, _, replications, horizon) in enumerate(CASES):
        command = [sys.executable, __file__, "--case", str(index)] + (["--quick"] if args.quick else [])
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        row = json.loads(output.strip().splitlines()[-1])
        horizon //= 10 if args.quick else 1
        if "skipped" in row:
            print(f"| {label} | {replications:,} | {horizon:,} | not measured: {row['skipped']} | | | |")
            continue
        print(
            f"| {label} | {replications:,} | {horizon:,} | {row['decisions_per_s']:,.0f} | {row['seconds']:.1f} "
            f"| {row['peak_rss_mb']:.0f} | {row['regret']:,.1f} |",
            flush=True,
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

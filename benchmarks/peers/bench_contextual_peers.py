"""Online LinUCB side by side: banditkit, MABWiser's LinUCB and Vowpal Wabbit's --cb_explore_adf.

Run (peers live in their own environment, see requirements.txt beside this file):
    python benchmarks/peers/bench_contextual_peers.py --peers-python ~/.venvs/banditkit-peers/bin/python

Every library plays the same stream (K=10 arms, d=20 features, rewards
x^T theta_k + N(0, 0.1^2), seed 0: common random numbers), one decision then
one update at a time. Each library runs in ``--processes`` fresh processes
(PYTHONHASHSEED=0, 1, 2, interleaved); the table gives medians of decisions/s
in wall time and in CPU time (the process's own cost on a shared machine), the
ratios to banditkit and the mean expected reward over the last 20% of rounds.
With ``--library NAME`` the script runs one library once and prints JSON.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

N_ARMS, N_FEATURES, NOISE = 10, 20, 0.1
ROOT = Path(__file__).resolve().parents[2]


def problem(rounds: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(N_ARMS, N_FEATURES)) / np.sqrt(N_FEATURES)
    return theta, rng.normal(size=(rounds, N_FEATURES)), NOISE * rng.normal(size=rounds)


def run_banditkit(contexts, rewards_of):
    import banditkit as bk

    bandit = bk.Bandit(
        [f"arm{i}" for i in range(N_ARMS)],
        policy={"name": "linucb", "params": {"alpha": 1.0}},
        seed=0,
        n_features=N_FEATURES,
    )
    bandit.update(bandit.select(context=contexts[0]), 0.0)  # compile kernels outside the timing
    chosen = []
    start, cpu = time.perf_counter(), time.process_time()
    for t, x in enumerate(contexts):
        decision = bandit.select(context=x)
        bandit.update(decision, rewards_of(t, decision.arm_index))
        chosen.append(decision.arm_index)
    return time.perf_counter() - start, time.process_time() - cpu, chosen


def run_mabwiser(contexts, rewards_of):
    from mabwiser.mab import MAB, LearningPolicy

    mab = MAB(arms=list(range(N_ARMS)), learning_policy=LearningPolicy.LinUCB(alpha=1.0, l2_lambda=1.0), seed=0)
    # MABWiser cannot predict before a first fit: seed every arm with one row of the stream's first context.
    mab.fit(list(range(N_ARMS)), [rewards_of(0, arm) for arm in range(N_ARMS)], np.repeat(contexts[:1], N_ARMS, 0))
    chosen = []
    start, cpu = time.perf_counter(), time.process_time()
    for t, x in enumerate(contexts):
        arm = mab.predict(x[None])
        mab.partial_fit([arm], [rewards_of(t, arm)], x[None])
        chosen.append(int(arm))
    return time.perf_counter() - start, time.process_time() - cpu, chosen


def run_vw(contexts, rewards_of):
    from vowpalwabbit import Workspace

    vw = Workspace("--cb_explore_adf --epsilon 0.05 -q sa --quiet --random_seed 0")
    rng = np.random.default_rng(0)
    actions = [f"|a a{arm}" for arm in range(N_ARMS)]
    chosen = []
    start, cpu = time.perf_counter(), time.process_time()
    for t, x in enumerate(contexts):
        shared = "shared |s " + " ".join(f"{j}:{value:.6f}" for j, value in enumerate(x))
        pmf = np.asarray(vw.predict([shared, *actions]), dtype=float)
        arm = int(rng.choice(N_ARMS, p=pmf / pmf.sum()))
        labelled = list(actions)
        labelled[arm] = f"0:{-rewards_of(t, arm):.6f}:{pmf[arm]:.6f} |a a{arm}"  # VW minimises cost
        vw.learn([shared, *labelled])
        chosen.append(arm)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    vw.finish()
    return seconds, cpu, chosen


RUNNERS = {"banditkit": run_banditkit, "mabwiser": run_mabwiser, "vw": run_vw}
LABELS = {"banditkit": "banditkit LinUCB", "mabwiser": "MABWiser LinUCB", "vw": "Vowpal Wabbit cb_explore_adf"}


def run_one(library: str, rounds: int) -> dict:
    theta, contexts, noise = problem(rounds)
    expected = contexts @ theta.T
    seconds, cpu, chosen = RUNNERS[library](contexts, lambda t, arm: float(expected[t, arm] + noise[t]))
    tail = np.arange(int(0.8 * rounds), rounds)
    return {
        "library": library,
        "decisions_per_s": rounds / seconds,
        "cpu_decisions_per_s": rounds / cpu,
        "mean_reward": float(expected[tail, np.asarray(chosen)[tail]].mean()),
        "oracle": float(expected[tail].max(axis=1).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", choices=sorted(RUNNERS))
    parser.add_argument("--rounds", type=int, default=5_000)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--peers-python", default=os.path.expanduser("~/.venvs/banditkit-peers/bin/python"))
    args = parser.parse_args()
    if args.library:
        print(json.dumps(run_one(args.library, args.rounds)))
        return
    results: dict[str, list[dict]] = {name: [] for name in RUNNERS}
    for seed in range(args.processes):  # interleaved: each library once per hash seed
        for library in RUNNERS:
            python = sys.executable if library == "banditkit" else args.peers_python
            env = {**os.environ, "PYTHONHASHSEED": str(seed), "PYTHONPATH": str(ROOT)}
            done = subprocess.run(
                [python, __file__, "--library", library, "--rounds", str(args.rounds)],
                capture_output=True,
                text=True,
                env=env,
            )
            if done.returncode != 0:
                print(f"{library}: failed ({done.stderr.strip().splitlines()[-1:]})", file=sys.stderr)
                continue
            results[library].append(json.loads(done.stdout))
    ours = {
        key: statistics.median(r[key] for r in results["banditkit"])
        for key in ("decisions_per_s", "cpu_decisions_per_s")
    }
    print("| library | decisions/s (wall) | ratio | decisions/s (CPU time) | ratio | mean reward, last 20% (oracle) |")
    print("|---|---:|---:|---:|---:|---:|")
    for library, runs in results.items():
        if not runs:
            print(f"| {LABELS[library]} | not installed / failed | | | | |")
            continue
        wall, cpu = (statistics.median(r[key] for r in runs) for key in ("decisions_per_s", "cpu_decisions_per_s"))
        reward = statistics.median(r["mean_reward"] for r in runs)
        print(
            f"| {LABELS[library]} | {wall:,.0f} | {wall / ours['decisions_per_s']:.2f} | {cpu:,.0f} | "
            f"{cpu / ours['cpu_decisions_per_s']:.2f} | {reward:.3f} ({runs[0]['oracle']:.3f}) |"
        )


if __name__ == "__main__":
    main()

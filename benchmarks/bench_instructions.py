"""Instructions per online select()+update() round, counted by callgrind: a figure that noise does not move.

Wall-clock rates on a shared 2-core machine differ by 10-20% from run to run, too much to see a 3% change.
callgrind counts the instructions a process runs; the count for N rounds, less the count for a few rounds,
is the cost of the rounds alone (start-up and imports cancel). The compiled kernels are loaded first, the
garbage collector is off during the rounds and BLAS has one thread, so the count does not vary between runs.
Needs valgrind (``apt-get install valgrind``); about a minute per policy.

    python benchmarks/bench_instructions.py [--policies softmax,thompson,ucb1] [--rounds 20000]

To compare two checkouts, run it in each with PYTHONPATH pointing at that checkout.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

LOOP = """
import gc, sys
import numpy as np
from banditkit import Bandit
from banditkit.policies import _jit
getattr(_jit, "load", _jit.kernels)()  # older checkouts load the kernels on first ask
policy, rounds = sys.argv[1], int(sys.argv[2])
bandit = Bandit([f"a{i}" for i in range(10)], policy=policy, seed=0)
uniforms = np.random.default_rng(1).random(rounds).tolist()
means = np.linspace(0.05, 0.5, 10).tolist()
bandit.update(bandit.select(), 0.0)
gc.collect()
gc.disable()
for u in uniforms:
    decision = bandit.select()
    bandit.update(decision, 1.0 if u < means[decision.arm_index] else 0.0)
"""


def instructions(policy: str, rounds: int, folder: Path) -> int:
    """Instructions callgrind counts for a process that runs ``rounds`` rounds of ``policy``."""
    script = folder / "loop.py"
    out = folder / f"callgrind.{policy}.{rounds}"
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, str(script)]
    result = subprocess.run(
        [*command, policy, str(rounds)],
        capture_output=True,
        text=True,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        check=True,
    )
    match = re.search(r"Collected : (\d+)", result.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count from callgrind: {result.stderr[-500:]}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", default="softmax,thompson,ucb1")
    parser.add_argument("--rounds", type=int, default=20_000, help="rounds counted (beyond a 5,000-round base)")
    args = parser.parse_args()
    base = 5_000
    print(f"{'policy':<22}{'instructions/round':>20}")
    with tempfile.TemporaryDirectory() as folder, ThreadPoolExecutor(2) as pool:
        (Path(folder) / "loop.py").write_text(LOOP)
        for policy in args.policies.split(","):
            runs = [pool.submit(instructions, policy, n, Path(folder)) for n in (base, base + args.rounds)]
            short, long = (run.result() for run in runs)
            print(f"{policy:<22}{(long - short) / args.rounds:>20,.0f}")


if __name__ == "__main__":
    main()

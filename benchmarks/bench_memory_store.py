"""The memory store with a long log: garbage-collection pauses, the default-reward sweep, counts.

    python benchmarks/bench_memory_store.py [--decisions 460000]

Logs ``--decisions`` decisions (K=10, one distribution shared by all, as the
service logs them) and rewards a third of them, then times, each the best of
three: a full garbage collection (start-up objects frozen out of it, as the
service does), a sweep of the newest 500 decisions (``unrewarded``), and
``counts``. A full collection pauses the whole process, so it bounds the
tail latency of a service on this store.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from banditkit.service.stores import DecisionRecord, ExperimentRecord, MemoryStore, RewardRecord  # noqa: E402
from banditkit.service.stores.base import Probabilities  # noqa: E402


def best_of_three(action) -> float:
    """The shortest of three runs of ``action``, in milliseconds."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return 1e3 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=460_000)
    args = parser.parse_args()
    gc.collect()
    gc.freeze()
    store = MemoryStore()
    store.create_experiment(ExperimentRecord("bench", {}, {}, {"counts": np.zeros((1, 10))}, 0, 0.0), {}).result()
    probabilities = Probabilities({f"arm{i}": 0.1 for i in range(10)})
    started = time.perf_counter()
    for begin in range(0, args.decisions, 1000):
        rows = [DecisionRecord(f"{i:032x}", float(i), "bench", None, None, "arm1", 0.1, probabilities, 1, False)
                for i in range(begin, min(begin + 1000, args.decisions))]
        store.append_decisions(rows).result()
        rewards = [RewardRecord(row.decision_id, "bench", "arm1", 1.0, row.time + 1) for row in rows[::3]]
        store.record_rewards("bench", rewards, lambda new: (None, [True] * len(new)), lambda *_: None).result()
    filled = time.perf_counter() - started
    decisions, rewards = store.counts("bench")
    newest = float(args.decisions)
    rows = [
        ("full garbage collection", best_of_three(gc.collect)),
        ("sweep of the newest 500 decisions", best_of_three(lambda: store.unrewarded("bench", newest - 500,
                                                                                      newest, 2000))),
        ("counts", best_of_three(lambda: store.counts("bench"))),
    ]
    print(f"memory store: {decisions:,} decisions and {rewards:,} rewards logged in {filled:.1f} s")
    print(f"{'operation':<36}{'ms':>10}")
    for label, milliseconds in rows:
        print(f"{label:<36}{milliseconds:>10.2f}")


if __name__ == "__main__":
    main()

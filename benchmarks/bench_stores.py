"""The stores with a long log: collection pauses, the default-reward sweep, counts, reopening.

    python benchmarks/bench_stores.py [--decisions 460000] [--store memory|sqlite]

Logs ``--decisions`` decisions (K=10, one distribution shared by all, as the
service logs them) and rewards a third of them, then times, each the best of
three: a full garbage collection (start-up objects frozen out of it, as the
service does; a collection pauses the whole process, so it bounds the tail
latency of a service), a sweep of the newest 500 decisions (``unrewarded``),
``counts`` (what the stats endpoint reads) and, for SQLite, opening the file
again; then, once each, the log export as CSV and as Parquet, and the
process's peak memory.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from banditkit.service import export
from banditkit.service.stores import (
    DecisionRecord,
    ExperimentRecord,
    MemoryStore,
    RewardRecord,
    SQLiteStore,
)
from banditkit.service.stores.base import Probabilities, RewardWork


def best_of_three(action) -> float:
    """The shortest of three runs of ``action``, in milliseconds."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return 1e3 * min(times)


def once(action) -> float:
    """One run of ``action``, in milliseconds."""
    started = time.perf_counter()
    action()
    return 1e3 * (time.perf_counter() - started)


def fill(store, decisions: int) -> float:
    """Log ``decisions`` decisions in batches of 1,000 and reward every third; seconds taken."""
    store.create_experiment(ExperimentRecord("bench", {}, {}, {"counts": np.zeros((1, 10))}, 0, 0.0), {}).result()
    probabilities = Probabilities({f"arm{i}": 0.1 for i in range(10)})
    started = time.perf_counter()
    for begin in range(0, decisions, 1000):
        rows = [
            DecisionRecord(f"{i:032x}", float(i), "bench", None, None, "arm1", 0.1, probabilities, 1, False)
            for i in range(begin, min(begin + 1000, decisions))
        ]
        store.append_decisions(rows).result()
        rewards = [RewardRecord(row.decision_id, "bench", "arm1", 1.0, row.time + 1) for row in rows[::3]]
        store.commit_rewards(RewardWork("bench", rewards)).result()  # recorded, not learned
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=460_000)
    parser.add_argument("--store", choices=["memory", "sqlite"], default="memory")
    args = parser.parse_args()
    gc.collect()
    gc.freeze()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        store = MemoryStore() if args.store == "memory" else SQLiteStore(path, synchronous="NORMAL")
        try:
            filled = fill(store, args.decisions)
            decisions, rewards = store.counts("bench")
            newest = float(args.decisions)
            rows = [
                ("full garbage collection", best_of_three(gc.collect)),
                (
                    "sweep of the newest 500 decisions",
                    best_of_three(lambda: store.unrewarded("bench", newest - 500, newest, 2000)),
                ),
                ("counts", best_of_three(lambda: store.counts("bench"))),
            ]
            rows += [
                ("export as CSV", once(lambda: sum(1 for _ in export.csv_chunks(store, "bench")))),
                ("export as Parquet", once(lambda: export.parquet_bytes(store, "bench"))),
            ]
        finally:
            store.close()
        if args.store == "sqlite":
            rows.append(("opening the file again", best_of_three(lambda: SQLiteStore(path).close())))
    print(f"{args.store} store: {decisions:,} decisions and {rewards:,} rewards logged in {filled:.1f} s")
    print(f"{'operation':<36}{'ms':>10}")
    for label, milliseconds in rows:
        print(f"{label:<36}{milliseconds:>10.2f}")
    print(f"peak memory of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()

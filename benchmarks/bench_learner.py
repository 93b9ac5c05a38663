"""The Redis learner's throughput: rewards applied per second by one learner process.

    python benchmarks/bench_learner.py [--rewards 200000] [--batches 10000,2000] [--repeats 3]
                                       [--url redis://127.0.0.1:6379/0]

Fills a reward stream as serving workers do (one Thompson-sampling experiment,
K=10: decisions logged with ``LOG_DECISIONS``, every one rewarded with
``CLAIM_REWARDS``), then times one :class:`~banditkit.service.learner.Learner`
draining it with each batch size: read under the lease, decode, delta,
``APPLY_BATCH`` (state + version + acknowledgement). Between runs the model
and the consumer group are reset, so every run learns the same rewards. The
table splits the time between the Redis calls (server work plus the round
trip and reply parsing in redis-py) and the learner's own Python. Keys live
under a fresh prefix, deleted at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from banditkit.service.experiment import build_bandit
from banditkit.service.learner import Learner
from banditkit.service.model import split
from banditkit.service.schemas import ExperimentCreate
from banditkit.service.stores.base import DecisionRecord, Probabilities
from banditkit.service.stores.redis_keys import (
    APPLY_BATCH,
    CLAIM_REWARDS,
    CREATE_EXPERIMENT,
    LEARNERS,
    LOG_DECISIONS,
    READ_REWARDS,
    Keys,
    claim_args,
    claim_keys,
    connect,
    experiments_key,
    log_args,
    log_keys,
    pack_state,
    read_meta,
)

ARMS = [f"arm{i}" for i in range(10)]


class Timed:
    """A Redis client that adds up the seconds spent in each kind of call."""

    def __init__(self, client, names: dict[str, str]) -> None:
        self._client = client
        self._names = names  # script sha -> label
        self.seconds: dict[str, float] = defaultdict(float)

    def __getattr__(self, name):
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args, **kwargs):
            started = time.perf_counter()
            try:
                return attribute(*args, **kwargs)
            finally:
                label = self._names.get(args[0], "other") if name == "evalsha" and args else name
                self.seconds[label] += time.perf_counter() - started

        return call


def fill(client, prefix: str, rewards: int) -> tuple[dict[bytes, bytes], float]:
    """Create the experiment, log and reward ``rewards`` decisions; its starting meta and the seconds taken."""
    started = time.perf_counter()
    spec = ExperimentCreate(
        name="bench", arms=ARMS, policy={"name": "thompson", "params": {}}, attribution_window_s=3600.0
    )
    model, arrays = split(build_bandit(spec))
    keys = Keys.of(prefix, "bench")
    client.sadd(experiments_key(prefix), "bench")
    client.eval(
        CREATE_EXPERIMENT,
        3,
        keys.meta,
        keys.events,
        keys.reward_stream,
        json.dumps(spec.model_dump(mode="json")),
        repr(time.time()),
        json.dumps(model),
        pack_state(arrays),
        0,
        json.dumps({"kind": "create"}),
    )
    log, reward = client.register_script(LOG_DECISIONS), client.register_script(CLAIM_REWARDS)
    probabilities = Probabilities({arm: 0.1 for arm in ARMS})
    rng = np.random.default_rng(0)
    now = time.time()
    for first in range(0, rewards, 1000):
        count = min(1000, rewards - first)
        arms = rng.integers(0, 10, count)
        values = (rng.random(count) < 0.1 + 0.05 * arms).astype(float)
        records = [
            DecisionRecord(
                f"{int(now * 1000):012x}{(first + i) & 0xFFFFF:05x}{uuid.uuid4().int >> 68:015x}",
                now,
                "bench",
                None,
                None,
                ARMS[arm],
                0.1,
                probabilities,
                0,
                False,
            )
            for i, arm in enumerate(arms)
        ]
        pipe = client.pipeline(transaction=False)
        log(keys=log_keys(keys), args=log_args(records), client=pipe)
        claims = [(r.decision_id, v, "client") for r, v in zip(records, values, strict=True)]
        reward(keys=claim_keys(keys), args=claim_args(now, 3600.0, "bench", claims), client=pipe)
        pipe.execute()
    return read_meta(client, keys.meta), time.perf_counter() - started


def reset(client, prefix: str, meta: dict[bytes, bytes]) -> None:
    """The model as created and every reward undelivered again, so the next run learns the same stream."""
    keys = Keys.of(prefix, "bench")
    client.hset(keys.meta, mapping=meta)
    client.delete(keys.lease)
    client.xgroup_destroy(keys.reward_stream, LEARNERS)
    client.xgroup_create(keys.reward_stream, LEARNERS, id="0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rewards", type=int, default=200_000)
    parser.add_argument("--batches", default="10000,2000", help="comma-separated learner batch sizes")
    parser.add_argument("--repeats", type=int, default=3, help="runs per batch size; the median is shown")
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    options = parser.parse_args()
    client, _ = connect(options.url)
    prefix = f"bench-learner-{uuid.uuid4().hex[:8]}"
    names = {
        hashlib.sha1(text.encode()).hexdigest(): label
        for text, label in ((READ_REWARDS, "read"), (APPLY_BATCH, "apply"))
    }
    try:
        meta, fill_s = fill(client, prefix, options.rewards)
        print(f"filled {options.rewards:,} rewards (Thompson, K=10) in {fill_s:.1f} s")
        rows = []
        for batch in (int(b) for b in options.batches.split(",")):
            runs = []
            for repeat in range(options.repeats):
                reset(client, prefix, meta)
                timed = Timed(client, names)
                learner = Learner(timed, prefix, f"bench-{batch}-{repeat}", batch_size=batch)
                started, cpu = time.perf_counter(), time.process_time()
                report = learner.step()
                seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
                learner.close()
                assert report.applied == options.rewards, report
                runs.append((report.applied / seconds, seconds, timed.seconds["read"], timed.seconds["apply"], cpu))
            runs.sort()
            rate, seconds, read_s, apply_s, cpu = runs[len(runs) // 2]
            rows.append(
                (
                    f"{batch:,}",
                    f"{rate:,.0f}",
                    f"{runs[0][0]:,.0f}-{runs[-1][0]:,.0f}",
                    f"{seconds:.2f}",
                    f"{read_s:.2f}",
                    f"{apply_s:.2f}",
                    f"{1e6 * cpu / options.rewards:.1f}",
                )
            )
        header = ("batch", "rewards/s", "range", "total s", "in read s", "in apply s", "learner CPU us/reward")
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
        print(f"One learner, {options.rewards:,} rewards, median of {options.repeats} (target >= 50,000 rewards/s)")
        print(" | ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
        for row in rows:
            print(" | ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))
        print(
            "in read / in apply: wall time inside those Redis calls (server work, round trip, reply parsing); "
            "learner CPU: this process's CPU time (decode, delta, encode, redis-py) per reward"
        )
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for first in range(0, len(keys), 500):
            client.delete(*keys[first : first + 500])


if __name__ == "__main__":
    main()

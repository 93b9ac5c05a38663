"""Concurrency: 8 client threads x 2,000 rewards against one server process; counts must match exactly
(on a SQLite file, and on the real Redis, where a learner pass then learns what the server recorded)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest

from banditkit.service.learner import Learner
from banditkit.service.stores.redis_keys import Keys, parse_url

THREADS, PER_THREAD, BATCH = 8, 2000, 250


def value_of(index: int) -> float:
    return 1.0 if index % 3 == 0 else 0.0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_concurrent_rewards_are_counted_exactly_once(server_process, tmp_path, create, kind, request):
    store = (
        f"sqlite:///{tmp_path / 'concurrent.db'}" if kind == "sqlite" else request.getfixturevalue("shared_store")[0]
    )
    server = server_process(store, spool_dir=tmp_path / "spool")
    with httpx.Client(base_url=server.base_url, timeout=60.0) as client:
        create(client, arms=[f"arm{k}" for k in range(10)])
        decisions = []
        for _ in range(THREADS * PER_THREAD // 1000):
            response = client.post("/v1/experiments/hero/decisions/batch", json={"requests": [{}] * 1000})
            decisions += response.json()["decisions"]
    acknowledged: list[list[tuple[str, str, float]]] = [[] for _ in range(THREADS)]
    failures: list[BaseException] = []

    def worker(k: int) -> None:
        mine = range(k * PER_THREAD, (k + 1) * PER_THREAD)
        # The neighbour's first batch too, at the same time as the neighbour: racing retries.
        neighbour = range(((k + 1) % THREADS) * PER_THREAD, ((k + 1) % THREADS) * PER_THREAD + BATCH)
        batches = [mine[i : i + BATCH] for i in range(0, PER_THREAD, BATCH)]
        batches.insert(1, neighbour)
        try:
            with httpx.Client(base_url=server.base_url, timeout=60.0) as client:
                for batch in batches:
                    body = {
                        "rewards": [{"decision_id": decisions[i]["decision_id"], "value": value_of(i)} for i in batch]
                    }
                    results = client.post("/v1/experiments/hero/rewards/batch", json=body).json()["results"]
                    for i, result in zip(batch, results, strict=True):
                        assert result["status"] == 200, result
                        assert result["value"] == value_of(i) and result["arm"] == decisions[i]["arm"]
                        acknowledged[k].append((decisions[i]["decision_id"], result["arm"], result["value"]))
        except BaseException as error:  # reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[0]
    unique = {decision_id: (arm, value) for rows in acknowledged for decision_id, arm, value in rows}
    assert len(unique) == THREADS * PER_THREAD
    if kind == "redis":
        learner = Learner.from_url(store)
        try:
            assert learner.step().applied == len(unique)
            version = int(learner.client.hget(Keys.of(parse_url(store).prefix, "hero").meta, "version"))
        finally:
            learner.close()
    with httpx.Client(base_url=server.base_url, timeout=60.0) as client:
        deadline = time.monotonic() + 10
        while kind == "redis" and client.get("/v1/experiments/hero").json()["policy_version"] < version:
            assert time.monotonic() < deadline, "the server did not follow the learned model"
            time.sleep(0.01)
        stats = client.get("/v1/experiments/hero/stats").json()
    pulls = Counter(arm for arm, _ in unique.values())
    sums = Counter()
    for arm, value in unique.values():
        sums[arm] += value
    assert stats["rewards"] == len(unique) == sum(row["pulls"] for row in stats["arms"])
    for row in stats["arms"]:
        assert row["pulls"] == pulls[row["arm"]]
        if row["pulls"]:
            assert row["mean"] == pytest.approx(sums[row["arm"]] / pulls[row["arm"]], rel=1e-12)

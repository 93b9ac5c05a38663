"""Exactness of the Redis learning loop: two serving workers, many clients, duplicate and conflicting
retries; after the learner drains, the model equals ``Bandit.update_many`` over the acknowledged rewards
bit for bit (rewards in {0, 1}: every sum of the Beta-Bernoulli state is exact in float64)."""

from __future__ import annotations

import time

import httpx
import pytest
from redis_servers import (Load, ServeProcess, assert_drained, assert_log_matches,
                           assert_model_is_reference, create_experiment, learn_once)

SPEC = {"name": "hero", "arms": ["a", "b", "c"], "policy": {"name": "thompson", "params": {}},
        "attribution_window_s": 3600.0, "seed": 11}
#: 8 client threads x 2,000 rewards each, through two worker processes.
THREADS, REWARDS_PER_THREAD = 8, 2000


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(2))
def test_model_equals_update_many_over_acknowledged_rewards(round_, tmp_path, processes, shared_store):
    store, prefix, client = shared_store
    serve = processes(ServeProcess(store, tmp_path / "serve.log", workers=2)).start()
    create_experiment(serve.base_url, SPEC)
    load = Load([serve.base_url], "hero", threads=THREADS, rewards_per_thread=REWARDS_PER_THREAD, seed=round_)
    acknowledged = load.run()
    assert min(load.resolved) >= REWARDS_PER_THREAD, load.resolved
    assert acknowledged.refused_conflicts > 0 and acknowledged.confirmed_retries > 0   # both kinds were sent
    assert load.transport_errors == 0 and load.fallbacks == 0, (load.transport_errors, load.fallbacks)

    learn_once(store, tmp_path / "learn.log")
    assert_log_matches(client, prefix, "hero", acknowledged)
    arms = {decision_id: answer["arm"] for decision_id, answer in acknowledged.decisions.items()}
    stored = assert_model_is_reference(client, prefix, SPEC, acknowledged.rewards, arms)
    assert_drained(client, prefix, "hero")
    # A second drain finds nothing: the model does not move.
    learn_once(store, tmp_path / "learn-again.log")
    assert assert_model_is_reference(client, prefix, SPEC, acknowledged.rewards, arms)["version"] == stored["version"]
    # The workers pick the new model up: decisions and the experiment name the learner's version.
    deadline = time.monotonic() + 5
    while True:
        described = httpx.get(f"{serve.base_url}/v1/experiments/hero", timeout=10).json()
        decision = httpx.post(f"{serve.base_url}/v1/experiments/hero/decisions", json={}, timeout=10).json()
        if described["policy_version"] == decision["policy_version"] == int(stored["version"]):
            break
        assert time.monotonic() < deadline, (described["policy_version"], decision, stored["version"])
        time.sleep(0.05)

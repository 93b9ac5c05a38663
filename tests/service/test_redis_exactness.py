"""Exactness of the Redis learning loop: two serving workers, many clients, duplicate and conflicting
retries; after the learner drains, the model equals ``Bandit.update_many`` over the acknowledged rewards
bit for bit (rewards in {0, 1}: every sum of the Beta-Bernoulli state is exact in float64)."""

from __future__ import annotations

import httpx
import pytest
from redis_servers import (
    Load,
    assert_model_is_reference,
    check_against_acknowledged,
    create_experiment,
    drain,
    learn_once,
    serving_on_shared_redis,
    wait_for,
)

SPEC = {
    "name": "hero",
    "arms": ["a", "b", "c"],
    "policy": {"name": "thompson", "params": {}},
    "attribution_window_s": 3600.0,
    "seed": 11,
}
#: 8 client threads x 2,000 rewards each, through two worker processes.
THREADS, REWARDS_PER_THREAD = 8, 2000


@pytest.fixture(scope="module")
def serving(tmp_path_factory):
    with serving_on_shared_redis(tmp_path_factory.mktemp("exactness"), workers=2) as running:
        yield running


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(2))
def test_model_equals_update_many_over_acknowledged_rewards(round_, serving, tmp_path):
    store, prefix, client, serve = serving
    spec = dict(SPEC, name=f"hero{round_}")
    create_experiment(serve.base_url, spec)
    load = Load([serve.base_url], spec["name"], threads=THREADS, rewards_per_thread=REWARDS_PER_THREAD, seed=round_)
    acknowledged = load.run()
    assert min(load.resolved) >= REWARDS_PER_THREAD, load.resolved
    assert acknowledged.refused_conflicts > 0 and acknowledged.confirmed_retries > 0  # both kinds were sent
    assert load.transport_errors == 0 and load.fallbacks == 0, (load.transport_errors, load.fallbacks)

    learn_once(store, tmp_path / "learn.log")  # the real command, in its own process
    stored = check_against_acknowledged(client, prefix, spec, acknowledged)
    # A second drain finds nothing: the model does not move.
    drain(store)
    arms = {decision_id: answer["arm"] for decision_id, answer in acknowledged.decisions.items()}
    assert assert_model_is_reference(client, prefix, spec, acknowledged.rewards, arms)["version"] == stored["version"]

    # Both workers pick the learner's model up: decisions and the experiment name its version.
    def served_version() -> bool:
        url = f"{serve.base_url}/v1/experiments/{spec['name']}"
        versions = {httpx.get(url, timeout=10).json()["policy_version"]}
        versions |= {
            answer["policy_version"]
            for answer in httpx.post(f"{url}/decisions/batch", json={"requests": [{}] * 20}, timeout=10).json()[
                "decisions"
            ]
        }
        return versions == {int(stored["version"])}

    wait_for(served_version, 5, f"the workers to serve version {stored['version']}")

"""Every registered policy served over HTTP learns what ``Bandit.update_many`` learns from the same rewards.

The service learns each reward batch as a delta (``Policy.state_delta``) that
the store and the server's memory merge (``Policy.merge_delta``). Run over the
memory store, a real SQLite file and the real Redis (where a learner pass
learns what the workers accepted), with single and batch decisions and
rewards arriving out of order, the served state must be the state of a local
Bandit given the same rewards in the same order: bit for bit where the
arithmetic is the same, to 1e-12 where a sum is taken in another order (the
``FLOAT_ORDER`` table says which and why). Memory and store must agree bit
for bit.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import numpy as np
import pytest

import banditkit as bk
from banditkit.policies import REGISTRY
from banditkit.service import Settings, create_app
from banditkit.service.engine import Engine
from banditkit.service.errors import InvalidRequestError
from banditkit.service.learner import Learner
from banditkit.service.model import policy_state
from banditkit.service.runner import running
from banditkit.service.schemas import DecisionRequest, ExperimentCreate, RewardRequest
from banditkit.service.stores import MemoryStore, SQLiteStore
from banditkit.service.stores.redis_keys import is_redis_url

TREE = {"class": "sklearn.tree.DecisionTreeRegressor", "params": {"max_depth": 3}}
MODEL = {"estimator": TREE, "refit_every": 4, "refit_fraction": 0.5}

#: Every registered policy with the hyperparameters it is served with here; a policy missing from this
#: table fails ``test_every_registered_policy_has_a_case``.
CASES: dict[str, list[dict[str, Any]]] = {
    "thompson": [{}, {"reward_range": [0.0, 500.0]}],
    "gaussian_thompson": [{}],
    "epsilon_greedy": [{"epsilon": 0.3, "decay": 0.1}],
    "softmax": [{"temperature": 0.5}],
    "ucb1": [{}],
    "bayes_ucb": [{}],
    "kl_ucb": [{}],
    "exp3": [{"gamma": 0.3}, {"gamma": 0.3, "reward_range": [-2.0, 8.0]}],
    "discounted_thompson": [{"gamma": 0.9}],
    "sliding_window_ucb": [{"window": 7}],
    "linucb": [{}, {"standardize": True}],
    "lints": [{"v": 0.5}, {"standardize": True}],
    "contextual_epsilon_greedy": [{**MODEL, "epsilon": 0.2, "max_rows": 400}],
    "bootstrapped_thompson": [{**MODEL, "n_replicas": 3, "max_rows": 400}, {**MODEL, "n_replicas": 2, "max_rows": 9}],
}
#: Policies whose served state matches update_many to 1e-12 rather than bit for bit, because the service
#: sums the same terms in another order: per reward batch, then the batches, where update_many sums them
#: all at once. Real-valued rewards (epsilon_greedy, softmax, gaussian_thompson and its sums of squares);
#: ridge ``A`` and ``b`` and the inverses computed from them (linucb, lints); importance weights
#: gamma * r / (K p) (exp3); powers of gamma applied per batch (discounted_thompson). The others are exact:
#: counts and sums of multiples of 1/8 (thompson, ucb1, bayes_ucb, kl_ucb, sliding_window_ucb), rows copied into a
#: buffer and models fit on the same rows (the model-based policies).
FLOAT_ORDER = {"epsilon_greedy", "softmax", "gaussian_thompson", "linucb", "lints", "exp3", "discounted_thompson"}
N_DECISIONS = 24
N_FEATURES = 2


def case_id(case) -> str:
    name, params = case
    shown = {key: value for key, value in params.items() if key not in MODEL}
    return f"{name}{shown}" if shown else name


SERVED = [(name, params) for name in sorted(REGISTRY) for params in CASES.get(name, [])]


def test_every_registered_policy_has_a_case():
    assert sorted(REGISTRY) == sorted(CASES), "add the new policy to CASES (and FLOAT_ORDER if it applies)"


def reward_values(policy: bk.Bandit, rng: np.random.Generator, n: int) -> np.ndarray:
    """Rewards the policy accepts: multiples of 1/8 of its ``reward_range`` (exact on [0, 1] once mapped), or
    real values rounded to 1e-3."""
    if policy.policy.reward_range is not None:
        low, high = policy.policy.reward_range
        return low + (high - low) * rng.integers(0, 9, n) / 8
    return np.round(rng.normal(0.5, 1.0, n), 3)


def serve(base_url: str, name: str, spec: dict, contextual: bool, seed: int):
    """Decisions (single and batch) then rewards out of order (single, batch, a retry) over HTTP; returns the
    rewards in the order the service learned them: arm names, values, contexts, logged propensities."""
    rng = np.random.default_rng(seed)
    contexts = np.round(rng.normal(size=(N_DECISIONS, N_FEATURES)), 3)
    with httpx.Client(base_url=base_url, timeout=60.0) as http:
        body = {"name": name, "arms": ["a", "b", "c"], "policy": spec, "attribution_window_s": 600.0, "seed": 1}
        if contextual:
            body["n_features"] = N_FEATURES
        created = http.post("/v1/experiments", json=body)
        assert created.status_code == 201, created.text

        def request(i):
            return {"context": contexts[i].tolist()} if contextual else {"unit": f"u{i}"} if i % 3 else {}

        half = N_DECISIONS // 2
        decisions = [http.post(f"/v1/experiments/{name}/decisions", json=request(i)).json() for i in range(half)]
        batch = http.post(
            f"/v1/experiments/{name}/decisions/batch", json={"requests": [request(i) for i in range(half, N_DECISIONS)]}
        )
        assert batch.status_code == 200, batch.text
        decisions += batch.json()["decisions"]
        assert not any(d["fallback"] for d in decisions)

        order = rng.permutation(N_DECISIONS)
        bandit = bk.Bandit(["a", "b", "c"], policy=spec, n_features=N_FEATURES if contextual else None)
        values = reward_values(bandit, rng, N_DECISIONS)

        def reward(i):
            return {"decision_id": decisions[i]["decision_id"], "value": float(values[i])}

        for i in order[:5]:
            answer = http.post(f"/v1/experiments/{name}/rewards", json=reward(i))
            assert answer.status_code == 200 and answer.json()["applied"], answer.text
        for chunk in (order[5:13], order[13:]):
            answer = http.post(f"/v1/experiments/{name}/rewards/batch", json={"rewards": [reward(i) for i in chunk]})
            assert answer.status_code == 200, answer.text
            assert all(result["status"] == 200 for result in answer.json()["results"]), answer.text
        retry = http.post(f"/v1/experiments/{name}/rewards", json=reward(order[0]))  # learned once only
        assert retry.status_code == 200
    return (
        [decisions[i]["arm"] for i in order],
        values[order],
        contexts[order] if contextual else None,
        np.array([decisions[i]["propensity"] for i in order]),
    )


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_url(request, tmp_path) -> str:
    if request.param == "redis":
        return request.getfixturevalue("shared_store")[0]
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'served.db'}"


def learned(engine: Engine, store_url: str, name: str) -> int:
    """On Redis, one learner pass over the rewards, then the server's reload of the stored model; the
    number of versions the rewards made (the stores that learn in process: one per reward request)."""
    if not is_redis_url(store_url):
        return 7  # 5 single rewards and 2 batches; the retry changed nothing
    learner = Learner.from_url(store_url)
    try:
        learner.step()
    finally:
        learner.close()
    deadline = time.monotonic() + 10.0
    while engine.experiment(name).bandit.version < 1:
        assert time.monotonic() < deadline, "the server did not reload the learned model"
        time.sleep(0.005)
    return 1  # one learner batch held every reward


@pytest.mark.parametrize("case", SERVED, ids=case_id)
def test_the_served_state_is_what_update_many_learns(store_url, case, tmp_path):
    name, params = case
    contextual = REGISTRY[name].contextual
    spec = {"name": name, "params": params}
    settings = Settings(
        store=store_url,
        port=0,
        sweep_interval_s=60.0,
        admin_token=None,
        client_tokens=(),
        tune_interpreter=False,
        model_poll_s=0.01,
        spool_dir=tmp_path / "spool",
    )
    app = create_app(settings)
    with running(settings, app=app) as base_url:
        arms, rewards, contexts, propensities = serve(base_url, "served", spec, contextual, seed=len(name))
        engine = app.state.engine
        versions = learned(engine, store_url, "served")
        served = engine.experiment("served").bandit
        (record,) = engine.store.load_experiments()
        stored = policy_state(record.state)
    reference = bk.Bandit(["a", "b", "c"], policy=spec, n_features=N_FEATURES if contextual else None)
    reference.update_many(arms, rewards, contexts=contexts, propensities=propensities)

    assert served.version == record.version == versions
    assert served.state.keys() == stored.keys() == reference.state.keys()
    tolerance = 1e-12 if name in FLOAT_ORDER else 0.0
    for key, expected in reference.state.items():
        np.testing.assert_array_equal(served.state[key], stored[key], err_msg=f"memory vs store: {key}")
        assert served.state[key].dtype == expected.dtype and served.state[key].shape == expected.shape, key
        np.testing.assert_allclose(served.state[key], expected, rtol=tolerance, atol=tolerance, err_msg=key)
    np.testing.assert_array_equal(served.pulls, reference.pulls)
    if contextual:
        probe = np.array([[0.3, -1.2]])
        assert served.probabilities(context=probe) == pytest.approx(reference.probabilities(context=probe), abs=1e-9)
    else:
        assert served.probabilities() == pytest.approx(reference.probabilities(), abs=1e-9)


def test_reward_batches_submitted_together_learn_in_order(tmp_path):
    """Two reward batches submitted at once (learned in the experiment's lane, committed together when they
    queue up together): the second's delta is computed from the state with the first one merged, so an
    order-dependent policy (discounting) learns as if they came one by one."""
    store = SQLiteStore(tmp_path / "group.db", commit_interval_s=0.05)
    engine = Engine(store, refresh_s=0)
    spec = {"name": "discounted_thompson", "params": {"gamma": 0.5}}

    async def scenario():
        await engine.create(ExperimentCreate(name="hero", arms=["a", "b"], policy=spec, attribution_window_s=600.0))
        decisions = await engine.decide("hero", [DecisionRequest() for _ in range(6)])
        batches = [
            [RewardRequest(decision_id=d.decision_id, value=value) for d in chunk]
            for chunk, value in ((decisions[:3], 1.0), (decisions[3:], 0.0))
        ]
        await asyncio.gather(*(engine.reward("hero", batch) for batch in batches))
        return decisions

    try:
        decisions = asyncio.run(scenario())
        served = engine.experiment("hero").bandit
        (record,) = store.load_experiments()
    finally:
        engine.close()
        store.close()
    reference = bk.Bandit(["a", "b"], policy=spec)
    reference.update_many([d.arm for d in decisions[:3]], [1.0] * 3)
    reference.update_many([d.arm for d in decisions[3:]], [0.0] * 3)
    assert served.version == record.version == 2
    for key, expected in reference.state.items():
        np.testing.assert_array_equal(served.state[key], policy_state(record.state)[key])
        np.testing.assert_allclose(served.state[key], expected, rtol=1e-12, atol=1e-12, err_msg=key)


class SharedStore(MemoryStore):
    """A store whose writers may compute deltas from stale states (as several independent learners would)."""

    several_writers = True


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_a_store_with_several_writers_refuses_what_it_cannot_merge(name):
    """Creation answers 422 naming ``policy`` exactly for the policies whose deltas merge only in order."""
    params = CASES[name][-1]
    policy = bk.policies.make_policy({"name": name, "params": params})
    spec = ExperimentCreate(
        name="hero",
        arms=["a", "b"],
        policy={"name": name, "params": params},
        n_features=N_FEATURES if policy.contextual else None,
    )
    engine = Engine(SharedStore(), refresh_s=0)
    try:
        if policy.distributable:
            asyncio.run(engine.create(spec))
            assert "hero" in engine.experiments
        else:
            with pytest.raises(InvalidRequestError, match=f"policy {name!r} cannot be served") as refused:
                asyncio.run(engine.create(spec))
            assert refused.value.field == "policy" and refused.value.status == 422
            assert "hero" not in engine.experiments and not engine.store.load_experiments()
    finally:
        engine.close()
    # The same policy on a store with one writer is served whatever its merge rule.
    single = Engine(MemoryStore(), refresh_s=0)
    asyncio.run(single.create(spec))
    single.close()

"""Contextual experiments over HTTP, with a small contextual policy defined here.

The policy is a softmax over per-arm linear scores, whose state is additive
(reward-weighted context sums and pull counts): enough to exercise the
service's contextual path (context validation, per-request distributions, the
context logged and used again when the reward arrives).
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from banditkit.policies import REGISTRY, register
from banditkit.policies.base import Policy, categorical


class LinearSoftmax(Policy):
    """P(arm) ∝ exp(x · w_arm / temperature), w_arm = (sum of r x) / (1 + pulls)."""

    name = "test_linear_softmax"
    contextual = True
    reward_bounds = (0.0, 1.0)

    def __init__(self, temperature: float = 0.5):
        self.temperature = temperature

    def init_state(self, n_arms, batch=1, n_features=None):
        return {"pulls": np.zeros((batch, n_arms)), "weighted_contexts": np.zeros((batch, n_arms, n_features))}

    def _weights(self, state):
        return state["weighted_contexts"] / (1.0 + state["pulls"][..., None])

    def means(self, state, context=None):
        return np.einsum("bkd,nd->nk", self._weights(state), context)

    def probabilities(self, state, mask, context=None):
        scores = np.where(mask, self.means(state, context) / self.temperature, -np.inf)
        scores -= scores.max(axis=1, keepdims=True)
        weights = np.exp(scores)
        return weights / weights.sum(axis=1, keepdims=True)

    def sample(self, state, rng, mask, context=None):
        return categorical(self.probabilities(state, mask, context), rng)

    def update(self, state, arms, rewards, *, propensities=None, context=None):
        pulls = state["pulls"].copy()
        weighted = state["weighted_contexts"].copy()
        np.add.at(pulls[0], arms, 1.0)
        np.add.at(weighted[0], arms, rewards[:, None] * context)
        return {"pulls": pulls, "weighted_contexts": weighted}


@pytest.fixture
def contextual_policy():
    register(LinearSoftmax)
    yield LinearSoftmax.name
    del REGISTRY[LinearSoftmax.name]


def test_contextual_decisions_rewards_and_log(http, create, contextual_policy, learn):
    create(http, name="ctx", arms=["a", "b", "c"], policy={"name": contextual_policy, "params": {}}, n_features=2)
    missing = http.post("/v1/experiments/ctx/decisions", json={})
    assert missing.status_code == 422 and "needs a context of 2 numbers" in missing.text
    wrong = http.post("/v1/experiments/ctx/decisions", json={"context": [1.0, 2.0, 3.0]})
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"] == ["body", "context"]
    batch = http.post(
        "/v1/experiments/ctx/decisions/batch",
        json={
            "requests": [
                {"context": [1.0, 0.0]},
                {"context": [0.0, 1.0], "unit": "u1"},
                {"context": [1.0, 1.0], "allowed": ["b"]},
                {"context": [1.0, 2.0, 3.0]},
            ]
        },
    )
    assert batch.status_code == 422 and batch.json()["detail"][0]["loc"] == ["body", "requests.3.context"]
    answers = http.post(
        "/v1/experiments/ctx/decisions/batch",
        json={
            "requests": [
                {"context": [1.0, 0.0]},
                {"context": [0.0, 1.0], "unit": "u1"},
                {"context": [1.0, 1.0], "allowed": ["b"]},
            ]
        },
    ).json()["decisions"]
    assert answers[2]["arm"] == "b" and answers[2]["propensity"] == 1.0
    assert all(a["propensity"] == pytest.approx(1 / 3) for a in answers[:2])  # no data yet: uniform
    # The unit's arm is the library's deterministic walk over this context's distribution.
    again = http.post("/v1/experiments/ctx/decisions", json={"context": [0.0, 1.0], "unit": "u1"}).json()
    assert again["arm"] == answers[1]["arm"]
    for answer in answers:
        reward = http.post("/v1/experiments/ctx/rewards", json={"decision_id": answer["decision_id"], "value": 1.0})
        assert reward.status_code == 200
        learn("ctx")
    rows = list(csv.DictReader(io.StringIO(http.get("/v1/experiments/ctx/log").text)))
    assert [json.loads(row["context"]) for row in rows[:3]] == [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    learned = http.post("/v1/experiments/ctx/decisions", json={"context": [1.0, 1.0], "allowed": ["a", "b"]}).json()
    assert learned["policy_version"] == 3
    probabilities = json.loads(
        list(csv.DictReader(io.StringIO(http.get("/v1/experiments/ctx/log").text)))[-1]["probabilities"]
    )
    assert probabilities["c"] == 0.0 and probabilities["b"] > probabilities["a"]  # b was rewarded on [1, 1]
    assert probabilities[learned["arm"]] == learned["propensity"]


@pytest.mark.parametrize("policy", ["linucb", "lints"])
def test_the_library_contextual_policies_are_served(http, create, policy, learn):
    create(http, name=policy, arms=["a", "b"], policy={"name": policy, "params": {}}, n_features=2)
    rng = np.random.default_rng(3)
    for _ in range(20):
        context = rng.normal(size=2).tolist()
        answer = http.post(f"/v1/experiments/{policy}/decisions", json={"context": context}).json()
        assert 0 < answer["propensity"] <= 1
        value = float((context[0] > 0) == (answer["arm"] == "a"))
        assert (
            http.post(
                f"/v1/experiments/{policy}/rewards", json={"decision_id": answer["decision_id"], "value": value}
            ).status_code
            == 200
        )
        learn(policy)
    stats = http.get(f"/v1/experiments/{policy}/stats").json()
    assert stats["policy_version"] == 20 and sum(row["pulls"] for row in stats["arms"]) == 20
    assert stats["entropy"] is None and all(row["probability"] is None for row in stats["arms"])

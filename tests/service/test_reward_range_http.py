"""Rewards on another scale than [0, 1] over HTTP.

An experiment whose policy has ``reward_range`` accepts and learns rewards in
that interval (on every store, the learner's included); a reward or a
default reward outside a policy's range is a 422 naming the field, the
interval, and how to set ``reward_range``. ``/stats`` reports the anytime-valid
intervals, P(best), P(beats the default arm) and the regret on the rewards' own
scale, as a local Bandit does; without a range there is no confidence sequence.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

import banditkit as bk

REVENUE = {"name": "thompson", "params": {"reward_range": [0, 500]}}
ADVICE = 'set reward_range=(low, high): ThompsonSampling(reward_range=(0, 500)) in Python, "params": {"reward_range": '


def test_an_experiment_with_a_reward_range_learns_revenue(http, create, learn):
    """Served state and stats are a local Bandit's with the same range and rewards; 600 is refused."""
    create(http, name="shop", arms=["a", "b"], policy=REVENUE, default_reward=0.0)
    described = http.get("/v1/experiments/shop").json()["policy"]
    assert described == {
        "name": "thompson",
        "params": {"prior_alpha": 1.0, "prior_beta": 1.0, "reward_range": [0.0, 500.0]},
    }
    decisions = [http.post("/v1/experiments/shop/decisions", json={}).json() for _ in range(5)]
    values = [129.99, 500.0, 0.0, 250.0]
    for decision, value in zip(decisions, values, strict=False):
        answer = http.post(
            "/v1/experiments/shop/rewards", json={"decision_id": decision["decision_id"], "value": value}
        )
        assert answer.status_code == 200 and answer.json()["applied"], answer.text
    refused = http.post(
        "/v1/experiments/shop/rewards", json={"decision_id": decisions[4]["decision_id"], "value": 600.0}
    )
    assert refused.status_code == 422
    (error,) = refused.json()["detail"]
    assert error["loc"] == ["body", "value"]
    assert error["msg"].startswith("value must be in [0.0, 500.0] for policy 'thompson', got 600.0; ")
    learn("shop")

    local = bk.Bandit(["a", "b"], policy=REVENUE)
    local.update_many([decision["arm"] for decision in decisions[:4]], values)
    stats = http.get("/v1/experiments/shop/stats").json()
    assert stats["rewards"] == 4
    for row, expected in zip(stats["arms"], local.stats(), strict=True):
        assert row["pulls"] == expected.pulls
        if expected.pulls:
            assert (row["mean"], row["low"], row["high"]) == pytest.approx((expected.mean, expected.low, expected.high))
            assert 0.0 <= row["low"] <= row["mean"] <= row["high"] <= 500.0
        assert row["probability"] == pytest.approx(local.probabilities()[row["arm"]], abs=1e-9)


def test_stats_report_confidence_sequences_and_regret_on_the_rewards_scale(http, create, learn):
    """cs_low/cs_high, p_best, p_beats_default and the regret with its interval are a local Bandit's; an
    experiment without a reward range has no confidence sequence and no regret interval (null), but an estimate."""
    create(http, name="shop", arms=["a", "b", "c"], policy=REVENUE, guardrails={"default_arm": "a"})
    arms, values = ["a", "a", "b", "b", "b", "c"], [0.0, 100.0, 400.0, 500.0, 350.0, 250.0]
    local = bk.Bandit(["a", "b", "c"], policy=REVENUE, guardrails={"default_arm": "a"})
    served = {}
    while sorted(served) != sorted(range(len(arms))):  # decisions until each of the six rewards has its arm
        decision = http.post("/v1/experiments/shop/decisions", json={}).json()
        free = [i for i, arm in enumerate(arms) if arm == decision["arm"] and i not in served]
        if free:
            served[free[0]] = decision["decision_id"]
    for index, decision_id in served.items():
        answer = http.post("/v1/experiments/shop/rewards", json={"decision_id": decision_id, "value": values[index]})
        assert answer.status_code == 200 and answer.json()["applied"], answer.text
    local.update_many(arms, values)
    learn("shop")
    stats = http.get("/v1/experiments/shop/stats").json()
    expected = local.stats()
    assert (stats["regret_estimate"], stats["regret_low"], stats["regret_high"]) == pytest.approx(
        (expected.regret_estimate, expected.regret_low, expected.regret_high), rel=1e-12
    )
    assert stats["regret_estimate"] == pytest.approx(6 * 1250 / 3 - 1600)  # always b (mean 1250 / 3), less 1600
    assert 0.0 <= stats["regret_low"] <= stats["regret_estimate"] <= stats["regret_high"]
    for row, arm in zip(stats["arms"], expected, strict=True):
        for key in ("cs_low", "cs_high", "p_best", "p_beats_default", "low", "high"):
            value = getattr(arm, key)
            assert row[key] == (None if value is None else pytest.approx(value, rel=1e-12, abs=1e-12)), key
        assert 0.0 <= row["cs_low"] <= row["low"] <= row["mean"] <= row["high"] <= row["cs_high"] <= 500.0
    assert stats["arms"][0]["p_beats_default"] is None  # a is the default arm
    assert sum(row["p_best"] for row in stats["arms"]) == pytest.approx(1.0, abs=1e-9)

    create(http, name="plain", arms=["a", "b"], policy="epsilon_greedy")
    for _ in range(4):
        decision = http.post("/v1/experiments/plain/decisions", json={}).json()
        http.post("/v1/experiments/plain/rewards", json={"decision_id": decision["decision_id"], "value": 2.0})
    learn("plain")
    plain = http.get("/v1/experiments/plain/stats").json()
    assert plain["regret_estimate"] == 0.0 and plain["regret_low"] is None and plain["regret_high"] is None
    assert all(row["cs_low"] is None and row["cs_high"] is None for row in plain["arms"])
    assert all(row["p_beats_default"] is None for row in plain["arms"])


def test_a_serve_process_says_how_to_set_reward_range(server_process, sqlite_url, create):
    """A `banditkit serve` child process: a revenue-sized reward on the default [0, 1] policy, and a default
    reward outside the range, are 422 answers that say how to set ``reward_range``; a bad range names it."""
    service = server_process(sqlite_url)
    with httpx.Client(base_url=service.base_url, timeout=30.0) as http:
        create(http, name="clicks", arms=["a", "b"])
        decision = http.post("/v1/experiments/clicks/decisions", json={}).json()
        refused = http.post(
            "/v1/experiments/clicks/rewards", json={"decision_id": decision["decision_id"], "value": 129.99}
        )
        assert refused.status_code == 422
        (error,) = refused.json()["detail"]
        assert error["loc"] == ["body", "value"]
        assert error["msg"] == (
            "value must be in [0.0, 1.0] for policy 'thompson', got 129.99; for rewards on another scale "
            + ADVICE
            + "[0, 500]} in the service"
        )

        default = http.post(
            "/v1/experiments", json={"name": "shop", "arms": ["a", "b"], "policy": REVENUE, "default_reward": 600.0}
        )
        assert default.status_code == 422
        (error,) = default.json()["detail"]
        assert error["loc"] == ["body", "default_reward"]
        assert error["msg"].startswith("default_reward must be in [0.0, 500.0] for policy 'thompson', got 600.0; ")
        assert ADVICE in error["msg"]

        backwards = http.post(
            "/v1/experiments",
            json={"name": "shop", "arms": ["a", "b"], "policy": {"name": "ucb1", "params": {"reward_range": [500, 0]}}},
        )
        assert backwards.status_code == 422
        (error,) = backwards.json()["detail"]
        assert error["loc"] == ["body", "policy"]
        assert error["msg"] == "reward_range must be finite (low, high) with low < high, got [500, 0]"

        create(http, name="shop", arms=["a", "b"], policy=REVENUE)
        decision = http.post("/v1/experiments/shop/decisions", json={}).json()
        accepted = http.post(
            "/v1/experiments/shop/rewards", json={"decision_id": decision["decision_id"], "value": 129.99}
        )
        assert accepted.status_code == 200 and accepted.json()["applied"]
        (arm,) = [row for row in http.get("/v1/experiments/shop/stats").json()["arms"] if row["pulls"]]
        assert arm["mean"] == 129.99 and np.isfinite([arm["low"], arm["high"]]).all()

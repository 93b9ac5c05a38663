"""The main flows over real HTTP: uvicorn on a free port, httpx; each on a real SQLite file, the memory store
and the real Redis (``store_url``; ``learn`` runs the Redis learner where a test expects a reward learned)."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from banditkit.service.export import COLUMNS


def decide(http, body=None, name="hero") -> dict:
    response = http.post(f"/v1/experiments/{name}/decisions", json=body or {})
    assert response.status_code == 200, response.text
    return response.json()


def reward(http, decision_id, value, name="hero"):
    return http.post(f"/v1/experiments/{name}/rewards", json={"decision_id": decision_id, "value": value})


def test_create_decide_reward_and_read_back(http, create, learn):
    created = create(http, policy={"name": "thompson", "params": {"prior_alpha": 1.0, "prior_beta": 1.0}})
    assert created["policy_version"] == 0 and [arm["name"] for arm in created["arms"]] == ["a", "b", "c"]
    decision = decide(http, {"unit": "user-1"})
    assert set(decision) == {"decision_id", "arm", "propensity", "policy_version", "fallback", "policy"}
    assert decision["policy"] == "current"
    assert decision["propensity"] == pytest.approx(1 / 3) and decision["fallback"] is False
    answer = reward(http, decision["decision_id"], 1.0)
    assert answer.status_code == 200
    assert answer.json() == {
        "decision_id": decision["decision_id"],
        "arm": decision["arm"],
        "value": 1.0,
        "applied": True,
    }
    assert reward(http, decision["decision_id"], 1.0).json() == answer.json()  # retry: first answer
    learn()
    experiment = http.get("/v1/experiments/hero").json()
    assert experiment["policy_version"] == 1
    stats = http.get("/v1/experiments/hero/stats").json()
    pulls = {row["arm"]: row["pulls"] for row in stats["arms"]}
    assert pulls == {"a": 0, "b": 0, "c": 0, decision["arm"]: 1}
    assert stats["decisions"] == 1 and stats["rewards"] == 1
    assert sum(row["probability"] for row in stats["arms"]) == pytest.approx(1.0)
    assert 0 < stats["entropy"] <= np.log(3)


def test_deterministic_assignment_and_batches(http, create):
    create(http)
    first = [decide(http, {"unit": f"u{i}"})["arm"] for i in range(20)]
    again = http.post(
        "/v1/experiments/hero/decisions/batch", json={"requests": [{"unit": f"u{i}"} for i in range(20)]}
    ).json()["decisions"]
    assert [d["arm"] for d in again] == first  # same unit, same arm
    rewards = http.post(
        "/v1/experiments/hero/rewards/batch",
        json={
            "rewards": [
                {"decision_id": again[0]["decision_id"], "value": 1.0},
                {"decision_id": again[1]["decision_id"], "value": 0.0},
                {"decision_id": again[0]["decision_id"], "value": 0.0},  # another value: 409
                {"decision_id": "nope", "value": 1.0},
            ]
        },
    ).json()["results"]
    assert [r["status"] for r in rewards] == [200, 200, 409, 404]
    assert http.get("/v1/experiments/hero/stats").json()["rewards"] == 2


def test_sticky_units_keep_their_arm_while_it_is_active(http, create):
    create(http, sticky=True)
    arm = decide(http, {"unit": "user-7"})["arm"]
    for _ in range(5):  # learning moves the policy; the unit keeps its arm
        other = decide(http)
        reward(http, other["decision_id"], 1.0 if other["arm"] != arm else 0.0)
        assert decide(http, {"unit": "user-7"})["arm"] == arm
    http.patch("/v1/experiments/hero/arms", json={"disable": [arm]}).raise_for_status()
    moved = decide(http, {"unit": "user-7"})["arm"]
    assert moved != arm
    assert decide(http, {"unit": "user-7"})["arm"] == moved


def test_disabled_arms_are_never_served(http, create):
    create(http)
    changed = http.patch("/v1/experiments/hero/arms", json={"add": ["d"], "disable": ["a", "b"]}).json()
    assert changed["policy_version"] == 1
    assert {arm["name"]: arm["active"] for arm in changed["arms"]} == {"a": False, "b": False, "c": True, "d": True}
    batch = http.post("/v1/experiments/hero/decisions/batch", json={"requests": [{}] * 500}).json()["decisions"]
    assert {d["arm"] for d in batch} == {"c", "d"}
    assert decide(http, {"allowed": ["a", "d"]})["arm"] == "d"
    http.patch("/v1/experiments/hero/arms", json={"remove": ["a"], "enable": ["b"]}).raise_for_status()
    arms = http.get("/v1/experiments/hero").json()["arms"]
    assert [(arm["name"], arm["active"]) for arm in arms] == [("b", True), ("c", True), ("d", True)]


def test_fallback_when_nothing_can_be_served(http, create):
    create(http, guardrails={"default_arm": "a"})
    http.patch("/v1/experiments/hero/arms", json={"disable": ["b", "c"]}).raise_for_status()
    decision = decide(http, {"allowed": ["b", "c"]})
    assert decision["arm"] == "a" and decision["fallback"] is True and decision["propensity"] == 1.0
    log = list(csv_rows(http))
    assert log[-1]["fallback"] == "true"


def csv_rows(http, name="hero"):
    import csv

    response = http.get(f"/v1/experiments/{name}/log", params={"format": "csv"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    return csv.DictReader(io.StringIO(response.text))


def test_log_export_has_the_documented_columns_and_values(http, create):
    create(http)
    decisions = [decide(http, {"unit": f"u{i}"}) for i in range(4)]
    reward(http, decisions[1]["decision_id"], 1.0)
    rows = list(csv_rows(http))
    assert tuple(rows[0]) == COLUMNS
    assert [row["decision_id"] for row in rows] == [d["decision_id"] for d in decisions]
    second = rows[1]
    assert second["experiment"] == "hero" and second["unit"] == "u1" and second["arm"] == decisions[1]["arm"]
    assert float(second["propensity"]) == decisions[1]["propensity"]
    probabilities = json.loads(second["probabilities"])
    assert set(probabilities) == {"a", "b", "c"} and probabilities[second["arm"]] == float(second["propensity"])
    assert second["reward"] == "1.0" and rows[0]["reward"] == "" and second["context"] == ""
    assert second["fallback"] == "false" and int(second["policy_version"]) == 0
    assert abs(float(second["time"]) - time.time()) < 60
    table = pq.read_table(io.BytesIO(http.get("/v1/experiments/hero/log", params={"format": "parquet"}).content))
    assert tuple(table.column_names) == COLUMNS
    assert table.column("reward").to_pylist() == [None, 1.0, None, None]
    assert table.column("propensity").to_pylist() == [d["propensity"] for d in decisions]


def test_contextual_experiments_log_their_context(http, create):
    create(http, name="ctx", policy={"name": "epsilon_greedy", "params": {}}, arms=["a", "b"])
    # A non-contextual policy refuses contexts; contextual policies arrive with their own branch.
    assert http.post("/v1/experiments/ctx/decisions", json={"context": [1.0]}).status_code == 422


def test_snapshots_and_rollback(http, create, learn):
    create(http)
    for _ in range(3):
        d = decide(http)
        reward(http, d["decision_id"], 1.0)
        learn()
    snapshot = http.post("/v1/experiments/hero/snapshots").json()
    assert snapshot["policy_version"] == 3
    for _ in range(2):
        d = decide(http)
        reward(http, d["decision_id"], 0.0)
        learn()
    before = http.get("/v1/experiments/hero/stats").json()
    assert sum(row["pulls"] for row in before["arms"]) == 5
    restored = http.post("/v1/experiments/hero/rollback", json={"snapshot_id": snapshot["snapshot_id"]}).json()
    assert restored["policy_version"] == 6  # versions only go up
    after = http.get("/v1/experiments/hero/stats").json()
    assert sum(row["pulls"] for row in after["arms"]) == 3 and after["decisions"] == 5  # log not rewritten
    kinds = [event["kind"] for event in http.get("/v1/experiments/hero/events").json()]
    assert kinds == ["create", "snapshot", "rollback"]
    assert http.get("/v1/experiments/hero/snapshots").json() == [snapshot]  # created_at as answered, to the bit
    assert http.post("/v1/experiments/hero/rollback", json={"snapshot_id": 99}).status_code == 404


def test_a_plain_policy_name_is_a_policy(http, create):
    created = create(http, policy="ucb1")
    assert created["policy"]["name"] == "ucb1"
    assert http.get("/v1/experiments/hero").json()["policy"] == created["policy"]
    decide(http)
    answer = http.post("/v1/experiments", json={"name": "other", "arms": ["a", "b"], "policy": "thompsn"})
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "policy"]
    assert "'thompsn'" in answer.json()["detail"][0]["msg"]


def test_an_experiment_holds_at_most_a_thousand_arms(http, create):
    arms = [f"arm-{i}" for i in range(1000)]
    too_many = http.post("/v1/experiments", json={"name": "wide", "arms": [*arms, "one-more"], "policy": "ucb1"})
    assert too_many.status_code == 422 and too_many.json()["detail"][0]["loc"] == ["body", "arms"]
    create(http, "wide", arms=arms, policy="ucb1")
    answer = http.patch("/v1/experiments/wide/arms", json={"add": ["one-more"]})
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "add"]
    assert "at most 1000 arms" in answer.json()["detail"][0]["msg"]
    # Removing as many as it adds, in the same change, keeps it within the limit.
    swapped = http.patch("/v1/experiments/wide/arms", json={"add": ["one-more"], "remove": ["arm-0"]})
    assert swapped.status_code == 200 and len(swapped.json()["arms"]) == 1000


def test_default_reward_at_window_close_and_late_rewards(http, create, learn):
    create(http, attribution_window_s=0.3, default_reward=0.0)
    silent, late = decide(http), decide(http)
    deadline = time.monotonic() + 10
    while http.get("/v1/experiments/hero/stats").json()["rewards"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        learn()
    log = {row["decision_id"]: row for row in csv_rows(http)}
    assert log[silent["decision_id"]]["reward"] == "0.0"
    refused = reward(http, late["decision_id"], 1.0)
    assert refused.status_code == 410 and "window" in refused.json()["detail"]


def test_late_reward_without_default_is_410(http, create):
    create(http, attribution_window_s=0.1)
    decision = decide(http)
    time.sleep(0.2)
    refused = reward(http, decision["decision_id"], 1.0)
    assert refused.status_code == 410 and "after the attribution window" in refused.json()["detail"]


def test_openapi_and_docs(http, create):
    schema = http.get("/openapi.json").json()
    for path in (
        "/v1/experiments",
        "/v1/experiments/{name}",
        "/v1/experiments/{name}/arms",
        "/v1/experiments/{name}/decisions",
        "/v1/experiments/{name}/decisions/batch",
        "/v1/experiments/{name}/rewards",
        "/v1/experiments/{name}/rewards/batch",
        "/v1/experiments/{name}/stats",
        "/v1/experiments/{name}/log",
        "/v1/experiments/{name}/snapshots",
        "/v1/experiments/{name}/rollback",
    ):
        assert path in schema["paths"], path
    assert http.get("/docs").status_code == 200


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_the_fastapi_routes_answer_like_the_hot_paths(tmp_path):
    """Under a root_path the hot paths step aside: the FastAPI routes give the same answers."""
    from fastapi.testclient import TestClient

    from banditkit.service import Settings, create_app

    settings = Settings(
        store=f"sqlite:///{tmp_path / 'routes.db'}", admin_token="root", client_tokens="user", tune_interpreter=False
    )
    with TestClient(create_app(settings), root_path="/api") as client:
        admin, user = {"Authorization": "Bearer root"}, {"Authorization": "Bearer user"}
        client.post("/v1/experiments", json={"name": "hero", "arms": ["a", "b"]}, headers=admin).raise_for_status()
        assert client.post("/v1/experiments/hero/decisions", json={}).status_code == 401
        decision = client.post("/v1/experiments/hero/decisions", json={"unit": "u"}, headers=user).json()
        assert set(decision) == {"decision_id", "arm", "propensity", "policy_version", "fallback", "policy"}
        batch = client.post("/v1/experiments/hero/decisions/batch", json={"requests": [{}, {}]}, headers=user)
        assert len(batch.json()["decisions"]) == 2
        first = client.post(
            "/v1/experiments/hero/rewards", headers=user, json={"decision_id": decision["decision_id"], "value": 1.0}
        )
        assert first.json()["applied"] is True
        conflict = client.post(
            "/v1/experiments/hero/rewards", headers=user, json={"decision_id": decision["decision_id"], "value": 0.0}
        )
        assert conflict.status_code == 409
        results = client.post(
            "/v1/experiments/hero/rewards/batch",
            headers=user,
            json={"rewards": [{"decision_id": "nope", "value": 1.0}]},
        ).json()["results"]
        assert results[0]["status"] == 404
        invalid = client.post(
            "/v1/experiments/hero/decisions",
            content=b'{"context": [NaN]}',
            headers={**user, "content-type": "application/json"},
        )
        assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"][:2] == ["body", "context"]
        plain = client.post(
            "/v1/experiments/hero/decisions", content=b"{}", headers={**user, "content-type": "text/plain"}
        )
        assert plain.status_code == 415
        page = client.get("/v1/experiments", params={"limit": 1}, headers=user).json()
        assert [experiment["name"] for experiment in page["experiments"]] == ["hero"] and page["next_cursor"] is None
        assert client.get("/v1/experiments", params={"limit": 0}, headers=user).json()["detail"][0]["loc"] == [
            "query",
            "limit",
        ]
        assert client.get("/v1/health").json() == {"status": "ok"}

"""``PATCH /v1/experiments/{name}`` over real HTTP against real ``banditkit serve`` processes: each field takes effect
at once, is one new policy version with its event, survives a restart, reaches every worker on Redis; bad
changes get 422 naming the field and change nothing."""

from __future__ import annotations

import time

import httpx
import pytest
from redis_servers import ServeProcess

SPEC = {
    "name": "hero",
    "arms": ["a", "b", "c"],
    "policy": {"name": "epsilon_greedy", "params": {"epsilon": 0.1}},
    "attribution_window_s": 3600.0,
    "seed": 1,
}


def reward(http: httpx.Client, decision_id: str, value: float = 1.0) -> httpx.Response:
    return http.post("/v1/experiments/hero/rewards", json={"decision_id": decision_id, "value": value})


def decide(http: httpx.Client) -> str:
    return http.post("/v1/experiments/hero/decisions", json={}).json()["decision_id"]


def decide_and_reward(http: httpx.Client) -> None:
    """One decision, rewarded 1 when its arm is a, else 0."""
    decision = http.post("/v1/experiments/hero/decisions", json={}).json()
    assert reward(http, decision["decision_id"], float(decision["arm"] == "a")).status_code == 200


def test_each_field_takes_effect_as_one_version_and_survives_a_restart(server_process, tmp_path):
    url = f"sqlite:///{tmp_path / 'patch.db'}"
    first = server_process(url, sweep_interval_s=0.05)
    with httpx.Client(base_url=first.base_url, timeout=30.0) as http:
        assert http.post("/v1/experiments", json=SPEC).status_code == 201
        for _ in range(30):  # arm a pays: epsilon-greedy serves it with 1 - epsilon + epsilon / 3
            decide_and_reward(http)
        before = http.get("/v1/experiments/hero").json()
        best = max(http.get("/v1/experiments/hero/stats").json()["arms"], key=lambda arm: arm["probability"])
        assert best["probability"] == pytest.approx(1 - 0.1 + 0.1 / 3)

        answer = http.patch("/v1/experiments/hero", json={"policy_params": {"epsilon": 0.6}})
        assert answer.status_code == 200, answer.text
        assert answer.json()["policy"]["params"]["epsilon"] == 0.6
        assert answer.json()["policy_version"] == before["policy_version"] + 1
        stats = http.get("/v1/experiments/hero/stats").json()
        assert max(arm["probability"] for arm in stats["arms"]) == pytest.approx(1 - 0.6 + 0.6 / 3)
        assert sum(arm["pulls"] for arm in stats["arms"]) == 30  # what was learned is kept

        waiting = decide(http)
        changed = http.patch("/v1/experiments/hero", json={"attribution_window_s": 0.2, "default_reward": 0.0})
        assert changed.status_code == 200 and changed.json()["attribution_window_s"] == 0.2
        time.sleep(0.5)  # the decision made before the change now waits under the new window: closed
        assert reward(http, waiting).status_code == 410
        events = [event for event in http.get("/v1/experiments/hero/events").json() if event["kind"] == "patch"]
        assert [{k: v for k, v in e.items() if k not in ("time", "experiment")} for e in events] == [
            {"kind": "patch", "policy_version": before["policy_version"] + 1, "policy_params": {"epsilon": 0.6}},
            {
                "kind": "patch",
                "policy_version": before["policy_version"] + 2,
                "attribution_window_s": 0.2,
                "default_reward": 0.0,
            },
        ]
        guards = {"guardrails": {"default_arm": "b", "max_exploration": 0.3}}
        unguarded = http.patch("/v1/experiments/hero", json=guards)
        assert unguarded.json()["guardrails"]["default_arm"] == "b"
        served = http.get("/v1/experiments/hero").json()
    first.stop()

    second = server_process(url)
    with httpx.Client(base_url=second.base_url, timeout=30.0) as http:
        again = http.get("/v1/experiments/hero").json()
        assert again == served
        assert (again["attribution_window_s"], again["default_reward"]) == (0.2, 0.0)


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({}, None, "give at least one of"),
        ({"policy_params": {"epsilon": 2.0}}, "policy_params", "epsilon must be in [0.0, 1.0]"),
        ({"policy_params": {"nonsense": 1}}, "policy_params", "nonsense"),
        ({"guardrails": {"default_arm": "zz"}}, "guardrails", "'zz' is not one of the arms"),
        ({"guardrails": {"max_exploration": 7}}, "guardrails", "max_exploration"),
        ({"attribution_window_s": None}, "attribution_window_s", "a number of seconds"),
        ({"attribution_window_s": -1.0}, "attribution_window_s", "greater than 0"),
        ({"supervisor": {"webhook_url": "ftp://x"}}, "supervisor", "webhook_url"),
        ({"arms": ["a"]}, "arms", "Extra inputs"),
    ],
)
def test_a_bad_change_gets_422_naming_the_field_and_changes_nothing(served_once, body, field, words):
    http = served_once
    before = http.get("/v1/experiments/hero").json()
    answer = http.patch("/v1/experiments/hero", json=body)
    assert answer.status_code == 422, answer.text
    (detail,) = answer.json()["detail"]
    assert (detail["loc"][1] if len(detail["loc"]) > 1 else None) == field and words in detail["msg"], detail
    assert http.get("/v1/experiments/hero").json() == before


def test_a_parameter_that_changes_the_learned_state_is_refused(served_once):
    http = served_once
    spec = {"name": "ctx", "arms": ["a", "b"], "policy": {"name": "linucb", "params": {}}, "n_features": 2}
    assert http.post("/v1/experiments", json=spec).status_code == 201
    answer = http.patch("/v1/experiments/ctx", json={"policy_params": {"standardize": True}})
    assert answer.status_code == 422
    (detail,) = answer.json()["detail"]
    assert detail["loc"] == ["body", "policy_params"] and "the learned state does not fit" in detail["msg"]
    assert http.patch("/v1/experiments/ctx", json={"policy_params": {"alpha": 2.5}}).status_code == 200
    assert http.patch("/v1/experiments/nope", json={"default_reward": 0.0}).status_code == 404


@pytest.fixture(scope="module")
def served_once(tmp_path_factory):
    from banditkit.service import Settings
    from banditkit.service.runner import ServiceProcess

    folder = tmp_path_factory.mktemp("patch")
    settings = Settings(store=f"sqlite:///{folder / 'bad.db'}", port=0, admin_token=None, client_tokens=())
    process = ServiceProcess(settings).start()
    with httpx.Client(base_url=process.base_url, timeout=30.0) as http:
        assert http.post("/v1/experiments", json=SPEC).status_code == 201
        yield http
    process.stop()


def test_a_change_reaches_every_worker_on_redis(shared_store, processes, tmp_path):
    url = shared_store[0]
    serve = processes(
        ServeProcess(url, tmp_path / "serve.log", workers=2, env={"BANDITKIT_SPOOL_DIR": str(tmp_path / "spool")})
    ).start()
    with httpx.Client(base_url=serve.base_url, timeout=30.0) as http:
        assert http.post("/v1/experiments", json=SPEC).status_code == 201
        time.sleep(1.5)  # both workers serve it
        assert http.patch("/v1/experiments/hero", json={"attribution_window_s": 0.2}).status_code == 200
    time.sleep(0.5)  # the other worker's model poll sees the new version, and its window
    late = []
    for _ in range(10):  # fresh connections: each may reach either worker
        with httpx.Client(base_url=serve.base_url, timeout=30.0) as http:
            late.append(decide(http))
    time.sleep(0.4)
    statuses = []
    for decision_id in late:
        with httpx.Client(base_url=serve.base_url, timeout=30.0) as http:
            statuses.append(reward(http, decision_id).status_code)
            answer = http.get("/v1/experiments/hero").json()
            assert answer["attribution_window_s"] == 0.2
    assert statuses == [410] * 10

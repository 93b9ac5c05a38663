"""Policy canaries over HTTP: the split by unit hash, exact propensities under the serving policy, rewards learned by
the policy that served them, automatic rollback, promotion, and the errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from banditkit import Bandit
from banditkit.policies import make_policy
from banditkit.service import Settings
from banditkit.service.runner import running

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

ARMS = ["a", "b", "c"]
CANDIDATE = {"name": "ucb1", "params": {}}


@pytest.fixture(params=["sqlite", "memory"])
def store_url(request, sqlite_url) -> str:
    """Memory and SQLite here; the Redis learner path has its own test below."""
    return sqlite_url if request.param == "sqlite" else "memory://"


@pytest.fixture
def server(store_url, tmp_path):
    """The conftest's server, always serving the newest distribution (``refresh_s=0``): the propensities checked
    here are those of the state after every reward sent so far."""
    settings = Settings(
        store=store_url,
        port=0,
        sweep_interval_s=0.05,
        admin_token=None,
        client_tokens=(),
        tune_interpreter=False,
        refresh_s=0,
    )
    with running(settings) as base_url:
        yield base_url


def register(http, name="hero", share=0.3, policy=CANDIDATE, **fields) -> dict:
    response = http.post(f"/v1/experiments/{name}/candidates", json={"policy": policy, "share": share, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def decide(http, units, name="hero") -> list[dict]:
    answers = []
    for start in range(0, len(units), 1000):
        body = {"requests": [{} if unit is None else {"unit": unit} for unit in units[start : start + 1000]]}
        response = http.post(f"/v1/experiments/{name}/decisions/batch", json=body)
        assert response.status_code == 200, response.text
        answers.extend(response.json()["decisions"])
    return answers


def reward(http, decisions, values, name="hero") -> None:
    rewards = [{"decision_id": d["decision_id"], "value": v} for d, v in zip(decisions, values, strict=True)]
    for start in range(0, len(rewards), 1000):
        response = http.post(f"/v1/experiments/{name}/rewards/batch", json={"rewards": rewards[start : start + 1000]})
        assert response.status_code == 200, response.text
        assert all(r["status"] == 200 and r["applied"] for r in response.json()["results"]), response.text


def events(http, name="hero") -> list[dict]:
    return http.get(f"/v1/experiments/{name}/events").json()


def within_binomial(k: int, n: int, p: float, z: float = 4.5) -> bool:
    return abs(k - n * p) <= z * math.sqrt(n * p * (1 - p))


def test_the_candidate_serves_its_share_of_units_and_a_unit_keeps_its_policy(http, create):
    create(http, policy={"name": "thompson", "params": {}})
    candidate = register(http, share=0.3)
    assert candidate["share"] == 0.3 and candidate["comparison"]["verdict"] == "waiting"
    units = [f"user-{i}" for i in range(4000)]
    first = decide(http, units)
    served = [d["policy"] for d in first]
    assert set(served) == {"current", candidate["id"]}
    tried = sum(policy == candidate["id"] for policy in served)
    assert within_binomial(tried, len(units), 0.3), tried
    again = decide(http, units[::7])
    assert [d["policy"] for d in again] == served[::7]  # deterministic by unit
    # The split is independent of the arm: within each policy, the arms of a fresh state are a third each.
    for policy in set(served):
        arms = [d["arm"] for d in first if d["policy"] == policy]
        assert all(within_binomial(arms.count(arm), len(arms), 1 / 3) for arm in ARMS), policy
    # Without a unit: a draw from the experiment's stream, the same share.
    anonymous = decide(http, [None] * 3000)
    assert within_binomial(sum(d["policy"] == candidate["id"] for d in anonymous), 3000, 0.3)
    log = http.get("/v1/experiments/hero/log", params={"format": "csv"}).text.splitlines()
    header = log[0].split(",")
    assert header[-1] == "policy"
    assert sum(line.endswith("," + candidate["id"]) for line in log[1:]) == tried + sum(
        d["policy"] == candidate["id"] for d in again + anonymous
    )


def test_propensities_are_the_serving_policys_and_rewards_teach_only_it(http, create):
    """A known sequence: each policy's model equals Bandit.update_many on the rewards of the decisions it served;
    every propensity is the serving policy's exact probability of the arm at that point."""
    create(http, policy={"name": "thompson", "params": {}})
    # min_rewards out of reach: this candidate is worse (it explores more), and is not to be rolled back here.
    candidate = register(
        http, share=0.4, policy={"name": "epsilon_greedy", "params": {"epsilon": 0.3}}, min_rewards=10**9
    )
    current = Bandit(ARMS, make_policy({"name": "thompson", "params": {}}))
    tried = Bandit(ARMS, make_policy({"name": "epsilon_greedy", "params": {"epsilon": 0.3}}))
    pay = {"a": 1.0, "b": 0.0, "c": 0.0}
    for round_ in range(4):
        decisions = decide(http, [f"u{round_}-{i}" for i in range(300)])
        expected = {"current": current.probabilities(), candidate["id"]: tried.probabilities()}
        for d in decisions:
            assert d["propensity"] == pytest.approx(expected[d["policy"]][d["arm"]], abs=1e-9), d
        values = [pay[d["arm"]] for d in decisions]
        reward(http, decisions, values)
        for bandit, policy in ((current, "current"), (tried, candidate["id"])):
            mine = [(d["arm"], v) for d, v in zip(decisions, values, strict=True) if d["policy"] == policy]
            bandit.update_many([arm for arm, _ in mine], [v for _, v in mine])
    model = http.get("/v1/experiments/hero/model").json()["model"]
    served = Bandit.from_dict(model)
    assert served.pulls.tolist() == current.pulls.tolist()
    for key, value in current.state.items():
        np.testing.assert_array_equal(served.state[key], value)
    comparison = http.get("/v1/experiments/hero/candidates").json()["comparison"]
    assert comparison["candidate"]["rewards"] == int(tried.pulls.sum())
    assert comparison["current"]["rewards"] == int(current.pulls.sum())
    assert comparison["candidate"]["mean"] == pytest.approx(tried.reward_sums.sum() / tried.pulls.sum())
    assert comparison["candidate"]["interval"] == "anytime"
    # Promoted: the experiment's policy is the candidate's, with exactly what it learned, at a new version.
    version = http.get("/v1/experiments/hero").json()["policy_version"]
    promoted = http.post("/v1/experiments/hero/candidates/promote")
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["policy"]["name"] == "epsilon_greedy" and promoted.json()["policy_version"] == version + 1
    served = Bandit.from_dict(http.get("/v1/experiments/hero/model").json()["model"])
    assert served.pulls.tolist() == tried.pulls.tolist()
    for key, value in tried.state.items():
        np.testing.assert_array_equal(served.state[key], value)
    assert http.get("/v1/experiments/hero/candidates").status_code == 404
    assert [d["policy"] for d in decide(http, ["x", "y", "z"])] == ["current"] * 3
    kinds = [event["kind"] for event in events(http)]
    assert "candidate_registered" in kinds and kinds[-1] == "candidate_promoted"


def test_a_reward_after_its_policy_is_gone_is_recorded_not_learned(http, create):
    create(http, policy={"name": "thompson", "params": {}})
    candidate = register(http, share=0.5)
    decisions = decide(http, [f"u{i}" for i in range(200)])
    assert http.delete("/v1/experiments/hero/candidates").status_code == 200
    before = Bandit.from_dict(http.get("/v1/experiments/hero/model").json()["model"]).pulls.sum()
    response = http.post(
        "/v1/experiments/hero/rewards/batch",
        json={"rewards": [{"decision_id": d["decision_id"], "value": 1.0} for d in decisions]},
    )
    applied = {d["decision_id"]: r["applied"] for d, r in zip(decisions, response.json()["results"], strict=True)}
    assert all(applied[d["decision_id"]] == (d["policy"] == "current") for d in decisions)
    after = Bandit.from_dict(http.get("/v1/experiments/hero/model").json()["model"]).pulls.sum()
    assert after - before == sum(d["policy"] == "current" for d in decisions)
    assert events(http)[-1]["kind"] == "candidate_removed" and events(http)[-1]["candidate"] == candidate["id"]


def simulate(http, rates: dict[str, float], rounds: int, seed: int = 0) -> list[dict]:
    """Decide for fresh units and reward each decision with probability ``rates[policy]`` until the candidate
    is gone or ``rounds`` pass; returns the candidate's last description."""
    rng = np.random.default_rng(seed)
    seen: list[dict] = []
    for round_ in range(rounds):
        decisions = decide(http, [f"r{round_}-{i}" for i in range(200)])
        values = [
            float(rng.random() < rates["current" if d["policy"] == "current" else "candidate"]) for d in decisions
        ]
        reward(http, decisions, values)
        described = http.get("/v1/experiments/hero/candidates")
        if described.status_code == 404:
            return seen
        seen.append(described.json())
    return seen


def test_a_credibly_worse_candidate_is_rolled_back(http, create):
    create(http, policy={"name": "thompson", "params": {}})
    candidate = register(http, share=0.5, min_rewards=50)
    seen = simulate(http, {"current": 0.8, "candidate": 0.2}, rounds=20)
    assert len(seen) < 20, "the candidate was never rolled back"
    assert all(s["comparison"]["verdict"] in ("waiting", "running") for s in seen)
    event = events(http)[-1]
    assert event["kind"] == "candidate_rolled_back" and event["candidate"] == candidate["id"]
    assert event["reason"] == "credibly_worse"
    figures = event["comparison"]
    assert figures["candidate"]["high"] < figures["current"]["low"]
    assert min(figures["candidate"]["rewards"], figures["current"]["rewards"]) >= 50
    assert {d["policy"] for d in decide(http, [f"after-{i}" for i in range(100)])} == {"current"}


def test_a_candidate_below_its_floor_is_rolled_back(http, create):
    create(http, policy={"name": "thompson", "params": {}})
    register(http, share=0.5, min_rewards=50, min_reward=0.6)
    seen = simulate(http, {"current": 0.3, "candidate": 0.3}, rounds=20, seed=1)
    assert len(seen) < 20
    event = events(http)[-1]
    assert event["kind"] == "candidate_rolled_back" and event["reason"] == "guardrail"
    assert event["comparison"]["candidate"]["high"] < 0.6


def test_a_good_candidate_keeps_running(http, create):
    create(http, policy={"name": "thompson", "params": {}})
    register(http, share=0.5, min_rewards=50)
    seen = simulate(http, {"current": 0.5, "candidate": 0.5}, rounds=6, seed=2)
    assert len(seen) == 6 and seen[-1]["comparison"]["verdict"] == "running"


@pytest.mark.parametrize("share", [0, 1, -0.1, 1.5, "NaN"])
def test_a_share_outside_zero_one_is_422_naming_it(http, create, share):
    create(http)
    body = '{"policy": {"name": "ucb1"}, "share": ' + str(share) + "}"
    response = http.post("/v1/experiments/hero/candidates", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert "share" in response.text
    assert http.get("/v1/experiments/hero/candidates").status_code == 404


def test_candidate_conflicts_and_absences(http, create):
    create(http, policy={"name": "thompson", "params": {}})
    assert http.get("/v1/experiments/hero/candidates").status_code == 404
    assert http.post("/v1/experiments/hero/candidates/promote").status_code == 404
    assert http.delete("/v1/experiments/hero/candidates").status_code == 404
    assert http.post("/v1/experiments/nope/candidates", json={"policy": CANDIDATE, "share": 0.1}).status_code == 404
    # A policy that cannot learn the experiment's rewards, or wants contexts it does not get: 422 naming policy.
    for policy in ({"name": "linucb", "params": {}}, {"name": "nope"}):
        response = http.post("/v1/experiments/hero/candidates", json={"policy": policy, "share": 0.1})
        assert response.status_code == 422 and "policy" in response.text, response.text
    register(http)
    again = http.post("/v1/experiments/hero/candidates", json={"policy": CANDIDATE, "share": 0.2})
    assert again.status_code == 409 and "already" in again.text
    arms = http.patch("/v1/experiments/hero/arms", json={"add": ["d"]})
    assert arms.status_code == 409 and "candidate" in arms.text
    create(http, "sticky", sticky=True)
    sticky = http.post("/v1/experiments/sticky/candidates", json={"policy": CANDIDATE, "share": 0.2})
    assert sticky.status_code == 409 and "sticky" in sticky.text


def test_the_candidate_survives_a_restart_with_what_it_learned(tmp_path, sqlite_url):
    """SQLite: the candidate's arrays are checkpointed and learned again from the rewards after it."""
    import httpx

    settings = Settings(store=sqlite_url, port=0, admin_token=None, client_tokens=(), tune_interpreter=False)
    with running(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        http.post("/v1/experiments", json={"name": "hero", "arms": ARMS, "policy": {"name": "thompson"}})
        register(http, share=0.5)
        decisions = decide(http, [f"u{i}" for i in range(400)])
        reward(http, decisions, [float(d["arm"] == "a") for d in decisions])
        before = http.get("/v1/experiments/hero/candidates").json()
    with running(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        after = http.get("/v1/experiments/hero/candidates").json()
        assert after == before
        served = decide(http, [f"u{i}" for i in range(400)])
        assert [d["policy"] for d in served] == [d["policy"] for d in decisions]


@pytest.fixture
def on_redis(shared_store, tmp_path):
    """(settings of a server on the shared Redis, ``learned(http)``: one learner pass, then wait until the server
    serves the version it stored)."""
    import time

    from banditkit.service.learner import Learner
    from banditkit.service.stores.redis_keys import Keys

    url, prefix, client = shared_store
    settings = Settings(
        store=url,
        port=0,
        admin_token=None,
        client_tokens=(),
        tune_interpreter=False,
        model_poll_s=0.01,
        refresh_s=0,
        spool_dir=tmp_path / "spool",
    )
    learner = Learner.from_url(url)

    def learned(http) -> None:
        learner.step()
        stored = int(client.hget(Keys.of(prefix, "hero").meta, "version"))
        deadline = time.monotonic() + 10.0
        while http.get("/v1/experiments/hero").json()["policy_version"] < stored:
            assert time.monotonic() < deadline
            time.sleep(0.01)

    yield settings, learned
    learner.close()


def test_on_redis_the_learner_teaches_each_reward_to_the_policy_that_served_it(on_redis):
    """Workers only claim rewards on Redis; the learner routes each to the experiment's policy or its candidate."""
    import httpx

    settings, learned = on_redis
    with running(settings) as base, httpx.Client(base_url=base, timeout=30) as http:
        http.post("/v1/experiments", json={"name": "hero", "arms": ARMS, "policy": {"name": "thompson"}})
        candidate = register(http, share=0.5, policy={"name": "kl_ucb", "params": {}}, min_rewards=10**9)
        current = Bandit(ARMS, make_policy({"name": "thompson", "params": {}}))
        tried = Bandit(ARMS, make_policy({"name": "kl_ucb", "params": {}}))
        for round_ in range(2):
            decisions = decide(http, [f"u{round_}-{i}" for i in range(300)])
            expected = {"current": current.probabilities(), candidate["id"]: tried.probabilities()}
            for d in decisions:
                assert d["propensity"] == pytest.approx(expected[d["policy"]][d["arm"]], abs=1e-9), d
            values = [float(d["arm"] != "b") for d in decisions]
            reward(http, decisions, values)
            learned(http)
            for bandit, policy in ((current, "current"), (tried, candidate["id"])):
                mine = [(d["arm"], v) for d, v in zip(decisions, values, strict=True) if d["policy"] == policy]
                bandit.update_many([arm for arm, _ in mine], [v for _, v in mine])
        served = Bandit.from_dict(http.get("/v1/experiments/hero/model").json()["model"])
        assert served.pulls.tolist() == current.pulls.tolist()
        for key, value in current.state.items():
            np.testing.assert_array_equal(served.state[key], value)
        comparison = http.get("/v1/experiments/hero/candidates").json()["comparison"]
        assert comparison["candidate"]["rewards"] == int(tried.pulls.sum()) > 0
        assert http.post("/v1/experiments/hero/candidates/promote").status_code == 200
        served = Bandit.from_dict(http.get("/v1/experiments/hero/model").json()["model"])
        assert served.policy.name == "kl_ucb" and served.pulls.tolist() == tried.pulls.tolist()
        for key, value in tried.state.items():
            np.testing.assert_array_equal(served.state[key], value)


def test_on_redis_a_worse_candidate_is_rolled_back_once_its_rewards_are_learned(on_redis):
    """The workers compare when they follow a model the learner moved; the rollback is written once."""
    import time

    import httpx

    settings, learned = on_redis
    rng = np.random.default_rng(4)
    with running(settings) as base, httpx.Client(base_url=base, timeout=30) as http:
        http.post("/v1/experiments", json={"name": "hero", "arms": ARMS, "policy": {"name": "thompson"}})
        candidate = register(http, share=0.5, min_rewards=50)
        for round_ in range(20):
            decisions = decide(http, [f"r{round_}-{i}" for i in range(200)])
            rates = {"current": 0.8, candidate["id"]: 0.2}
            reward(http, decisions, [float(rng.random() < rates[d["policy"]]) for d in decisions])
            learned(http)
            deadline = time.monotonic() + 2.0
            while http.get("/v1/experiments/hero/candidates").status_code == 200 and time.monotonic() < deadline:
                if http.get("/v1/experiments/hero/candidates").json()["comparison"]["verdict"] != "worse":
                    break
                time.sleep(0.01)
            if http.get("/v1/experiments/hero/candidates").status_code == 404:
                break
        else:
            pytest.fail("the candidate was never rolled back")
        kinds = [event["kind"] for event in events(http)]
        assert kinds.count("candidate_rolled_back") == 1
        assert events(http)[-1]["reason"] == "credibly_worse"


def test_metrics_count_decisions_by_serving_policy_and_rollbacks(http, create):
    create(http, policy={"name": "thompson", "params": {}})
    register(http, share=0.5, min_rewards=50)
    decisions = decide(http, [f"m{i}" for i in range(400)])
    tried = sum(d["policy"] != "current" for d in decisions)
    simulate(http, {"current": 0.9, "candidate": 0.1}, rounds=20, seed=3)
    text = http.get("/metrics").text
    lines = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line[:1] != "#"}
    by_policy = {
        policy: lines[f'banditkit_decisions_by_policy_total{{experiment="hero",policy="{policy}"}}']
        for policy in ("current", "candidate")
    }
    assert by_policy["candidate"] >= tried and sum(by_policy.values()) >= 400 + 200
    assert lines['banditkit_candidate_rollbacks_total{experiment="hero",reason="credibly_worse"}'] == 1


def test_a_contextual_candidate_logs_its_own_probabilities_for_each_context(http, create):
    create(http, policy={"name": "linucb", "params": {}}, n_features=2)
    candidate = register(http, share=0.5, policy={"name": "linucb", "params": {"alpha": 3.0}}, min_rewards=10**9)
    rng = np.random.default_rng(5)
    contexts = rng.normal(size=(200, 2)).round(3).tolist()
    body = {"requests": [{"unit": f"c{i}", "context": c} for i, c in enumerate(contexts)]}
    decisions = http.post("/v1/experiments/hero/decisions/batch", json=body).json()["decisions"]
    assert {d["policy"] for d in decisions} == {"current", candidate["id"]}
    reward(http, decisions, [float(d["arm"] == "a") for d in decisions])
    decisions = http.post("/v1/experiments/hero/decisions/batch", json=body).json()["decisions"]
    log = {
        row.split(",")[0]: row
        for row in http.get("/v1/experiments/hero/log", params={"format": "csv"}).text.splitlines()
    }
    for d in decisions:
        assert log[d["decision_id"]].endswith("," + d["policy"])
    served = {"current": Bandit.from_dict(http.get("/v1/experiments/hero/model").json()["model"])}
    assert http.post("/v1/experiments/hero/candidates/promote").status_code == 200
    served[candidate["id"]] = Bandit.from_dict(http.get("/v1/experiments/hero/model").json()["model"])
    assert served[candidate["id"]].policy.get_params()["alpha"] == 3.0
    for d, context in zip(decisions, contexts, strict=True):  # each policy's model gives the logged probability
        assert d["propensity"] == pytest.approx(served[d["policy"]].probabilities(context=context)[d["arm"]], abs=1e-9)


def test_default_rewards_at_window_close_teach_the_policy_that_served(http, create):
    import time

    create(http, policy={"name": "thompson", "params": {}}, attribution_window_s=0.2, default_reward=0.0)
    candidate = register(http, share=0.5, min_rewards=10**9)
    decisions = decide(http, [f"w{i}" for i in range(200)])
    tried = sum(d["policy"] == candidate["id"] for d in decisions)
    deadline = time.monotonic() + 10.0
    while True:
        comparison = http.get("/v1/experiments/hero/candidates").json()["comparison"]
        if comparison["current"]["rewards"] + comparison["candidate"]["rewards"] == 200:
            break
        assert time.monotonic() < deadline, comparison
        time.sleep(0.05)
    assert comparison["candidate"]["rewards"] == tried and comparison["candidate"]["mean"] == 0.0


def test_an_arm_disabled_for_the_experiment_is_not_served_by_its_candidate(http, create):
    create(
        http,
        policy={"name": "thompson", "params": {}},
        supervisor={"remediation": {"slo_breach": "disable_arm"}},
    )
    candidate = register(http, share=0.5, min_rewards=10**9)
    alert = http.post("/v1/experiments/hero/alerts", json={"kind": "slo_breach", "arm": "b", "state": "open"})
    assert alert.status_code == 200 and alert.json()["written"], alert.text
    decisions = decide(http, [f"d{i}" for i in range(300)])
    assert {d["policy"] for d in decisions} == {"current", candidate["id"]}
    assert "b" not in {d["arm"] for d in decisions}
    assert http.get("/v1/experiments/hero/candidates").json()["id"] == candidate["id"]

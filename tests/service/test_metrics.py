"""GET /metrics: every metric moves as it should under a scripted sequence, scraped over real HTTP and parsed with
prometheus_client's own parser; tokens, the off switch, bounded arm labels, and two real workers whose counts add
up (with the Redis learning loop's gauges)."""

from __future__ import annotations

import json
import math
import re
import textwrap
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis_servers import ServeProcess

from banditkit.service import Settings, create_app
from banditkit.service.learner import Learner
from banditkit.service.metrics import (
    BUCKETS,
    FALLBACK_REASONS,
    OTHER_ARMS,
    REWARD_OUTCOMES,
    Counts,
    ExperimentView,
    MetricFamilies,
    Metrics,
    exposition,
)
from banditkit.service.runner import running
from banditkit.service.stores.base import DecisionRecord, LoopHealth, StoreUnavailableError

Samples = dict[tuple[str, frozenset], float]
DECIDE = "/v1/experiments/{name}/decisions"
REWARD = "/v1/experiments/{name}/rewards"
#: The attribution window of the two-worker test's experiment.
WINDOW_S = 2.0


def scrape(http: httpx.Client, **headers: str) -> Samples:
    """Every sample of ``GET /metrics``, parsed by prometheus_client; names and types checked on the way."""
    response = http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        assert family.name.startswith("banditkit_"), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name.endswith(("_total", "_created")), sample.name
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name{labels}``; a KeyError naming it when it is absent."""
    key = (name, frozenset(labels.items()))
    if key not in samples:
        raise KeyError(f"{name}{labels} not in the scrape")
    return samples[key]


def so_far(samples: Samples, name: str, **labels: str) -> float:
    """A counter that appears once it happens: its sample, 0 while absent."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: Samples, name: str, **labels: str) -> dict[frozenset, float]:
    """Every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return {key: v for (sample, key), v in samples.items() if sample == name and wanted <= key}


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much ``name{labels}`` rose between two scrapes (a series absent before counts from 0)."""
    return value(after, name, **labels) - so_far(before, name, **labels)


@pytest.fixture
def served(tmp_path):
    """A memory-store server in this process with 3 arm labels per experiment: (http client, app)."""
    settings = Settings(
        store="memory://",
        port=0,
        sweep_interval_s=0.05,
        tune_interpreter=False,
        metrics_max_arms=3,
        refresh_s=0.0,  # every decision is drawn from the newest model's distribution
        spool_dir=tmp_path / "spool",
    )
    app = create_app(settings)
    with running(settings, app=app) as base, httpx.Client(base_url=base, timeout=30.0) as http:
        yield http, app


def create(http: httpx.Client, name: str, arms: list[str], **fields) -> None:
    response = http.post("/v1/experiments", json={"name": name, "arms": arms, **fields})
    assert response.status_code == 201, response.text


def test_each_metric_moves_as_it_should_under_a_scripted_sequence(served, monkeypatch):
    http, app = served
    create(
        http,
        "hero",
        ["a", "b", "c"],
        guardrails={"default_arm": "a"},
        attribution_window_s=1.0,
        default_reward=0.0,
    )
    start = scrape(http)
    # Every arm of a served experiment is there from the start, at 0; fallbacks and rewards once they happen.
    assert {arm: value(start, "banditkit_decisions_total", experiment="hero", arm=arm) for arm in "abc"} == {
        "a": 0,
        "b": 0,
        "c": 0,
    }
    assert not series(start, "banditkit_fallbacks_total", experiment="hero")
    assert not series(start, "banditkit_rewards_total", experiment="hero")
    assert value(start, "banditkit_policy_version", experiment="hero") == 0
    assert not series(start, "banditkit_selection_share", experiment="hero")  # nothing served yet
    assert not series(start, "banditkit_reward_rate", experiment="hero")

    # Decisions: 10 single calls and a batch of 5, counted per arm as answered.
    answers = [http.post(DECIDE.format(name="hero"), json={"unit": f"u{i}"}).json() for i in range(10)]
    batch = http.post(DECIDE.format(name="hero") + "/batch", json={"requests": [{}] * 5})
    answers += batch.json()["decisions"]
    after = scrape(http)
    served_arms = Counter(answer["arm"] for answer in answers)
    for arm in "abc":
        assert moved(start, after, "banditkit_decisions_total", experiment="hero", arm=arm) == served_arms[arm]
    route = {"route": "/v1/experiments/{name}/decisions", "method": "POST", "status": "200"}
    assert moved(start, after, "banditkit_http_requests_total", **route) == 10
    assert value(after, "banditkit_http_request_duration_seconds_count", **route) == 10
    assert value(after, "banditkit_http_request_duration_seconds_bucket", **route, le="+Inf") == 10
    buckets = [value(after, "banditkit_http_request_duration_seconds_bucket", **route, le=str(b)) for b in BUCKETS]
    assert buckets == sorted(buckets) and value(after, "banditkit_http_request_duration_seconds_sum", **route) > 0
    batch_route = {**route, "route": "/v1/experiments/{name}/decisions/batch"}
    assert moved(start, after, "banditkit_http_requests_total", **batch_route) == 1
    assert value(after, "banditkit_store_latency_seconds_count", operation="log_decisions") == 11
    shares = {arm: value(after, "banditkit_selection_share", experiment="hero", arm=arm) for arm in "abc"}
    assert shares == pytest.approx({arm: 1 / 3 for arm in "abc"})  # Thompson sampling before any reward
    assert value(after, "banditkit_selection_entropy", experiment="hero") == pytest.approx(math.log(3))
    assert not series(after, "banditkit_exploration_share", experiment="hero")  # no arm has a mean yet

    # Rewards: applied, repeated, conflicting, unknown, out of range.
    first, rest = answers[0], answers[1:]
    path = REWARD.format(name="hero")
    statuses = [
        http.post(path, json={"decision_id": first["decision_id"], "value": v}).status_code for v in (1.0, 1.0, 0.0)
    ]
    statuses.append(http.post(path, json={"decision_id": "nope", "value": 1.0}).status_code)
    statuses.append(http.post(path, json={"decision_id": rest[0]["decision_id"], "value": 2.0}).status_code)
    assert statuses == [200, 200, 409, 404, 422]
    rewarded = scrape(http)
    for outcome, count in (("applied", 1), ("repeated", 1), ("conflicting", 1), ("not_found", 1), ("invalid", 1)):
        assert moved(after, rewarded, "banditkit_rewards_total", experiment="hero", outcome=outcome) == count
    assert not series(rewarded, "banditkit_rewards_total", experiment="hero", outcome="late")
    assert {dict(key)["outcome"] for key in series(rewarded, "banditkit_rewards_total")} <= set(REWARD_OUTCOMES)
    conflict = {"route": "/v1/experiments/{name}/rewards", "method": "POST", "status": "409"}
    assert value(rewarded, "banditkit_http_requests_total", **conflict) == 1
    # the first reward, its retry and the conflicting one reach the store (which holds the reward to compare with)
    assert value(rewarded, "banditkit_store_latency_seconds_count", operation="commit_rewards") == 3
    assert value(rewarded, "banditkit_policy_version", experiment="hero") == 1
    best = first["arm"]
    assert series(rewarded, "banditkit_reward_rate", experiment="hero") == {
        frozenset({("experiment", "hero"), ("arm", best)}): 1.0
    }
    http.post(DECIDE.format(name="hero"), json={}).raise_for_status()  # serves the new version's distribution
    rewarded = scrape(http)
    shares = {arm: value(rewarded, "banditkit_selection_share", experiment="hero", arm=arm) for arm in "abc"}
    assert sum(shares.values()) == pytest.approx(1.0) and shares[best] > 1 / 3
    assert value(rewarded, "banditkit_exploration_share", experiment="hero") == pytest.approx(1 - shares[best])
    entropy = -sum(p * math.log(p) for p in shares.values() if p > 0)
    assert value(rewarded, "banditkit_selection_entropy", experiment="hero") == pytest.approx(entropy)

    # The windows close: every decision without a reward gets the default one, and a reward after it is late.
    unrewarded = len(answers)  # the 15 decisions and the one just made, less the one rewarded
    deadline = time.monotonic() + 10
    while (
        so_far(scrape(http), "banditkit_rewards_total", experiment="hero", outcome="defaulted") < unrewarded
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert http.post(path, json={"decision_id": rest[1]["decision_id"], "value": 1.0}).status_code == 410
    closed = scrape(http)
    assert value(closed, "banditkit_rewards_total", experiment="hero", outcome="defaulted") == unrewarded
    assert moved(rewarded, closed, "banditkit_rewards_total", experiment="hero", outcome="late") == 1
    assert value(closed, "banditkit_policy_version", experiment="hero") > 1

    # Fallbacks, one reason at a time.
    engine = app.state.engine
    http.patch("/v1/experiments/hero/arms", json={"disable": ["b"]}).raise_for_status()
    answer = http.post(DECIDE.format(name="hero"), json={"allowed": ["b"]}).json()
    assert answer["fallback"] and answer["arm"] == "a"

    def broken(*args, **kwargs):
        raise RuntimeError("the policy broke")

    monkeypatch.setattr(engine.experiments["hero"].cache, "get", broken)
    assert http.post(DECIDE.format(name="hero"), json={}).json()["fallback"]
    monkeypatch.undo()
    store = engine.store
    append = store.append_decisions
    failures = iter([StoreUnavailableError("the store is unavailable")])

    def once_unavailable(rows, assignments=None):
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return append(rows, assignments)

    monkeypatch.setattr(store, "append_decisions", once_unavailable)
    assert http.post(DECIDE.format(name="hero"), json={}).json()["fallback"]
    monkeypatch.undo()
    create(
        http,
        "ruin",
        ["x", "y"],
        policy={"name": "thompson", "params": {"reward_range": [-1, 1]}},
        guardrails={"default_arm": "x", "ruin_threshold": -0.5},
    )
    decision = http.post(DECIDE.format(name="ruin"), json={}).json()
    http.post(REWARD.format(name="ruin"), json={"decision_id": decision["decision_id"], "value": -1.0})
    deadline = time.monotonic() + 10
    while not http.post(DECIDE.format(name="ruin"), json={}).json()["fallback"]:  # the abort is stored first
        assert time.monotonic() < deadline
        time.sleep(0.02)
    fell = scrape(http)
    for experiment, reason in (
        ("hero", "no_active_arm"),
        ("hero", "policy_error"),
        ("hero", "store_unavailable"),
        ("ruin", "aborted"),
    ):
        assert value(fell, "banditkit_fallbacks_total", experiment=experiment, reason=reason) == 1, reason
    assert not series(fell, "banditkit_fallbacks_total", experiment="hero", reason="aborted")
    assert {dict(key)["reason"] for key in series(fell, "banditkit_fallbacks_total")} == set(FALLBACK_REASONS)
    # every decision answered is counted once, the fallbacks on the default arm
    answered = len(answers) + 1 + 3
    assert sum(series(fell, "banditkit_decisions_total", experiment="hero").values()) == answered

    # Requests FastAPI answers, and those no route matches, are counted too.
    http.get("/v1/experiments/hero/log").raise_for_status()
    assert http.get("/nowhere").status_code == 404
    twice = http.get("/v1/health", headers=[("Authorization", "Bearer x"), ("Authorization", "Bearer y")])
    assert twice.status_code == 400
    last = scrape(http)
    log = {"route": "/v1/experiments/{name}/log", "method": "GET", "status": "200"}
    assert value(last, "banditkit_http_requests_total", **log) == 1
    assert value(last, "banditkit_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert value(last, "banditkit_http_requests_total", route="unmatched", method="GET", status="400") == 1
    scrapes = {"route": "/metrics", "method": "GET", "status": "200"}
    assert moved(fell, last, "banditkit_http_requests_total", **scrapes) == 1


def test_arms_beyond_the_cap_share_one_label(served):
    http, _ = served
    arms = [f"arm{i:02d}" for i in range(25)]
    create(http, "wide", arms[::-1])  # labels go to the first arms by name, whatever the order of creation
    answers = http.post(DECIDE.format(name="wide") + "/batch", json={"requests": [{}] * 500}).json()["decisions"]
    samples = scrape(http)
    decisions = series(samples, "banditkit_decisions_total", experiment="wide")
    labels = {dict(key)["arm"] for key in decisions}
    assert labels == {"arm00", "arm01", "arm02", OTHER_ARMS}
    counted = Counter(answer["arm"] for answer in answers)
    for arm in ("arm00", "arm01", "arm02"):
        assert value(samples, "banditkit_decisions_total", experiment="wide", arm=arm) == counted[arm]
    assert sum(decisions.values()) == 500
    shares = series(samples, "banditkit_selection_share", experiment="wide")
    assert {dict(key)["arm"] for key in shares} == labels
    assert value(samples, "banditkit_selection_share", experiment="wide", arm=OTHER_ARMS) == pytest.approx(22 / 25)


def test_metrics_need_a_token_when_tokens_are_configured(tmp_path):
    settings = Settings(
        store="memory://", port=0, admin_token="admin-secret", client_tokens="client-secret", tune_interpreter=False
    )
    with running(settings) as base, httpx.Client(base_url=base, timeout=30.0) as http:
        refused = http.get("/metrics")
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert http.get("/metrics", headers={"Authorization": "Bearer guess"}).status_code == 401
        for token in ("client-secret", "admin-secret"):
            scrape(http, Authorization=f"Bearer {token}")


def test_metrics_can_be_turned_off():
    settings = Settings(store="memory://", port=0, metrics=False, tune_interpreter=False)
    app = create_app(settings)
    assert "/metrics" not in app.openapi()["paths"]
    with running(settings, app=app) as base, httpx.Client(base_url=base, timeout=30.0) as http:
        assert http.get("/metrics").status_code == 404
        http.post("/v1/experiments", json={"name": "hero", "arms": ["a", "b"]}).raise_for_status()
        http.post(DECIDE.format(name="hero"), json={}).raise_for_status()
        assert app.state.engine.metrics is None


def test_two_workers_add_up_and_the_learning_loop_is_reported(tmp_path, processes, shared_store):
    """``serve --workers 2`` on Redis: the decisions and rewards both workers answered are counted once each,
    whichever worker answers the scrape; the reward stream's gauges follow a learner's pass."""
    url = shared_store[0]
    server = processes(
        ServeProcess(url, tmp_path / "serve.log", workers=2, env={"BANDITKIT_SPOOL_DIR": str(tmp_path / "spool")})
    ).start()
    base = server.base_url
    # The folder the command made for its workers' counts (no metrics_dir given), read from a worker's environment.
    environ = Path(f"/proc/{server.worker_pids()[0]}/environ").read_bytes().split(b"\0")
    folder = Path(next(v for v in environ if v.startswith(b"BANDITKIT_METRICS_DIR=")).split(b"=", 1)[1].decode())
    assert folder.name.startswith("banditkit-metrics-")
    response = httpx.post(
        f"{base}/v1/experiments",
        json={"name": "hero", "arms": ["a", "b"], "attribution_window_s": WINDOW_S, "default_reward": 0.0},
    )
    assert response.status_code == 201, response.text
    # A new connection per request, until both workers have answered some (each writes its counts to a file).
    answers: list[dict] = []
    deadline = time.monotonic() + 30
    while len(_workers_with_decisions(folder)) < 2 or len(answers) < 40:
        assert time.monotonic() < deadline, f"one worker answered every decision: {_counted(folder)}"
        answers.append(httpx.post(f"{base}{DECIDE.format(name='hero')}", json={}).json())
        time.sleep(0.01)
    for answer in answers[-10:]:  # within their window
        reward = {"decision_id": answer["decision_id"], "value": 1.0}
        assert httpx.post(f"{base}{REWARD.format(name='hero')}", json=reward).status_code == 200

    def settled(check) -> Samples:
        """Scrapes (new connections: either worker) until ``check`` holds for two in a row, at most 10 s."""
        deadline, streak = time.monotonic() + 10, 0
        while True:
            with httpx.Client(base_url=base, timeout=30.0) as http:
                samples = scrape(http)
            streak = streak + 1 if check(samples) else 0
            if streak == 2:
                return samples
            assert time.monotonic() < deadline, "the metrics did not settle"
            time.sleep(0.2)

    def decided(samples: Samples) -> float:
        return sum(series(samples, "banditkit_decisions_total", experiment="hero").values())

    samples = settled(
        lambda s: (
            decided(s) == len(answers)
            and so_far(s, "banditkit_rewards_total", experiment="hero", outcome="applied") == 10
        )
    )
    for arm in "ab":
        expected = sum(answer["arm"] == arm for answer in answers)
        assert value(samples, "banditkit_decisions_total", experiment="hero", arm=arm) == expected
    assert value(samples, "banditkit_reward_stream_length", experiment="hero") == 10
    assert value(samples, "banditkit_learner_lag_rewards", experiment="hero") == 10
    assert value(samples, "banditkit_reward_stream_pending", experiment="hero") == 0
    assert value(samples, "banditkit_reward_to_model_seconds", experiment="hero") > 0
    assert value(samples, "banditkit_policy_version", experiment="hero") == 0

    time.sleep(WINDOW_S)  # every window closes: the learner applies the rewards, then the default rewards
    learner = Learner.from_url(url)
    try:
        while learner.step().busy:
            pass
    finally:
        learner.close()
    samples = settled(
        lambda s: (
            so_far(s, "banditkit_rewards_total", experiment="hero", outcome="defaulted") == len(answers) - 10
            and value(s, "banditkit_policy_version", experiment="hero") >= 1
        )
    )
    assert value(samples, "banditkit_reward_stream_length", experiment="hero") == len(answers)
    assert value(samples, "banditkit_learner_lag_rewards", experiment="hero") == 0
    assert value(samples, "banditkit_reward_stream_pending", experiment="hero") == 0
    assert value(samples, "banditkit_reward_to_model_seconds", experiment="hero") == 0
    assert value(samples, "banditkit_reward_rate", experiment="hero", arm="a") >= 0
    server.stop()
    assert not folder.exists()  # the command removes the folder it made


def _counted(folder: Path) -> dict[str, int]:
    """Decisions per worker file in ``folder``."""
    counted = {}
    for path in folder.glob("banditkit-worker-*.json"):
        decisions = json.loads(path.read_text())["decisions"]
        counted[path.name] = sum(sum(arms.values()) for arms in decisions.values())
    return counted


def _workers_with_decisions(folder: Path) -> list[str]:
    return [name for name, count in _counted(folder).items() if count > 0]


def test_the_exposition_is_byte_for_byte_prometheus_clients():
    """The service writes the text format itself (several times faster); the same bytes as generate_latest, label
    values that need escaping included, and they parse back to the same values."""
    metrics = Metrics(max_arms=2)
    arms = ('quo"te', "back\\slash", "line\nfeed", "ünï", "plain")
    for experiment in ("hero", 'we"ird\\name'):
        records = [
            DecisionRecord(f"d{i}", 0.0, experiment, None, None, arms[i % 5], 0.2, {}, 1, i == 0) for i in range(9)
        ]
        metrics.decided(experiment, records, {"aborted": 1})
        metrics.rewarded(experiment, ["applied", "late", "applied"])
        metrics.alerted(experiment, "reward_drop", "open")
        metrics.candidate_event(experiment, "rolled_back", "credibly_worse")
        metrics.sourced(experiment, "changed")
    metrics.alerted("hero", "reward_drop", "resolved")
    metrics.request("/v1/experiments/{name}/decisions", "POST", 200, 0.0004)
    metrics.request("unmatched", "GET", 404, 20.0)
    metrics.store_latency("log_decisions", 0.001)
    views = [
        ExperimentView(
            "hero", 7, arms, np.array([1.0, 0, 2, 0, 4]), np.array([1.0, 0, 1, 0, 3]), (arms, np.full(5, 0.2))
        ),
        ExperimentView('we"ird\\name', 0, arms, np.zeros(5), np.zeros(5), None),
    ]
    loops = {"hero": LoopHealth(12, 3, None, 1.5, 4), 'we"ird\\name': LoopHealth(0, 0, 0, 0.0, 0)}
    families = MetricFamilies(metrics.totals(metrics.counts.copy()), views, loops, metrics.max_arms)
    text = exposition(families)
    assert text == generate_latest(families)
    parsed = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }
    assert value(parsed, "banditkit_decisions_total", experiment='we"ird\\name', arm="back\\slash") == 2
    assert value(parsed, "banditkit_decisions_total", experiment="hero", arm=OTHER_ARMS) == 5
    assert value(parsed, "banditkit_selection_share", experiment="hero", arm="line\nfeed") == pytest.approx(0.2)
    assert value(parsed, "banditkit_reward_rate", experiment="hero", arm=OTHER_ARMS) == pytest.approx(4 / 5)
    assert value(parsed, "banditkit_rewards_total", experiment="hero", outcome="defaulted") == 4
    # "kind/state" and "event/reason" keys become their labels
    assert value(parsed, "banditkit_alerts_total", experiment="hero", kind="reward_drop", state="resolved") == 1
    assert value(parsed, "banditkit_alerts_total", experiment='we"ird\\name', kind="reward_drop", state="open") == 1
    assert value(parsed, "banditkit_candidate_rollbacks_total", experiment="hero", reason="credibly_worse") == 1
    assert value(parsed, "banditkit_source_fetches_total", experiment="hero", outcome="changed") == 1
    assert value(parsed, "banditkit_decisions_by_policy_total", experiment="hero", policy="current") == 9
    assert value(parsed, "banditkit_reward_to_model_seconds", experiment="hero") == 1.5
    assert not series(parsed, "banditkit_learner_lag_rewards", experiment="hero")  # the store could not tell
    assert (
        value(
            parsed,
            "banditkit_http_request_duration_seconds_bucket",
            route="unmatched",
            method="GET",
            status="404",
            le="+Inf",
        )
        == 1
    )
    assert (
        value(
            parsed,
            "banditkit_http_request_duration_seconds_bucket",
            route="unmatched",
            method="GET",
            status="404",
            le="10.0",
        )
        == 0
    )


def test_counts_survive_their_file_and_add_up():
    """What a worker writes to its file reads back as written, and adds bucket by bucket."""
    metrics = Metrics()
    metrics.request("/metrics", "GET", 200, 0.003)
    metrics.decided("hero", [DecisionRecord("d", 0.0, "hero", None, None, "a", 1.0, {}, 1, True)], {"aborted": 1})
    metrics.rewarded("hero", ["applied"])
    metrics.store_latency("commit_rewards", 0.02)
    total = Counts.from_json(json.loads(json.dumps(metrics.counts.to_json())))
    total.add(metrics.counts)
    requests = total.requests[("/metrics", "GET", 200)]
    assert requests[BUCKETS.index(0.005)] == 2 and sum(requests[:-1]) == 2 and requests[-1] == pytest.approx(0.006)
    store = total.store["commit_rewards"]
    assert store[BUCKETS.index(0.025)] == 2 and sum(store[:-1]) == 2
    assert (total.decisions, total.fallbacks, total.rewards) == (
        {"hero": {"a": 2}},
        {"hero": {"aborted": 2}},
        {"hero": {"applied": 2}},
    )


MONITORING = Path(__file__).resolve().parents[2] / "docs" / "monitoring.md"


def test_docs_monitoring_lists_every_metric_and_its_yaml_loads():
    """docs/monitoring.md's table holds exactly the metrics served, with their labels; its scrape configuration and
    alert rules are valid YAML naming metrics that exist."""
    import yaml  # type: ignore[import-untyped]  # installed with the docs tools

    metrics = Metrics()  # one sample of every metric
    metrics.request("/metrics", "GET", 200, 0.001)
    metrics.store_latency("log_decisions", 0.001)
    metrics.decided("hero", [DecisionRecord("d", 0.0, "hero", None, None, "a", 1.0, {}, 1, True)], {"aborted": 1})
    metrics.rewarded("hero", ["applied"])
    metrics.alerted("hero", "slo_breach", "open")
    metrics.sourced("hero", "changed")
    metrics.candidate_event("hero", "candidate_rolled_back", "credibly_worse")
    view = ExperimentView("hero", 1, ("a", "b"), np.ones(2), np.ones(2), (("a", "b"), np.full(2, 0.5)))
    loops = {"hero": LoopHealth(1, 0, 0, 0.0, 0)}
    served = {}
    for family in MetricFamilies(metrics.counts, [view], loops, metrics.max_arms, {"hero": 1.5}).collect():
        name = family.name + "_total" if family.type == "counter" else family.name
        labels = set().union(*(sample.labels for sample in family.samples)) - {"le"}
        served[name] = (family.type, sorted(labels))
    text = MONITORING.read_text()
    rows = re.findall(r"^\| `(banditkit_\w+)` \| (\w+) \| ([^|]*) \|", text, flags=re.MULTILINE)
    documented = {name: (kind, sorted(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}
    assert documented == served
    blocks = re.findall(r"\n\n((?:    .*\n|\n)+)", text)
    loaded = [
        yaml.safe_load(textwrap.dedent(block)) for block in blocks if "scrape_configs" in block or "groups" in block
    ]
    assert loaded[0]["scrape_configs"][0]["authorization"]["type"] == "Bearer"
    rules = loaded[1]["groups"][0]["rules"]
    assert len(rules) == 3
    for rule in rules:
        used = set(re.findall(r"banditkit_\w+", rule["expr"]))
        assert used and used <= set(served), rule["alert"]

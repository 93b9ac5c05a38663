"""The supervisor: alerts written once with their remediation, kept across a restart, webhooks retried, 422s."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from banditkit.service import Settings
from banditkit.service.alerts import open_alerts
from banditkit.service.engine import Engine
from banditkit.service.errors import InvalidRequestError
from banditkit.service.runner import free_port, running
from banditkit.service.schemas import AlertRequest, DecisionRequest, ExperimentCreate, RewardRequest, SupervisorSpec
from banditkit.service.stores import open_store
from banditkit.service.supervisor import LogFollower, Webhook, transitions

CHECK_S = 0.2


def wait_for(condition, timeout_s: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def alert_events(http: httpx.Client, name: str, kind: str) -> list[dict]:
    events = http.get(f"/v1/experiments/{name}/events").json()
    return [event for event in events if event["kind"] == "alert" and event["alert"] == kind]


def test_an_slo_breach_disables_the_arm_once_and_the_remediation_survives_a_restart(server_process, sqlite_url):
    first = server_process(sqlite_url, check_interval_s=CHECK_S, tune_interpreter=False)
    spec = {
        "name": "hero",
        "arms": ["a", "b", "c"],
        "supervisor": {"min_reward": 0.5, "remediation": {"slo_breach": "disable_arm"}},
    }
    with httpx.Client(base_url=first.base_url, timeout=30.0) as http:
        assert http.post("/v1/experiments", json=spec).status_code == 201
        decided = http.post(
            "/v1/experiments/hero/decisions/batch", json={"requests": [{"allowed": ["c"]}] * 1000}
        ).json()["decisions"]
        rewards = [{"decision_id": d["decision_id"], "value": 0.0} for d in decided]
        assert http.post("/v1/experiments/hero/rewards/batch", json={"rewards": rewards}).status_code == 200
        wait_for(lambda: alert_events(http, "hero", "slo_breach"), what="the slo_breach alert")
        time.sleep(5 * CHECK_S)  # more checks: the alert is open, nothing more is written
        (event,) = alert_events(http, "hero", "slo_breach")
        assert (event["arm"], event["state"], event["remediation"], event["disabled"]) == (
            "c",
            "open",
            "disable_arm",
            ["c"],
        )
        arms = {arm["name"]: arm for arm in http.get("/v1/experiments/hero").json()["arms"]}
        assert not arms["c"]["active"] and arms["c"]["disabled_reason"].startswith("supervisor: slo_breach")
        assert any(
            line.startswith("slo_breach on arm 'c'") for line in http.get("/v1/experiments/hero/stats").json()["alerts"]
        )
        served = {http.post("/v1/experiments/hero/decisions", json={}).json()["arm"] for _ in range(50)}
        assert "c" not in served
        # The alert is a metric too: counted once, as opened.
        families = {family.name: family for family in text_string_to_metric_families(http.get("/metrics").text)}
        alerts = {
            tuple(sample.labels[key] for key in ("experiment", "kind", "state")): sample.value
            for sample in families["banditkit_alerts"].samples
            if sample.name == "banditkit_alerts_total"
        }
        assert alerts == {("hero", "slo_breach", "open"): 1.0}
    first.stop()

    second = server_process(sqlite_url, check_interval_s=CHECK_S, tune_interpreter=False)
    with httpx.Client(base_url=second.base_url, timeout=30.0) as http:
        arms = {arm["name"]: arm["active"] for arm in http.get("/v1/experiments/hero").json()["arms"]}
        assert arms == {"a": True, "b": True, "c": False}
        # The new process reads the open alert from the events: after several checks, still one event.
        wait_for(
            lambda: any("slo_breach" in line for line in http.get("/v1/experiments/hero/stats").json()["alerts"]),
            what="the restarted supervisor's first check",
        )
        time.sleep(3 * CHECK_S)
        assert len(alert_events(http, "hero", "slo_breach")) == 1


class Receiver:
    """A local HTTP server that takes webhook POSTs; started later than the service to play one that is down.

    It answers 503 to its first ``refuse`` POSTs (kept in ``refused``), 204 to the others (kept in ``bodies``).
    """

    def __init__(self, port: int, refuse: int = 0) -> None:
        self.port = port
        self.bodies: list[dict] = []
        self.refused: list[dict] = []
        received, refused = self.bodies, self.refused

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if len(refused) < refuse:
                    refused.append(body)
                    self.send_response(503)
                else:
                    received.append(body)
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_webhook_receiver_down_delays_the_alert_and_not_serving(tmp_path, sqlite_url):
    port = free_port()
    settings = Settings(
        store=sqlite_url, port=0, check_interval_s=CHECK_S, tune_interpreter=False, spool_dir=tmp_path / "spool"
    )
    spec = {
        "name": "hero",
        "arms": ["a", "b"],
        # Any read takes longer than a nanosecond: store_latency opens at the first check.
        "supervisor": {"max_store_latency_s": 1e-9, "webhook_url": f"http://127.0.0.1:{port}/hook"},
    }
    with running(settings) as base_url, httpx.Client(base_url=base_url, timeout=30.0) as http:
        assert http.post("/v1/experiments", json=spec).status_code == 201
        wait_for(lambda: alert_events(http, "hero", "store_latency"), what="the store_latency alert")
        latencies = []
        for _ in range(100):  # the receiver is down: each POST fails and is retried in the background
            started = time.perf_counter()
            assert http.post("/v1/experiments/hero/decisions", json={}).status_code == 200
            latencies.append(time.perf_counter() - started)
        assert np.median(latencies) < 0.02 and max(latencies) < 0.5
        receiver = Receiver(port)
        try:
            (payload,) = wait_for(lambda: receiver.bodies, timeout_s=20.0, what="the webhook POST")
            assert (payload["experiment"], payload["kind"], payload["alert"], payload["state"]) == (
                "hero",
                "alert",
                "store_latency",
                "open",
            )
            assert payload["remediation"] == "alert_only" and payload["value"] > payload["threshold"]
            time.sleep(4 * CHECK_S)
            assert len(receiver.bodies) == 1  # still open: not sent again
        finally:
            receiver.close()


def test_the_webhook_retries_an_error_answer_and_gives_up_after_its_tries():
    port = free_port()
    receiver = Receiver(port, refuse=2)

    async def deliver(webhook: Webhook, url: str) -> None:
        task = asyncio.create_task(webhook.run())
        webhook.send(url, {"alert": "learner_lag"})
        deadline = time.monotonic() + 10
        while webhook.delivered + webhook.failed == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        task.cancel()

    try:
        webhook = Webhook(backoff_s=0.01, attempts=3)
        asyncio.run(deliver(webhook, f"http://127.0.0.1:{port}/hook"))
        assert (webhook.delivered, webhook.failed, len(receiver.refused), receiver.bodies) == (
            1,
            0,
            2,
            [{"alert": "learner_lag"}],
        )
        down = Webhook(backoff_s=0.01, attempts=3)
        asyncio.run(deliver(down, f"http://127.0.0.1:{free_port()}/hook"))  # nothing listens there
        assert (down.delivered, down.failed) == (0, 1)
    finally:
        receiver.close()


@pytest.mark.parametrize(
    ("supervisor", "loc"),
    [
        ({"webhook_url": "ftp://example.com/hook"}, ["body", "supervisor", "webhook_url"]),
        ({"webhook_url": "hooks.example.com"}, ["body", "supervisor", "webhook_url"]),
        ({"min_probability": 1.5}, ["body", "supervisor", "min_probability"]),
        ({"shift": 0.0}, ["body", "supervisor", "shift"]),
        ({"shift_arl": 10}, ["body", "supervisor", "shift_arl"]),
        ({"max_store_latency_s": -1.0}, ["body", "supervisor", "max_store_latency_s"]),
        ({"remediation": {"slo_breach": "reboot"}}, ["body", "supervisor", "remediation", "slo_breach"]),
        ({"remediation": {"flood": "alert_only"}}, ["body", "supervisor", "remediation", "flood", "[key]"]),
        ({"remediation": {"learner_lag": "disable_arm"}}, ["body", "supervisor", "remediation"]),
        ({"checks": "all"}, ["body", "supervisor", "checks"]),
    ],
)
def test_a_bad_supervisor_block_gets_422_naming_the_field(tmp_path, supervisor, loc):
    settings = Settings(store="memory://", port=0, tune_interpreter=False, spool_dir=tmp_path / "spool")
    with running(settings) as base_url:
        response = httpx.post(
            f"{base_url}/v1/experiments", json={"name": "hero", "arms": ["a", "b"], "supervisor": supervisor}
        )
    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [loc]


def test_a_supervisor_block_survives_as_configured(tmp_path):
    settings = Settings(store="memory://", port=0, tune_interpreter=False, spool_dir=tmp_path / "spool")
    block = {"min_reward": 0.2, "remediation": {"reward_shift": "pause_exploration"}}
    with running(settings) as base_url:
        made = httpx.post(f"{base_url}/v1/experiments", json={"name": "hero", "arms": ["a"], "supervisor": block})
    assert made.json()["supervisor"] == SupervisorSpec(**block).model_dump(mode="json")


def _engine(url: str, **supervisor) -> Engine:
    engine = Engine(open_store(url), refresh_s=0)
    spec = ExperimentCreate(name="hero", arms=["a", "b", "c"], supervisor=SupervisorSpec(**supervisor))
    asyncio.run(engine.create(spec))
    return engine


@pytest.mark.parametrize("store", ["sqlite", "memory"])
def test_the_same_alert_raised_at_once_is_written_once(tmp_path, store):
    url = f"sqlite:///{tmp_path / 'engine.db'}" if store == "sqlite" else "memory://"
    engine = _engine(url, remediation={"reward_shift": "pause_exploration"})
    alert = AlertRequest(kind="reward_shift", arm="a")

    async def scenario():
        (decision,) = await engine.decide("hero", [DecisionRequest(allowed=["b"])])
        await engine.reward("hero", [RewardRequest(decision_id=decision.decision_id, value=1.0)])  # b is the best
        return await asyncio.gather(engine.record_alert("hero", alert), engine.record_alert("hero", alert))

    answers = asyncio.run(scenario())
    assert sorted(answer.written for answer in answers) == [False, True]
    assert engine.experiments["hero"].bandit.active_arms == ["b"]
    assert list(open_alerts(engine.store.events("hero"))) == [("reward_shift", "a")]
    resolved = asyncio.run(engine.record_alert("hero", AlertRequest(kind="reward_shift", arm="a", state="resolved")))
    assert resolved.written and open_alerts(engine.store.events("hero")) == {}
    with pytest.raises(InvalidRequestError, match="arm 'z' is not one of") as caught:
        asyncio.run(engine.record_alert("hero", AlertRequest(kind="slo_breach", arm="z")))
    assert caught.value.field == "arm"
    engine.close()
    engine.store.close()


def test_two_workers_on_redis_write_an_alert_and_its_remediation_once(shared_store):
    url = shared_store[0]
    first = Engine(open_store(url), refresh_s=0)
    asyncio.run(
        first.create(
            ExperimentCreate(
                name="hero", arms=["a", "b"], supervisor=SupervisorSpec(remediation={"slo_breach": "disable_arm"})
            )
        )
    )
    second = Engine(open_store(url), refresh_s=0)
    alert = AlertRequest(kind="slo_breach", arm="a", detail="mean below 0.5")

    async def both():
        return await asyncio.gather(first.record_alert("hero", alert), second.record_alert("hero", alert))

    answers = asyncio.run(both())
    assert sorted(answer.written for answer in answers) == [False, True]
    events = [event for event in first.store.events("hero") if event["kind"] == "alert"]
    assert len(events) == 1 and events[0]["disabled"] == ["a"]
    for engine in (first, second):
        engine.close()
        engine.store.close()


def test_the_log_follower_reads_each_reward_once_and_detects_a_shift():
    """Rows in the log's column order; a 0.1 -> 0.6 step on arm 'a' is caught, arm 'b' (steady) is not."""
    rng = np.random.default_rng(0)
    follower = LogFollower(SupervisorSpec(shift=0.2, shift_arl=1000, shift_warmup=50))
    rows = []
    for index in range(1200):
        arm = "ab"[index % 2]
        rate = 0.6 if arm == "a" and index >= 800 else 0.1
        reward = float(rng.random() < rate) if index < 1190 else None  # the last ten are waiting for rewards
        rows.append((f"d{index}", float(index + 1), "hero", None, None, arm, 0.5, "{}", 1, index % 10 == 0, reward))
    found, decisions, fallbacks = follower.feed(rows[:800], 1e9, 0.0, (0.0, 1.0))
    assert found == [] and (decisions, fallbacks) == (800, 80)
    found, decisions, _ = follower.feed(rows[follower.position :], 2e9, 0.0, (0.0, 1.0))
    assert [(alert.kind, alert.arm) for alert in found] == [("reward_shift", "a")]
    assert decisions == 0  # none made since the last check
    assert follower.position == 1190 and len(follower.fed) == 0
    assert follower.state is not None and follower.state.count.sum() < 1190  # 'a' restarted after its alarm


def test_transitions_open_new_alerts_and_resolve_cleared_ones_of_active_arms():
    opened = {("slo_breach", "a"): {}, ("slo_breach", "c"): {}, ("learner_lag", None): {}}
    found = [AlertRequest(kind="store_latency"), AlertRequest(kind="slo_breach", arm="a")]
    changes = transitions(found, opened, active_arms={"a", "b"})
    assert [(c.kind, c.arm, c.state) for c in changes] == [
        ("store_latency", None, "open"),
        ("learner_lag", None, "resolved"),  # 'c' is disabled: its alert stays open
    ]


def test_banditkit_watch_applies_the_same_remediation_through_the_api(tmp_path, sqlite_url):
    """The server's own supervisor waits 300 s: every alert here comes from `banditkit watch URL --once`."""
    from typer.testing import CliRunner

    from banditkit.cli import app

    settings = Settings(
        store=sqlite_url,
        port=0,
        admin_token="admin-secret",
        client_tokens="client-secret",
        tune_interpreter=False,
        spool_dir=tmp_path / "spool",
    )
    spec = {
        "name": "hero",
        "arms": ["a", "b", "c"],
        "supervisor": {
            "min_reward": 0.5,
            "remediation": {"slo_breach": "disable_arm"},
            "max_store_latency_s": 1e-9,  # a call of the API takes longer: store_latency opens
        },
    }
    admin = {"Authorization": "Bearer admin-secret"}
    with running(settings) as base_url, httpx.Client(base_url=base_url, headers=admin, timeout=30.0) as http:
        assert http.post("/v1/experiments", json=spec).status_code == 201
        decided = http.post(
            "/v1/experiments/hero/decisions/batch", json={"requests": [{"allowed": ["c"]}] * 600}
        ).json()["decisions"]
        rewards = [{"decision_id": d["decision_id"], "value": 0.0} for d in decided[:-1]]  # one still unrewarded
        http.post("/v1/experiments/hero/rewards/batch", json={"rewards": rewards}).raise_for_status()
        runner = CliRunner()
        first = runner.invoke(app, ["watch", base_url, "--once", "--token", "admin-secret"])
        assert first.exit_code == 0, first.output
        assert "hero: slo_breach arm c open -> disable_arm ['c']" in first.output
        assert "hero: store_latency open -> alert_only []" in first.output
        arms = {arm["name"]: arm["active"] for arm in http.get("/v1/experiments/hero").json()["arms"]}
        assert arms == {"a": True, "b": True, "c": False}
        again = runner.invoke(app, ["watch", base_url, "--once"], env={"BANDITKIT_ADMIN_TOKEN": "admin-secret"})
        assert again.exit_code == 0 and again.output == "", again.output
        assert len(alert_events(http, "hero", "slo_breach")) == 1
        refused = runner.invoke(app, ["watch", base_url, "--once", "--token", "wrong"])
        assert refused.exit_code == 2 and "401" in refused.output
    bad = CliRunner().invoke(app, ["watch", "ftp://example.com", "--once"])
    assert bad.exit_code == 2 and "URL must be http" in bad.output

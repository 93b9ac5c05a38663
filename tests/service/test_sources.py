"""Reward sources: an experiment whose Thompson parameters come from a separate reward service.

The reference reward service (``examples/reward_source.py``) runs as a real process next to a real decision
service: the served distribution is the exact Thompson distribution of the source's Beta parameters and
follows the CSV when it changes; with the source down, slow, answering garbage, NaN or other arms, decisions
stay 200 on the last good parameters, an alert opens and the stale age grows; rewards are logged, not
learned; several workers write each change once.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest

from banditkit.policies.thompson import beta_max_probabilities
from banditkit.service import Settings
from banditkit.service.runner import free_port, running
from banditkit.service.sources import MAX_ANSWER_BYTES, SourceError, parse_answer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "reward_source.py"
ARMS = ["red", "green", "blue"]


def exact(parameters: dict[str, tuple[float, float]], arms: list[str] = ARMS) -> dict[str, float]:
    """Thompson sampling's exact action distribution for Beta(alpha, beta) per arm."""
    alpha = np.array([[parameters[arm][0] for arm in arms]])
    beta = np.array([[parameters[arm][1] for arm in arms]])
    row = beta_max_probabilities(alpha, beta, np.ones((1, len(arms)), dtype=bool))[0]
    return dict(zip(arms, row.tolist(), strict=True))


def beta_of(rows: list[tuple[str, int]], arms: list[str] = ARMS) -> dict[str, tuple[float, float]]:
    """alpha = 1 + successes, beta = 1 + failures per arm, as the reference service computes them."""
    return {
        arm: (1.0 + sum(r for a, r in rows if a == arm), 1.0 + sum(1 - r for a, r in rows if a == arm)) for arm in arms
    }


def write_csv(path: Path, rows: list[tuple[str, int]]) -> None:
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["arm", "reward"])
        writer.writerows(rows)
    temporary.replace(path)  # whole, so the service never reads half a file


class ReferenceSource:
    """``examples/reward_source.py`` as a child process on a fixed port (so it can be restarted on it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process: subprocess.Popen | None = None

    def start(self) -> ReferenceSource:
        self.process = subprocess.Popen(
            [sys.executable, str(EXAMPLE), str(self.path), "--port", str(self.port), "--arms", ",".join(ARMS)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("serving http://127.0.0.1:"), line
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def reference(tmp_path):
    sources: list[ReferenceSource] = []

    def start(rows: list[tuple[str, int]]) -> ReferenceSource:
        write_csv(tmp_path / "outcomes.csv", rows)
        source = ReferenceSource(tmp_path / "outcomes.csv").start()
        sources.append(source)
        return source

    yield start
    for source in sources:
        source.kill()


def wait_for(check, timeout_s: float = 15.0, interval_s: float = 0.02):
    """``check()``'s first truthy answer, polled until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = check()
        if answer:
            return answer
        assert time.monotonic() < deadline, "timed out"
        time.sleep(interval_s)


def served(http: httpx.Client, name: str = "hero") -> dict[str, float]:
    return {row["arm"]: row["probability"] for row in http.get(f"/v1/experiments/{name}/stats").json()["arms"]}


def close(a: dict[str, float], b: dict[str, float], tolerance: float = 0.0) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) <= tolerance for k in a)


def decide_exactly(http: httpx.Client, expected: dict[str, float], n: int = 30, name: str = "hero") -> list[str]:
    """``n`` decisions, each 200 with the propensity of its arm in ``expected`` (bit for bit); their ids."""
    ids = []
    for i in range(n):
        answer = http.post(f"/v1/experiments/{name}/decisions", json={"unit": f"u{i}"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert not body["fallback"] and body["propensity"] == expected[body["arm"]], (body, expected)
        ids.append(body["decision_id"])
    return ids


def source_events(http: httpx.Client, name: str = "hero") -> list[dict]:
    events = http.get(f"/v1/experiments/{name}/events").json()
    return [e for e in events if e["kind"] == "source" or e.get("alert") == "source_stale"]


def metric(http: httpx.Client, family: str, **labels: str) -> float | None:
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(f"{family}{{{wanted}}} ") or line.startswith(f"{family}{{{wanted},"):
            return float(line.rsplit(" ", 1)[1])
    return None


# ---- the answer's checks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, words",
    [
        (b"<html>down</html>", "not JSON"),
        (b'{"arms": {"red": {"alpha": NaN, "beta": 1}}}', "not JSON: NaN is not a number"),
        (b'{"arms": {"red": {"alpha": 1e999, "beta": 1}, "green": {"alpha": 1, "beta": 1}}}', "arms.red.alpha"),
        (b"[1, 2]", 'an "arms" object'),
        (b'{"red": {"alpha": 1, "beta": 1}}', 'an "arms" object'),
        (b'{"arms": {"red": {"alpha": 1, "beta": 1}}}', "arm 'green' is missing"),
        (
            b'{"arms": {"red": {"alpha": 1, "beta": 1}, "green": {"alpha": 1, "beta": 1}, "pink": {}}}',
            "'pink' is not an arm of the experiment",
        ),
        (b'{"arms": {"red": {"alpha": 0, "beta": 1}, "green": {"alpha": 1, "beta": 1}}}', "arms.red.alpha"),
        (b'{"arms": {"red": {"alpha": -2, "beta": 1}, "green": {"alpha": 1, "beta": 1}}}', "above 0"),
        (b'{"arms": {"red": {"alpha": true, "beta": 1}, "green": {"alpha": 1, "beta": 1}}}', "must be a number"),
        (b'{"arms": {"red": {"alpha": "3", "beta": 1}, "green": {"alpha": 1, "beta": 1}}}', "must be a number"),
        (b'{"arms": {"red": {"alpha": 3}, "green": {"alpha": 1, "beta": 1}}}', "arms.red: must be"),
        (b'{"arms": {"red": {"alpha": 3, "beta": 1, "mu": 0}, "green": {"alpha": 1, "beta": 1}}}', "arms.red"),
        (b'{"arms": {"red": {"alpha": 2e12, "beta": 1}, "green": {"alpha": 1, "beta": 1}}}', "at most 1e+12"),
        (b" " * (MAX_ANSWER_BYTES + 1), "more than"),
    ],
)
def test_an_invalid_answer_is_refused_naming_what_is_wrong(body, words):
    with pytest.raises(SourceError, match=None) as raised:
        parse_answer(body, ["red", "green"])
    assert raised.value.outcome == "invalid" and words in str(raised.value), str(raised.value)


def test_a_valid_answer_gives_each_arms_parameters_and_ignores_other_keys():
    body = b'{"arms": {"green": {"alpha": 1.5, "beta": 2}, "red": {"alpha": 3, "beta": 7}}, "rows": 8}'
    assert parse_answer(body, ["red", "green"]) == {"red": (3.0, 7.0), "green": (1.5, 2.0)}


# ---- the reference service and a real decision service -----------------------------------------------


@pytest.fixture(params=["sqlite", "redis"])
def service(request, tmp_path, server_process):
    """A decision service in a child process on SQLite, then on the real Redis (a key prefix of its own)."""
    store = (
        f"sqlite:///{tmp_path / 'sources.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("shared_store")[0]
    )
    process = server_process(store, tune_interpreter=False, model_poll_s=0.01, spool_dir=tmp_path / "spool")
    with httpx.Client(base_url=process.base_url, timeout=30.0) as http:
        yield request.param, store, http


def test_the_served_distribution_is_the_sources_and_survives_its_outage(service, reference):
    kind, store, http = service
    first = [("red", 1), ("red", 0), ("red", 0), ("green", 1), ("green", 1), ("green", 0), ("blue", 0)]
    source = reference(first)
    spec = {"url": source.url, "refresh_s": 0.2, "timeout_s": 1.0, "retries": 1}
    created = http.post("/v1/experiments", json={"name": "hero", "arms": ARMS, "source": spec})
    assert created.status_code == 201, created.text
    assert created.json()["source"] == spec
    expected = exact(beta_of(first))
    wait_for(lambda: close(served(http), expected))
    status = http.get("/v1/experiments/hero/stats").json()["source"]
    assert status["last_success_at"] is not None and not status["failing"] and status["last_error"] is None
    ids = decide_exactly(http, expected)

    # Rewards are recorded (logged, exported) and not learned: the distribution stays the source's.
    version = http.get("/v1/experiments/hero").json()["policy_version"]
    answers = [http.post("/v1/experiments/hero/rewards", json={"decision_id": i, "value": 1.0}) for i in ids]
    assert all(answer.status_code == 200 for answer in answers)
    if kind == "sqlite":
        assert not any(answer.json()["applied"] for answer in answers)
    else:
        from banditkit.service.learner import Learner

        learner = Learner.from_url(store)
        try:
            report = learner.step()
            assert report.applied == 0 and report.skipped == len(ids), report
        finally:
            learner.close()
    assert http.get("/v1/experiments/hero/stats").json()["rewards"] == len(ids)
    assert close(served(http), expected) and http.get("/v1/experiments/hero").json()["policy_version"] == version

    # The CSV changes: the served distribution follows.
    second = [*first, ("blue", 1), ("blue", 1), ("blue", 1), ("blue", 1), ("red", 0)]
    write_csv(source.path, second)
    expected = exact(beta_of(second))
    wait_for(lambda: close(served(http), expected))
    decide_exactly(http, expected, n=10)

    # The source dies: decisions go on with the last good parameters, the alert opens, the age grows.
    source.kill()
    wait_for(lambda: http.get("/v1/experiments/hero/stats").json()["source"]["failing"])
    status = http.get("/v1/experiments/hero/stats").json()["source"]
    assert status["last_error"].startswith("unreachable"), status
    wait_for(lambda: any(e.get("alert") == "source_stale" and e["state"] == "open" for e in source_events(http)))
    ages = [metric(http, "banditkit_source_age_seconds", experiment="hero")]
    decide_exactly(http, expected, n=10)
    time.sleep(0.3)
    ages.append(metric(http, "banditkit_source_age_seconds", experiment="hero"))
    assert ages[0] is not None and ages[1] is not None and ages[1] >= ages[0] + 0.25, ages
    assert (metric(http, "banditkit_source_fetches_total", experiment="hero", outcome="unreachable") or 0) >= 1

    # It comes back on the same port: the alert resolves, the parameters are served again.
    source.start()
    wait_for(lambda: not http.get("/v1/experiments/hero/stats").json()["source"]["failing"])
    wait_for(lambda: any(e.get("alert") == "source_stale" and e["state"] == "resolved" for e in source_events(http)))
    assert close(served(http), expected)
    kinds = [(e["kind"], e.get("state")) for e in source_events(http)]
    assert kinds == [("source", None), ("source", None), ("alert", "open"), ("alert", "resolved")], kinds


class FakeSource:
    """A real HTTP source in a thread whose answer a test sets: ``mode`` good, garbage, nan, arms, slow, 500."""

    def __init__(self) -> None:
        self.mode = "good"
        self.parameters = {"red": (2.0, 5.0), "green": (4.0, 1.0), "blue": (1.0, 1.0)}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = 200, fake.body()
                if fake.mode == "slow":
                    time.sleep(0.6)
                if fake.mode == "500":
                    status = 500
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/parameters"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def body(self) -> bytes:
        arms = {arm: {"alpha": a, "beta": b} for arm, (a, b) in self.parameters.items()}
        if self.mode == "garbage":
            return b"<html>502 Bad Gateway</html>"
        if self.mode == "nan":
            return json.dumps({"arms": {**arms, "red": {"alpha": float("nan"), "beta": 1.0}}}).encode()
        if self.mode == "arms":
            return json.dumps({"arms": {**arms, "purple": {"alpha": 1, "beta": 1}}}).encode()
        return json.dumps({"arms": arms}).encode()


@pytest.fixture
def fake():
    source = FakeSource()
    yield source
    source.server.shutdown()
    source.server.server_close()


@pytest.fixture
def sqlite_server(tmp_path):
    settings = Settings(
        store=f"sqlite:///{tmp_path / 'fake.db'}",
        port=0,
        admin_token=None,
        client_tokens=(),
        tune_interpreter=False,
        spool_dir=tmp_path / "spool",
        check_interval_s=0.05,  # the supervisor checks often: it must agree with the poller on source_stale
    )
    with running(settings) as url, httpx.Client(base_url=url, timeout=30.0) as http:
        yield http


@pytest.mark.parametrize(
    "mode, outcome, words",
    [
        ("garbage", "invalid", "not JSON"),
        ("nan", "invalid", "NaN is not a number"),
        ("arms", "invalid", "'purple' is not an arm"),
        ("slow", "timeout", "no complete answer within 0.3 s"),
        ("500", "http_error", "HTTP 500"),
    ],
)
def test_a_bad_source_keeps_the_last_good_parameters_and_alerts(sqlite_server, fake, mode, outcome, words):
    http = sqlite_server
    spec = {"url": fake.url, "refresh_s": 0.1, "timeout_s": 0.3, "retries": 1}
    assert http.post("/v1/experiments", json={"name": "hero", "arms": ARMS, "source": spec}).status_code == 201
    good = exact(fake.parameters)
    wait_for(lambda: close(served(http), good))
    fake.mode = mode
    status = wait_for(lambda: (s := http.get("/v1/experiments/hero/stats").json()["source"])["failing"] and s)
    assert status["last_error"].startswith(f"{outcome}: ") and words in status["last_error"], status
    wait_for(lambda: any(e.get("alert") == "source_stale" and e["state"] == "open" for e in source_events(http)))
    decide_exactly(http, good, n=10)  # never a 5xx, never a fallback: the last good parameters
    assert close(served(http), good)
    time.sleep(0.2)  # several supervisor checks while the source fails: the alert stays open
    assert [e["state"] for e in source_events(http) if e["kind"] == "alert"] == ["open"]
    assert metric(http, "banditkit_source_fetches_total", experiment="hero", outcome=outcome) >= 1
    # The source recovers with new parameters: they are served and the alert resolves.
    fake.parameters = {"red": (9.0, 2.0), "green": (4.0, 1.0), "blue": (1.0, 3.5)}
    fake.mode = "good"
    wait_for(lambda: close(served(http), exact(fake.parameters)))
    wait_for(lambda: any(e.get("alert") == "source_stale" and e["state"] == "resolved" for e in source_events(http)))
    assert not http.get("/v1/experiments/hero/stats").json()["source"]["failing"]
    time.sleep(0.2)  # a few more supervisor checks: nothing opens or resolves again
    states = [e["state"] for e in source_events(http) if e["kind"] == "alert"]
    assert states == ["open", "resolved"], states


# ---- configuration -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, policy, loc, words",
    [
        ({"url": "ftp://rewards/params"}, "thompson", ["body", "source", "url"], "http:// or https://"),
        ({"url": "rewards:8080"}, "thompson", ["body", "source", "url"], "http:// or https://"),
        ({"url": "http://rewards/", "refresh_s": 0}, "thompson", ["body", "source", "refresh_s"], "greater than"),
        ({"url": "http://rewards/", "timeout_s": -1}, "thompson", ["body", "source", "timeout_s"], "greater than"),
        ({"url": "http://rewards/"}, "ucb1", ["body", "source"], "policy 'ucb1' cannot take its parameters"),
        ({"url": "http://rewards/"}, "gaussian_thompson", ["body", "source"], "policy 'gaussian_thompson' cannot"),
    ],
)
def test_a_bad_source_gets_422_naming_the_field(sqlite_server, source, policy, loc, words):
    http = sqlite_server
    answer = http.post("/v1/experiments", json={"name": "hero", "arms": ARMS, "policy": policy, "source": source})
    assert answer.status_code == 422, answer.text
    (detail,) = answer.json()["detail"]
    assert detail["loc"] == loc and words in detail["msg"], detail
    http.post("/v1/experiments", json={"name": "hero", "arms": ARMS, "policy": policy})
    answer = http.patch("/v1/experiments/hero", json={"source": source})
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == loc, answer.text


def test_patch_sets_and_clears_the_source(sqlite_server, fake):
    http = sqlite_server
    assert http.post("/v1/experiments", json={"name": "hero", "arms": ARMS}).status_code == 201
    spec = {"url": fake.url, "refresh_s": 0.1, "timeout_s": 0.5, "retries": 0}
    patched = http.patch("/v1/experiments/hero", json={"source": spec})
    assert patched.status_code == 200 and patched.json()["source"] == spec
    wait_for(lambda: close(served(http), exact(fake.parameters)))
    (decision,) = decide_exactly(http, exact(fake.parameters), n=1)
    reward = http.post("/v1/experiments/hero/rewards", json={"decision_id": decision, "value": 1.0}).json()
    assert reward["applied"] is False

    cleared = http.patch("/v1/experiments/hero", json={"source": None})
    assert cleared.status_code == 200 and cleared.json()["source"] is None
    assert http.get("/v1/experiments/hero/stats").json()["source"] is None
    fake.parameters = {"red": (50.0, 1.0), "green": (1.0, 50.0), "blue": (1.0, 50.0)}  # no longer read
    time.sleep(0.3)
    assert close(served(http), exact({"red": (2.0, 5.0), "green": (4.0, 1.0), "blue": (1.0, 1.0)}))
    # Rewards are learned again, from the source's last parameters on.
    (decision,) = decide_exactly(http, served(http), n=1)
    reward = http.post("/v1/experiments/hero/rewards", json={"decision_id": decision, "value": 1.0}).json()
    assert reward["applied"] is True


# ---- several workers, restarts ---------------------------------------------------------------------


def test_two_workers_on_redis_write_each_change_once(reference, shared_store, server_process, tmp_path):
    """A child process and a server in this process, each with its own poller, on one Redis store."""
    store = shared_store[0]
    rows = [("red", 1), ("green", 0)]
    source = reference(rows)
    child = server_process(store, tune_interpreter=False, model_poll_s=0.01, spool_dir=tmp_path / "spool0")
    settings = Settings(
        store=store,
        port=0,
        admin_token=None,
        client_tokens=(),
        tune_interpreter=False,
        model_poll_s=0.01,
        spool_dir=tmp_path / "spool1",
    )
    with (
        running(settings) as url,
        httpx.Client(base_url=child.base_url, timeout=30.0) as first,
        httpx.Client(base_url=url, timeout=30.0) as second,
    ):
        clients = [first, second]
        spec = {"url": source.url, "refresh_s": 0.1, "timeout_s": 1.0}
        assert first.post("/v1/experiments", json={"name": "hero", "arms": ARMS, "source": spec}).status_code == 201
        for http in clients:
            wait_for(lambda http=http: close(served(http), exact(beta_of(rows))))
        rows = [*rows, ("blue", 1), ("blue", 1)]
        write_csv(source.path, rows)
        for http in clients:
            wait_for(lambda http=http: close(served(http), exact(beta_of(rows))))
        time.sleep(0.5)  # several polls by each worker: none writes again
        events = [e for e in source_events(second) if e["kind"] == "source"]
        assert len(events) == 2 and len({e["digest"] for e in events}) == 2, events
        versions = {http.get("/v1/experiments/hero").json()["policy_version"] for http in clients}
        assert len(versions) == 1, versions


def test_a_restart_with_the_source_down_serves_the_stored_parameters(reference, tmp_path):
    settings = Settings(
        store=f"sqlite:///{tmp_path / 'restart.db'}",
        port=0,
        admin_token=None,
        client_tokens=(),
        tune_interpreter=False,
        spool_dir=tmp_path / "spool",
    )
    rows = [("red", 1), ("red", 1), ("green", 0)]
    source = reference(rows)
    spec = {"url": source.url, "refresh_s": 0.1, "timeout_s": 0.5, "retries": 0}
    with running(settings) as url, httpx.Client(base_url=url, timeout=30.0) as http:
        assert http.post("/v1/experiments", json={"name": "hero", "arms": ARMS, "source": spec}).status_code == 201
        wait_for(lambda: close(served(http), exact(beta_of(rows))))
        ids = decide_exactly(http, exact(beta_of(rows)), n=5)
        for decision_id in ids:  # recorded after the last model change: a restart reads them from the log again
            answer = http.post("/v1/experiments/hero/rewards", json={"decision_id": decision_id, "value": 0.0})
            assert answer.status_code == 200 and answer.json()["applied"] is False
    source.kill()
    with running(settings) as url, httpx.Client(base_url=url, timeout=30.0) as http:
        assert close(served(http), exact(beta_of(rows)))
        wait_for(lambda: (http.get("/v1/experiments/hero/stats").json()["source"] or {}).get("failing"))
        decide_exactly(http, exact(beta_of(rows)), n=5)
        assert http.get("/v1/experiments/hero/stats").json()["rewards"] == 5

"""Archive, unarchive, delete and purge, over real HTTP on every store: what each step serves, keeps and logs."""

from __future__ import annotations

import csv
import io
import time

import httpx
import pytest

from banditkit.service import Settings
from banditkit.service.runner import running
from banditkit.service.stores.redis_keys import Keys

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def log_rows(http: httpx.Client, name: str = "hero") -> list[dict]:
    response = http.get(f"/v1/experiments/{name}/log")
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.text)))


def listed(http: httpx.Client, status: str | None = None) -> list[str]:
    params = {} if status is None else {"status": status}
    response = http.get("/v1/experiments", params=params)
    assert response.status_code == 200, response.text
    return [experiment["name"] for experiment in response.json()["experiments"]]


def kinds(http: httpx.Client, name: str = "hero") -> list[str]:
    response = http.get(f"/v1/experiments/{name}/events")
    assert response.status_code == 200, response.text
    return [event["kind"] for event in response.json()]


def test_an_archived_experiment_serves_no_decision_and_still_joins_rewards(http, create, learn):
    created = create(http)
    create(http, name="other")
    decided = [http.post("/v1/experiments/hero/decisions", json={}).json() for _ in range(3)]

    archived = http.post("/v1/experiments/hero/archive")
    assert archived.status_code == 200, archived.text
    assert archived.json()["status"] == "archived"
    assert archived.json()["policy_version"] == created["policy_version"] + 1
    for path, body in [("decisions", {}), ("decisions/batch", {"requests": [{}]})]:
        refused = http.post(f"/v1/experiments/hero/{path}", json=body)
        assert refused.status_code == 409, refused.text
        assert "archived" in refused.json()["detail"] and "unarchive" in refused.json()["detail"]

    # Outstanding decisions still take their rewards within the window, and are learned.
    rewarded = http.post("/v1/experiments/hero/rewards", json={"decision_id": decided[0]["decision_id"], "value": 1})
    assert rewarded.status_code == 200, rewarded.text
    learn()
    stats = http.get("/v1/experiments/hero/stats").json()
    assert (stats["decisions"], stats["rewards"]) == (3, 1)
    assert sum(arm["pulls"] for arm in stats["arms"]) == 1

    assert listed(http) == ["other"]
    assert listed(http, "archived") == ["hero"]
    served = http.get("/v1/experiments/hero").json()
    assert served["status"] == "archived"
    again = http.post("/v1/experiments/hero/archive")  # idempotent: nothing written
    assert again.status_code == 200 and again.json()["policy_version"] == served["policy_version"]

    unarchived = http.post("/v1/experiments/hero/unarchive")
    assert unarchived.status_code == 200, unarchived.text
    assert unarchived.json()["status"] == "active"
    assert http.post("/v1/experiments/hero/decisions", json={}).status_code == 200
    assert listed(http) == ["hero", "other"] and listed(http, "archived") == []
    assert kinds(http)[-2:] == ["archive", "unarchive"]


def test_a_patch_of_an_archived_experiment_keeps_it_archived(http, create):
    create(http)
    http.post("/v1/experiments/hero/archive").raise_for_status()
    patched = http.patch("/v1/experiments/hero", json={"attribution_window_s": 120.0})
    assert patched.status_code == 200, patched.text
    assert patched.json()["status"] == "archived"
    assert http.post("/v1/experiments/hero/decisions", json={}).status_code == 409


def test_a_deleted_experiment_keeps_its_log_until_purged_and_its_name_is_free_after(http, create):
    create(http)
    decided = [http.post("/v1/experiments/hero/decisions", json={}).json() for _ in range(4)]
    reward = {"decision_id": decided[1]["decision_id"], "value": 1}
    assert http.post("/v1/experiments/hero/rewards", json=reward).status_code == 200

    refused = http.delete("/v1/experiments/hero/log")
    assert refused.status_code == 409 and "not deleted" in refused.json()["detail"]
    assert len(log_rows(http)) == 4

    deleted = http.delete("/v1/experiments/hero")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["status"] == "deleted"
    for method, path, body in [
        ("GET", "/v1/experiments/hero", None),
        ("GET", "/v1/experiments/hero/stats", None),
        ("POST", "/v1/experiments/hero/decisions", {}),
        ("POST", "/v1/experiments/hero/rewards", {"decision_id": decided[2]["decision_id"], "value": 1}),
        ("POST", "/v1/experiments/hero/archive", None),
        ("DELETE", "/v1/experiments/hero", None),
    ]:
        answer = http.request(method, path, json=body)
        assert answer.status_code == 404, (method, path, answer.text)
    rows = log_rows(http)  # the log is kept, rewards included
    assert [row["decision_id"] for row in rows] == [d["decision_id"] for d in decided]
    assert [row["reward"] for row in rows].count("1.0") == 1
    assert kinds(http)[-1] == "delete"
    assert listed(http) == [] and listed(http, "deleted") == ["hero"]

    taken = http.post("/v1/experiments", json={"name": "hero", "arms": ["x", "y"]})
    assert taken.status_code == 409 and "purge" in taken.json()["detail"]

    purged = http.delete("/v1/experiments/hero/log")
    assert purged.status_code == 200, purged.text
    assert purged.json() == {"experiment": "hero", "decisions": 4, "rewards": 1, "archived_files": 0}
    assert http.get("/v1/experiments/hero/log").status_code == 404
    assert http.delete("/v1/experiments/hero/log").status_code == 404
    assert listed(http, "deleted") == []

    recreated = create(http, arms=["x", "y"])
    assert recreated["status"] == "active" and [arm["name"] for arm in recreated["arms"]] == ["x", "y"]
    assert log_rows(http) == []
    assert http.get("/v1/experiments/hero/stats").json()["decisions"] == 0
    assert http.post("/v1/experiments/hero/decisions", json={}).json()["arm"] in ("x", "y")
    # The audit trail of the name is kept through the purge.
    assert kinds(http) == ["create", "delete", "purge", "create"]


def test_a_purged_sqlite_experiment_stays_purged_after_a_restart(tmp_path):
    store = f"sqlite:///{tmp_path / 'lifecycle.db'}"
    settings = Settings(store=store, port=0, admin_token=None, client_tokens=(), tune_interpreter=False)
    with running(settings) as url, httpx.Client(base_url=url) as http:
        http.post("/v1/experiments", json={"name": "hero", "arms": ["a", "b"]}).raise_for_status()
        http.post("/v1/experiments", json={"name": "gone", "arms": ["a", "b"]}).raise_for_status()
        for _ in range(20):
            decision = http.post("/v1/experiments/gone/decisions", json={}).json()
            http.post("/v1/experiments/gone/rewards", json={"decision_id": decision["decision_id"], "value": 1})
        http.post("/v1/experiments/hero/archive").raise_for_status()
        http.delete("/v1/experiments/gone").raise_for_status()
    with running(settings) as url, httpx.Client(base_url=url) as http:  # archived and deleted as stored
        assert listed(http) == [] and listed(http, "archived") == ["hero"] and listed(http, "deleted") == ["gone"]
        assert len(log_rows(http, "gone")) == 20
        assert http.delete("/v1/experiments/gone/log").json()["decisions"] == 20
        http.post("/v1/experiments", json={"name": "gone", "arms": ["a", "b"]}).raise_for_status()
    with running(settings) as url, httpx.Client(base_url=url) as http:  # nothing of the old one came back
        stats = http.get("/v1/experiments/gone/stats").json()
        assert (stats["decisions"], stats["rewards"]) == (0, 0)
        assert [arm["pulls"] for arm in stats["arms"]] == [0, 0]


def wait_for(check, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the other worker did not follow"
        time.sleep(0.01)


def test_redis_workers_follow_archive_and_delete_and_the_learner_stops(shared_store, tmp_path):
    from banditkit.service.learner import Learner

    url, prefix, client = shared_store
    settings = [
        Settings(
            store=url,
            port=0,
            admin_token=None,
            client_tokens=(),
            tune_interpreter=False,
            model_poll_s=poll_s,
            spool_dir=tmp_path / f"spool-{worker}",
        )
        for worker, poll_s in enumerate((0.01, 0.01, 60.0))  # the third does not follow in this test's time
    ]
    learner = Learner.from_url(url)
    with running(settings[0]) as first_url, running(settings[1]) as second_url, running(settings[2]) as third_url:
        first, second = httpx.Client(base_url=first_url), httpx.Client(base_url=second_url)
        stale = httpx.Client(base_url=third_url)
        body = {"name": "hero", "arms": ["a", "b"], "attribution_window_s": 60.0}
        first.post("/v1/experiments", json=body).raise_for_status()
        decided = [second.post("/v1/experiments/hero/decisions", json={}).json() for _ in range(5)]
        learner.step()
        keys = Keys.of(prefix, "hero")
        assert client.exists(keys.lease) == 1

        first.post("/v1/experiments/hero/archive").raise_for_status()
        wait_for(lambda: second.post("/v1/experiments/hero/decisions", json={}).status_code == 409)
        reward = {"decision_id": decided[0]["decision_id"], "value": 1}
        assert second.post("/v1/experiments/hero/rewards", json=reward).status_code == 200
        learner.step()
        assert second.get("/v1/experiments/hero/stats").json()["rewards"] == 1

        first.post("/v1/experiments/hero/unarchive").raise_for_status()
        wait_for(lambda: second.post("/v1/experiments/hero/decisions", json={}).status_code == 200)
        assert stale.get("/v1/experiments/hero").json()["status"] == "active"  # served by the third worker too
        first.delete("/v1/experiments/hero").raise_for_status()
        # A change made by a worker that has not seen the delete reloads the experiment first, and finds it gone.
        assert stale.post("/v1/experiments/hero/archive").status_code == 404
        assert stale.get("/v1/experiments/hero").status_code == 404
        wait_for(lambda: second.post("/v1/experiments/hero/decisions", json={}).status_code == 404)
        assert second.get("/v1/experiments", params={"status": "deleted"}).json()["experiments"][0]["name"] == "hero"

        # The learner gives the lease up and settles nothing of it, even long after every window closed.
        version = int(client.hget(keys.meta, "version"))
        report = learner.step(now=time.time() + 3600)
        assert report.defaulted == 0
        wait_for(lambda: client.exists(keys.lease) == 0, timeout_s=1.0)  # released: it expires in a millisecond
        assert int(client.hget(keys.meta, "version")) == version
        logged = log_rows(second)  # those served before the second worker saw the delete included
        assert [row["decision_id"] for row in logged[:5]] == [d["decision_id"] for d in decided]

        assert second.delete("/v1/experiments/hero/log").json()["decisions"] == len(logged)
        assert sorted(client.keys(f"{prefix}:{{hero}}:*")) == [keys.events]
        first.post("/v1/experiments", json=body).raise_for_status()
        wait_for(lambda: second.post("/v1/experiments/hero/decisions", json={}).status_code == 200)
        for client in (first, second, stale):
            client.close()
    learner.close()


def test_the_client_hears_an_archived_experiment_refuse_instead_of_falling_back(server, http, create):
    from banditkit.client import Client, ServiceError

    create(http)
    with Client(server) as client:
        served = client.decide("hero", unit="u1")
        http.post("/v1/experiments/hero/archive").raise_for_status()
        with pytest.raises(ServiceError) as refused:
            client.decide("hero", unit="u2")
        assert refused.value.status == 409 and "archived" in str(refused.value.detail)
        assert client.unreported == 0  # not a fallback to report later: the experiment is over
        assert client.reward(served, 1.0)["applied"]  # its answered decision still takes its reward

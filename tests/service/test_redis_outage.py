"""Redis goes away under load: decisions keep being answered (the default arm, flagged fallback, spooled to a
local file), rewards get 503 with Retry-After, health says degraded; when Redis is back the spooled decisions
are logged, each exactly once. The Redis here is a redis-server of the test's own (no persistence), killed
and restarted by its PID. Redis out of memory is the same outage, though it answers."""

from __future__ import annotations

import json
import threading
import time

import httpx
import numpy as np
import pytest
from redis.exceptions import OutOfMemoryError
from redis_servers import RedisServer
from serve_cli import recovers, refused_changes, started

from banditkit.service import Settings
from banditkit.service.runner import running
from banditkit.service.stores import DecisionRecord, ExperimentRecord, RewardRecord
from banditkit.service.stores.base import RewardWork
from banditkit.service.stores.redis import RedisStore
from banditkit.service.stores.redis_keys import Keys


def wait_for(condition, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_decisions_fall_back_and_are_shipped_once_when_redis_returns(tmp_path, processes):
    redis_server = processes(RedisServer(tmp_path / "redis", aof=False)).start()
    spool = tmp_path / "spool"
    settings = Settings(
        store=f"{redis_server.url}?prefix=outage", port=0, tune_interpreter=False, spool_dir=spool, model_poll_s=0.01
    )
    answers: list[dict] = []
    stop = threading.Event()
    failures: list[str] = []

    def load(base_url: str) -> None:
        with httpx.Client(base_url=base_url, timeout=30.0) as client:
            while not stop.is_set():
                response = client.post(
                    "/v1/experiments/hero/decisions/batch",
                    json={"requests": [{"unit": f"u{len(answers) + i}"} for i in range(5)]},
                )
                if response.status_code != 200:
                    failures.append(response.text)
                    return
                answers.extend(response.json()["decisions"])

    with running(settings) as base_url, httpx.Client(base_url=base_url, timeout=30.0) as http:
        created = http.post(
            "/v1/experiments", json={"name": "hero", "arms": ["a", "b", "c"], "guardrails": {"default_arm": "b"}}
        )
        assert created.status_code == 201, created.text
        loader = threading.Thread(target=load, args=(base_url,), daemon=True)
        loader.start()
        wait_for(lambda: len(answers) >= 100, "decisions before the outage")
        redis_server.kill()  # kill -9 by PID, mid-load
        wait_for(lambda: len(answers) >= 5 and answers[-1]["fallback"], "fallback decisions")
        decision = http.post("/v1/experiments/hero/decisions", json={"unit": "during"}).json()
        assert decision["fallback"] is True and decision["arm"] == "b" and decision["propensity"] == 1.0
        refused = http.post("/v1/experiments/hero/rewards", json={"decision_id": decision["decision_id"], "value": 1.0})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "unavailable" in refused.json()["detail"]
        batch = http.post(
            "/v1/experiments/hero/rewards/batch",
            json={"rewards": [{"decision_id": decision["decision_id"], "value": 1.0}]},
        )
        assert batch.status_code == 503 and batch.headers["retry-after"] == "1"
        health = http.get("/v1/health").json()
        assert health["status"] == "degraded" and health["store"] == "unavailable"
        assert health["cause"].startswith("Redis: does not answer"), health
        during = len(answers)
        wait_for(lambda: len(answers) >= during + 50, "decisions during the outage")
        redis_server.start()  # same port, empty: no persistence
        wait_for(lambda: http.get("/v1/health").json() == {"status": "ok"}, "health back to ok")
        wait_for(lambda: sum(not a["fallback"] for a in answers[during:]) >= 20, "decisions after the outage")
        stop.set()
        loader.join(30.0)
        assert not failures, failures[0]
    answers.append(decision)
    fallback = {a["decision_id"]: a for a in answers if a["fallback"]}
    assert len(fallback) >= 55 and all(a["arm"] == "b" and a["propensity"] == 1.0 for a in fallback.values())
    with redis_server.client() as client:
        keys = Keys.of("outage", "hero")
        logged = [json.loads(fields["row"]) for _, fields in client.xrange(keys.decisions)]
        ids = [row[0] for row in logged]
        assert len(ids) == len(set(ids))  # nothing logged twice
        shipped = {row[0] for row in logged if row[9]}
        assert shipped == set(fallback)  # every fallback exactly once
        after = [a["decision_id"] for a in answers if not a["fallback"] and a["decision_id"] not in shipped]
        assert set(after[-20:]) <= set(ids)  # served normally again
        assert client.hlen(keys.pending) == len(ids) and int(client.hget(keys.counts, "decisions")) == len(ids)
    assert all(path.stat().st_size == 0 for path in spool.glob("*.spool.jsonl"))  # shipped, then emptied


def test_scripts_a_server_lost_are_loaded_again(tmp_path, processes):
    """After SCRIPT FLUSH (what a restarted server looks like while the connection survives), every kind of
    write still goes through: grouped decisions and claims, and an experiment created alone."""
    redis_server = processes(RedisServer(tmp_path / "redis", aof=False)).start()
    store = RedisStore(f"{redis_server.url}?prefix=flush", spool_dir=tmp_path / "spool")
    try:
        store.create_experiment(
            ExperimentRecord("hero", {}, {"arms": ["a", "b"]}, {"c": np.zeros(2)}, 0, 1.0), {"kind": "create"}
        ).result()
        with redis_server.client() as client:
            client.script_flush()
        now = time.time()
        record = DecisionRecord(
            f"{int(now * 1000):012x}{0:020x}", now, "hero", None, None, "a", 0.5, {"a": 0.5, "b": 0.5}, 0, False
        )
        store.append_decisions([record]).result()
        with redis_server.client() as client:
            client.script_flush()
        (outcome,) = (
            store.commit_rewards(RewardWork("hero", [RewardRecord(record.decision_id, "hero", "", 1.0, now)]))
            .result()
            .outcomes
        )
        assert outcome.first and outcome.reward.arm == "a"
        with redis_server.client() as client:
            client.script_flush()
        store.create_experiment(
            ExperimentRecord("other", {}, {"arms": ["x"]}, {"c": np.zeros(1)}, 0, 2.0), {"kind": "create"}
        ).result()
        assert store.counts("hero") == (1, 1) and store.experiment_names() == {"hero", "other"}
        assert store.available
    finally:
        store.close()


def test_redis_out_of_memory_answers_503_and_recovers(tmp_path, processes, banditkit_serve):
    """Redis at ``maxmemory`` with nothing it may evict refuses writes (OOM), though it still answers PING:
    rewards and model changes get 503 naming the cause, decisions fall back to the default arm and are
    spooled, health is degraded. Once ``maxmemory`` is raised, the retried reward is applied once, the spooled
    decision is logged, and the log has one line for the outage and one for its end."""
    redis_server = processes(
        RedisServer(tmp_path / "redis", aof=False, extra=("--maxmemory", "4mb", "--maxmemory-policy", "noeviction"))
    ).start()
    server = banditkit_serve(
        "--store", f"{redis_server.url}?prefix=oom", env={"BANDITKIT_SPOOL_DIR": str(tmp_path / "spool")}
    )
    cause = "Redis: is out of memory (OOM"
    with httpx.Client(base_url=server.url, timeout=10.0) as http, redis_server.client() as client:
        decision_id, snapshot_id = started(http)
        with pytest.raises(OutOfMemoryError):
            for index in range(10_000):
                client.set(f"filler:{index}", "x" * 4000)
        # Full: the data sits a few kilobytes under the limit, where a small write may still fit. A limit
        # 256 KB below the data (the data grew, or maxmemory was lowered) refuses every write.
        client.config_set("maxmemory", client.info("memory")["used_memory"] - 256 * 1024)
        refused_changes(http, decision_id, snapshot_id, cause)
        fallback = http.post("/v1/experiments/hero/decisions", json={"unit": "during"})
        assert fallback.status_code == 200 and fallback.json()["fallback"] is True, fallback.text
        time.sleep(0.5)  # the store probes Redis every 0.2 s meanwhile: it stays unavailable, logging nothing
        assert http.get("/v1/health").json()["cause"].startswith(cause)
        client.config_set("maxmemory", "0")  # no limit
        recovers(http, server, decision_id)
        wait_for(
            lambda: fallback.json()["decision_id"] in http.get("/v1/experiments/hero/log?format=csv").text,
            "the spooled decision to be logged",
        )
        assert client.exists("oom:probe") == 0  # the probe wrote nothing

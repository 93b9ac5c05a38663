"""Faults of the Redis learning loop: kill -9 of Redis, of a serving worker, of the learner, under load.

Each test drives real processes (redis-server, ``banditkit serve``, ``banditkit learn``) with client
threads that keep only what was acknowledged, kills one process at a random moment, and then checks the
store against that record: every acknowledged decision logged, every acknowledged reward kept once, and
after a drain the model equal bit for bit to ``Bandit.update_many`` over the acknowledged rewards.
"""

from __future__ import annotations

import os
import random
import signal
import time

import httpx
import pytest
from redis_servers import (
    LearnProcess,
    Load,
    RedisServer,
    ServeProcess,
    check_against_acknowledged,
    create_experiment,
    drain,
    meta,
    serving_on_shared_redis,
    stored_decisions,
    wait_for,
)

from banditkit.service import Settings
from banditkit.service.runner import running

SPEC = {
    "name": "hero",
    "arms": ["a", "b", "c"],
    "policy": {"name": "thompson", "params": {}},
    "attribution_window_s": 3600.0,
    "seed": 5,
}


def test_append_only_redis_keeps_an_acknowledged_write_through_kill_9(redis_aof):
    with redis_aof.client() as client:
        client.xadd("t:{e}:decisions", {"row": "first"})
        client.hset("t:{e}:meta", mapping={"version": 7})
    pid = redis_aof.process.pid
    redis_aof.kill()
    assert redis_aof.process.returncode == -9
    redis_aof.restart()
    assert redis_aof.process.pid != pid
    with redis_aof.client() as client:
        assert client.hget("t:{e}:meta", "version") == "7"
        assert [fields for _, fields in client.xrange("t:{e}:decisions")] == [{"row": "first"}]


@pytest.fixture(scope="module")
def serving(tmp_path_factory):
    """Two worker processes on the shared Redis (a prefix of their own), for every round of this module."""
    with serving_on_shared_redis(tmp_path_factory.mktemp("faults"), workers=2) as running:
        yield running


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(2))
def test_worker_killed_mid_load_loses_no_acknowledged_decision_or_reward(round_, serving):
    store, prefix, client, serve = serving
    spec = dict(SPEC, name=f"worker{round_}")
    create_experiment(serve.base_url, spec)
    wait_for(lambda: len(serve.worker_pids()) == 2, 30, "two worker processes")
    load = Load([serve.base_url], spec["name"], threads=8, rewards_per_thread=500, seed=round_).start()
    rng = random.Random(round_)
    kill_at = rng.randrange(300, 2500)
    wait_for(lambda: load.rewards_acknowledged() >= kill_at or load.errors, 30, f"{kill_at} rewards")
    # The worker holding client connections (the kernel may hand all of them to one worker): requests in
    # flight on it are lost, not acknowledged, and its clients see it die.
    victim = max(serve.worker_pids(), key=serve.connections)
    assert serve.connections(victim) > 0
    os.kill(victim, signal.SIGKILL)
    load.join()
    assert load.transport_errors > 0  # clients connected to it saw it die and sent again
    drain(store)
    check_against_acknowledged(client, prefix, spec, load.acknowledged)


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(2))
def test_learner_killed_mid_batch_neither_loses_nor_doubles(round_, serving, tmp_path):
    store, prefix, client, serve = serving
    spec = dict(SPEC, name=f"learner{round_}")
    create_experiment(serve.base_url, spec)
    rng = random.Random(100 + round_)
    load = Load([serve.base_url], spec["name"], threads=4, rewards_per_thread=10**9, seed=round_).start()
    try:
        for kill in range(2):
            before = int(meta(client, prefix, spec["name"])["version"])
            learner = LearnProcess(store, tmp_path / f"learn-{kill}.log").start()
            # Once it learns (the version moves), kill it at a random moment: reading, applying, or idle.
            wait_for(
                lambda before=before, learner=learner: (
                    int(meta(client, prefix, spec["name"])["version"]) > before or load.errors or not learner.alive()
                ),
                30,
                f"learner {kill} to apply a batch",
            )
            assert learner.alive(), learner.output()[-3000:]
            time.sleep(rng.uniform(0.0, 0.4))
            learner.kill()
    finally:
        load.stop.set()
        load.join()
    # The last learner died holding the lease: a drain waits for it to expire, then learns the rest.
    drain(store)
    check_against_acknowledged(client, prefix, spec, load.acknowledged)


@pytest.fixture(scope="module")
def on_own_redis(tmp_path_factory):
    """An append-only redis-server of its own and two workers spooling to a folder while it is down."""
    directory = tmp_path_factory.mktemp("outage")
    server = RedisServer(directory / "redis", aof=True).start()
    store = f"{server.url}?prefix=bk"
    serve = ServeProcess(
        store, directory / "serve.log", workers=2, env={"BANDITKIT_SPOOL_DIR": str(directory / "spool")}
    )
    try:
        yield server, store, serve.start()
    finally:
        serve.stop()
        server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(2))
def test_redis_killed_with_aof_always_loses_no_acknowledged_write(round_, on_own_redis):
    server, store, serve = on_own_redis
    spec = dict(SPEC, name=f"outage{round_}")
    create_experiment(serve.base_url, spec)
    rng = random.Random(200 + round_)
    load = Load([serve.base_url], spec["name"], threads=6, rewards_per_thread=800, seed=round_).start()
    kill_at = rng.randrange(200, 1500)
    wait_for(lambda: load.rewards_acknowledged() >= kill_at or load.errors, 30, f"{kill_at} rewards")
    server.kill()
    time.sleep(rng.uniform(0.5, 1.5))  # the outage: fallbacks spooled, rewards 503
    server.start()
    load.join()
    assert load.fallbacks > 0 and load.unavailable > 0, (load.fallbacks, load.unavailable)
    with server.client() as client:
        wait_for(
            lambda: set(load.acknowledged.decisions) <= set(stored_decisions(client, "bk", spec["name"])),
            20,
            "the spooled decisions to be shipped",
        )
        drain(store)
        check_against_acknowledged(client, "bk", spec, load.acknowledged)


def test_a_worker_restarted_while_redis_is_down_waits_for_it_and_the_server_keeps_serving(
    redis_aof, processes, tmp_path
):
    """uvicorn stops every worker when a restarted one fails its start-up; a worker that dies during a Redis
    outage must come back waiting for Redis, not take the server down with it."""
    serve = processes(
        ServeProcess(
            f"{redis_aof.url}?prefix=bk",
            tmp_path / "serve.log",
            workers=2,
            env={"BANDITKIT_SPOOL_DIR": str(tmp_path / "spool")},
        )
    ).start()
    create_experiment(serve.base_url, SPEC)
    wait_for(lambda: len(serve.worker_pids()) == 2, 30, "two worker processes")
    # Both workers serve the experiment before Redis goes (one that never loaded it answers 503 meanwhile):
    # the other picks it up within a second, or at its first request.
    time.sleep(1.5)
    for unit in range(10):
        with httpx.Client(base_url=serve.base_url, timeout=10.0) as fresh:
            assert fresh.post("/v1/experiments/hero/decisions", json={"unit": f"w{unit}"}).status_code == 200
    victim = serve.worker_pids()[0]
    redis_aof.kill()
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: "this worker starts when it answers" in serve.output(), 30, "a new worker waiting for Redis")
    time.sleep(1.0)  # the supervisor's next checks: a failed start-up would stop the server within them
    assert serve.alive(), serve.output()[-3000:]
    with httpx.Client(base_url=serve.base_url, timeout=10.0) as http:
        try:
            answer = http.post("/v1/experiments/hero/decisions", json={"unit": "u1"})
        except httpx.TimeoutException as error:
            raise AssertionError(f"no answer while Redis is down ({error}):\n{serve.output()[-3000:]}") from None
        assert answer.status_code == 200 and answer.json()["fallback"] is True, answer.text
        assert http.get("/v1/health").json()["status"] == "degraded"

        redis_aof.start()
        wait_for(lambda: "the store answers again; this worker starts" in serve.output(), 30, "the new worker")
        wait_for(lambda: http.get("/v1/health").json()["status"] == "ok", 10, "the old worker to see Redis again")
        for unit in range(20):  # both workers serve (connections are spread over them), none falls back
            with httpx.Client(base_url=serve.base_url, timeout=10.0) as fresh:
                answer = fresh.post("/v1/experiments/hero/decisions", json={"unit": f"v{unit}"})
            assert answer.status_code == 200 and answer.json()["fallback"] is False, answer.text
    assert len(serve.worker_pids()) == 2 and victim not in serve.worker_pids()


def test_worker_turns_available_again_without_decision_traffic(redis_aof, tmp_path):
    """A worker that saw Redis down (its model poll failed) must notice it is back by itself: clients that
    only send rewards (503 while down) would otherwise be refused forever."""
    service = Settings(
        store=f"{redis_aof.url}?prefix=bk",
        port=0,
        admin_token=None,
        client_tokens=(),
        tune_interpreter=False,
        spool_dir=tmp_path / "spool",
        model_poll_s=0.05,
    )
    with running(service) as base_url, httpx.Client(base_url=base_url, timeout=10.0) as http:
        create_experiment(base_url, SPEC)
        decision = http.post("/v1/experiments/hero/decisions", json={}).json()
        redis_aof.kill()
        wait_for(lambda: http.get("/v1/health").json()["status"] == "degraded", 10, "the worker to see Redis down")
        assert (
            http.post(
                "/v1/experiments/hero/rewards", json={"decision_id": decision["decision_id"], "value": 1.0}
            ).status_code
            == 503
        )
        redis_aof.start()
        wait_for(lambda: http.get("/v1/health").json()["status"] == "ok", 5, "the worker to see Redis again")
        response = http.post(
            "/v1/experiments/hero/rewards", json={"decision_id": decision["decision_id"], "value": 1.0}
        )
        assert response.status_code == 200, response.text

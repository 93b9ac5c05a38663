"""Faults of the Redis learning loop: kill -9 of Redis, of a serving worker, of the learner, under load.

Each test drives real processes (redis-server, ``banditkit serve``, ``banditkit learn``) with client
threads that keep only what was acknowledged, kills one process at a random moment, and then checks the
store against that record: every acknowledged decision logged, every acknowledged reward kept once, and
after a drain the model equal bit for bit to ``Bandit.update_many`` over the acknowledged rewards.
"""

from __future__ import annotations

import random
import time

import pytest
from redis_servers import (LearnProcess, Load, ServeProcess, assert_drained, assert_log_matches,
                           assert_model_is_reference, create_experiment, learn_once, meta, stored_decisions)

from banditkit.service.stores.redis_keys import Keys

SPEC = {"name": "hero", "arms": ["a", "b", "c"], "policy": {"name": "thompson", "params": {}},
        "attribution_window_s": 3600.0, "seed": 5}


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


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.05)


def check_everything(client, prefix: str, load: Load) -> None:
    """The store against what the clients were told, after a drain."""
    acknowledged = load.acknowledged
    assert_log_matches(client, prefix, "hero", acknowledged)
    arms = {decision_id: answer["arm"] for decision_id, answer in acknowledged.decisions.items()}
    assert_model_is_reference(client, prefix, SPEC, acknowledged.rewards, arms)
    assert_drained(client, prefix, "hero")


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(2))
def test_worker_killed_mid_load_loses_no_acknowledged_decision_or_reward(round_, tmp_path, processes, shared_store):
    store, prefix, client = shared_store
    workers = [processes(ServeProcess(store, tmp_path / f"serve-{i}.log")).start() for i in range(2)]
    create_experiment(workers[0].base_url, SPEC)
    wait_for(lambda: workers[1].alive() and _knows(workers[1]), 5, "the second worker to see the experiment")
    load = Load([w.base_url for w in workers], "hero", threads=6, rewards_per_thread=600, seed=round_).start()
    kill_at = random.Random(round_).randrange(300, 2000)
    wait_for(lambda: len(load.acknowledged.rewards) >= kill_at or load.errors, 30, f"{kill_at} rewards")
    workers[0].kill()                                     # requests in flight on it are lost, not acknowledged
    load.join()
    assert load.transport_errors > 0                      # the clients did see the worker die
    learn_once(store, tmp_path / "learn.log")
    check_everything(client, prefix, load)


def _knows(worker: ServeProcess) -> bool:
    import httpx

    return httpx.get(f"{worker.base_url}/v1/experiments/hero", timeout=5).status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(2))
def test_learner_killed_mid_batch_neither_loses_nor_doubles(round_, tmp_path, processes, shared_store):
    store, prefix, client = shared_store
    rng = random.Random(100 + round_)
    serve = processes(ServeProcess(store, tmp_path / "serve.log", workers=2)).start()
    create_experiment(serve.base_url, SPEC)
    load = Load([serve.base_url], "hero", threads=6, rewards_per_thread=1000, seed=round_).start()
    kills = 0
    while load.rewards_acknowledged() < 6 * 1000 * 0.8 and kills < 5 and not load.errors:
        learner = processes(LearnProcess(store, tmp_path / f"learn-{kills}.log")).start()
        time.sleep(rng.uniform(0.3, 1.5))                 # a random moment: reading, applying or idle
        learner.kill()
        kills += 1
    load.join()
    versions_while_loaded = int(meta(client, prefix, "hero")["version"])
    assert kills >= 2 and versions_while_loaded > 0, (kills, versions_while_loaded)   # learners did apply batches
    # The last learner's lease expires (it was killed, not stopped); then one drain settles everything.
    lease = Keys.of(prefix, "hero").lease
    wait_for(lambda: not client.exists(lease), 15, "the killed learner's lease to expire")
    learn_once(store, tmp_path / "learn-final.log")
    check_everything(client, prefix, load)


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(2))
def test_redis_killed_with_aof_always_loses_no_acknowledged_write(round_, tmp_path, processes, redis_aof):
    prefix = "bk"
    store = f"{redis_aof.url}?prefix={prefix}"
    serve = processes(ServeProcess(store, tmp_path / "serve.log",
                                   env={"BANDITKIT_SPOOL_DIR": str(tmp_path / "spool")})).start()
    create_experiment(serve.base_url, SPEC)
    load = Load([serve.base_url], "hero", threads=6, rewards_per_thread=800, seed=round_).start()
    kill_at = random.Random(round_).randrange(200, 1500)
    wait_for(lambda: load.rewards_acknowledged() >= kill_at or load.errors, 30, f"{kill_at} rewards")
    redis_aof.kill()
    time.sleep(random.Random(round_).uniform(0.5, 1.5))  # the outage: fallbacks spooled, rewards 503
    redis_aof.start()
    load.join()
    assert load.fallbacks > 0 and load.unavailable > 0, (load.fallbacks, load.unavailable)
    client = redis_aof.client()
    # The spooled fallback decisions are shipped once Redis is back.
    wait_for(lambda: set(load.acknowledged.decisions) <= set(stored_decisions(client, prefix, "hero")), 20,
             "the spooled decisions to be shipped")
    learn_once(store, tmp_path / "learn.log")
    check_everything(client, prefix, load)
    client.close()

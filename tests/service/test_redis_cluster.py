"""The Redis store on a real three-master Cluster: one experiment's keys share a slot, so MULTI and Lua work."""

from __future__ import annotations

import time

import httpx
import pytest
import redis
from redis_servers import Load, ServeProcess, check_against_acknowledged, create_experiment, learn_once, meta

from banditkit.service.stores.redis_keys import Keys


def test_cluster_runs_a_hash_tagged_multi_and_refuses_a_cross_slot_one(redis_cluster):
    client = redis_cluster.client()
    try:
        assert client.cluster_info()["cluster_state"] == "ok"
        shards = {client.cluster_keyslot(f"{{exp-{i}}}:meta") % 3 for i in range(30)}  # slots spread out
        with client.pipeline(transaction=True) as pipe:
            pipe.hset("bk:{hero}:meta", "version", 1)
            pipe.xadd("bk:{hero}:decisions", {"row": "[]"})
            pipe.hincrby("bk:{hero}:counts", "decisions", 1)
            assert pipe.execute()[2] == 1
        assert client.hget("bk:{hero}:meta", "version") == "1"
        # Without a common hash tag the keys live in different slots: a transaction over them must fail,
        # otherwise the tests of the store on the cluster would prove nothing about its key layout.
        assert client.keyslot("bk:hero:meta") != client.keyslot("bk:hero:decisions")
        with pytest.raises(redis.RedisClusterException), client.pipeline(transaction=True) as pipe:
            pipe.hset("bk:hero:meta", "version", 1)
            pipe.xadd("bk:hero:decisions", {"row": "[]"})
            pipe.execute()
        # The server itself refuses a script over two slots and runs it over one hash tag.
        slot_owner = client.get_node_from_key("bk:{hero}:meta")
        with redis.Redis(host=slot_owner.host, port=slot_owner.port, decode_responses=True) as owner:
            assert (
                owner.eval("return redis.call('HGET', KEYS[1], 'version')", 2, "bk:{hero}:meta", "bk:{hero}:counts")
                == "1"
            )
            with pytest.raises(redis.ResponseError, match=r"same slot|MOVED"):
                owner.eval("return 1", 2, "bk:hero:meta", "bk:hero:decisions")
        assert len(shards) > 1
    finally:
        client.close()


SPEC = {
    "name": "hero",
    "arms": ["a", "b", "c"],
    "policy": {"name": "thompson", "params": {}},
    "attribution_window_s": 3600.0,
    "seed": 2,
}


@pytest.mark.slow
def test_serve_and_learn_on_the_cluster(tmp_path, processes, redis_cluster):
    prefix = "bk"
    store = f"{redis_cluster.url}?prefix={prefix}"
    serve = processes(ServeProcess(store, tmp_path / "serve.log", workers=2)).start()
    create_experiment(serve.base_url, SPEC)
    create_experiment(serve.base_url, dict(SPEC, name="other"))  # a second experiment, likely another slot
    acknowledged = Load([serve.base_url], "hero", threads=4, rewards_per_thread=300, batch=20).run()
    client = redis_cluster.client()
    try:
        before = {name: meta(client, prefix, name) for name in ("hero", "other")}
        learn_once(store, tmp_path / "learn.log")
        stored = check_against_acknowledged(client, prefix, SPEC, acknowledged)
        assert int(stored["version"]) > int(before["hero"]["version"])  # the model moved
        assert meta(client, prefix, "other") == before["other"]  # nothing to learn there: untouched
        # Every key of an experiment is in its hash slot (only the catalogue is not).
        slots = {
            client.keyslot(key)
            for key in client.scan_iter(match=f"{prefix}:*")
            if key != f"{prefix}:experiments" and "{hero}" in key
        }
        assert slots == {client.keyslot(Keys.of(prefix, "hero").meta)}
        # The workers serve the learner's model.
        deadline = time.monotonic() + 5
        while True:
            answer = httpx.post(f"{serve.base_url}/v1/experiments/hero/decisions", json={}, timeout=10).json()
            if answer["policy_version"] == int(stored["version"]):
                break
            assert time.monotonic() < deadline, (answer, stored["version"])
            time.sleep(0.05)
    finally:
        client.close()

"""The Redis store on a real three-master Cluster: one experiment's keys share a slot, so MULTI and Lua work."""

from __future__ import annotations

import pytest
import redis
from redis_servers import processes, redis_cluster  # noqa: F401  (fixtures)


def test_cluster_runs_a_hash_tagged_multi_and_refuses_a_cross_slot_one(redis_cluster):  # noqa: F811
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
        with pytest.raises(redis.RedisClusterException):
            with client.pipeline(transaction=True) as pipe:
                pipe.hset("bk:hero:meta", "version", 1)
                pipe.xadd("bk:hero:decisions", {"row": "[]"})
                pipe.execute()
        # The server itself refuses a script over two slots and runs it over one hash tag.
        slot_owner = client.get_node_from_key("bk:{hero}:meta")
        with redis.Redis(host=slot_owner.host, port=slot_owner.port, decode_responses=True) as owner:
            assert owner.eval("return redis.call('HGET', KEYS[1], 'version')", 2, "bk:{hero}:meta",
                              "bk:{hero}:counts") == "1"
            with pytest.raises(redis.ResponseError, match="same slot|MOVED"):
                owner.eval("return 1", 2, "bk:hero:meta", "bk:hero:decisions")
        assert len(shards) > 1
    finally:
        client.close()

"""Faults of the Redis learning loop: kill -9 of Redis, of a serving worker, of the learner, under load."""

from __future__ import annotations

from redis_servers import processes, redis_aof  # noqa: F401  (fixtures)


def test_append_only_redis_keeps_an_acknowledged_write_through_kill_9(redis_aof):  # noqa: F811
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

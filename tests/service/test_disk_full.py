"""A full disk under a real ``banditkit serve``: every write the store cannot take is answered 503 with a JSON
body naming the cause and ``Retry-After``, ``/v1/health`` says degraded with the cause, and the log has one
line for the outage (no traceback); once space is freed, a retried reward is applied once, health recovers,
and the log has one line for that.

The disk is a 2 MB tmpfs each test mounts. Where mounting is not allowed (or with
``TEST_SMALL_DISK=limit``), a file-size limit set on the writing process (RLIMIT_FSIZE, with prlimit)
stands in for it: its writes then fail as they would on a full disk. If neither works, the tests fail.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import subprocess
from pathlib import Path

import httpx
import pytest
from redis_servers import RedisServer
from serve_cli import assert_refused, recovers, refused_changes, started, wait_for


class SmallDisk:
    """A folder on a 2 MB tmpfs, or (``mounted`` False) one whose writers get a file-size limit when full."""

    def __init__(self, path: Path, mount: bool) -> None:
        self.path = path
        self.mounted = (
            mount and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)]).returncode == 0
        )
        self.limited: list[int] = []

    def fill(self, *pids: int) -> None:
        """No room left: a file fills the tmpfs, or the processes ``pids`` may not write past the first byte."""
        if not self.mounted:
            for pid in pids:
                resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
            self.limited = list(pids)
            return
        descriptor = os.open(self.path / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(descriptor, b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
        finally:
            os.close(descriptor)

    def free(self) -> None:
        (self.path / "filler").unlink(missing_ok=True)
        for pid in self.limited:
            with contextlib.suppress(ProcessLookupError):  # the process has ended
                resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        self.limited = []

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    path = tmp_path / "disk"
    path.mkdir()
    disk = SmallDisk(path, mount=os.environ.get("TEST_SMALL_DISK") != "limit")
    yield disk
    disk.free()
    disk.unmount()


def test_sqlite_on_a_full_disk_answers_503_and_recovers(small_disk, banditkit_serve):
    server = banditkit_serve("--store", f"sqlite:///{small_disk.path / 'service.db'}")
    with httpx.Client(base_url=server.url, timeout=10.0) as http:
        decision_id, snapshot_id = started(http)
        small_disk.fill(server.pid)
        # SQLite may still fit a few writes in the log space it already holds: decide until it refuses.
        refusals, answers = 0, []
        for index in range(3000):
            answer = http.post("/v1/experiments/hero/decisions/batch", json={"requests": [{"unit": f"u{index}"}]})
            answers.append(answer.status_code)
            refusals = refusals + 1 if answer.status_code == 503 else 0
            if refusals == 5:
                break
        assert refusals == 5, f"the store never refused decisions: {answers[-20:]}"
        assert set(answers) <= {200, 503}
        cause = "disk"  # full (SQLITE_FULL, ENOSPC), or an I/O error (a write past the file-size limit)
        assert_refused(http.post("/v1/experiments/hero/decisions", json={"unit": "during"}), cause)
        assert_refused(http.post("/v1/experiments/hero/decisions/batch", json={"requests": [{}, {}]}), cause)
        refused_changes(http, decision_id, snapshot_id, cause)
        small_disk.free()
        recovers(http, server, decision_id)


def test_redis_that_cannot_persist_answers_503_and_recovers(tmp_path, small_disk, banditkit_serve, processes):
    """Redis's append-only file on the full disk: Redis refuses writes (MISCONF). Decisions fall back to the
    default arm and are spooled (on another disk) as when Redis is down; the other writes get 503."""
    redis_server = processes(
        RedisServer(small_disk.path / "redis", aof=False, extra=("--appendonly", "yes", "--appendfsync", "everysec"))
    ).start()
    server = banditkit_serve(
        "--store", f"{redis_server.url}?prefix=diskfull", env={"BANDITKIT_SPOOL_DIR": str(tmp_path / "spool")}
    )
    with httpx.Client(base_url=server.url, timeout=10.0) as http, redis_server.client() as client:
        decision_id, snapshot_id = started(http)
        assert redis_server.process is not None
        small_disk.fill(redis_server.process.pid)
        # Redis learns its disk is full when it next appends to its file; then it refuses every write.
        for index in range(2000):
            try:
                client.set(f"probe:{index}", "x" * 100)
            except Exception as error:
                assert "MISCONF" in str(error), error
                break
            if client.info("persistence")["aof_last_write_status"] == "err":
                break
        assert client.info("persistence")["aof_last_write_status"] == "err"
        decision = http.post("/v1/experiments/hero/decisions", json={"unit": "during"})
        assert decision.status_code == 200 and decision.json()["fallback"] is True, decision.text
        refused_changes(http, decision_id, snapshot_id, "cannot persist writes")
        small_disk.free()
        recovers(http, server, decision_id)
        shipped = wait_for(
            lambda: decision.json()["decision_id"] in http.get("/v1/experiments/hero/log?format=csv").text,
            "the spooled decision to be logged",
        )
        assert shipped


def test_the_memory_store_does_not_need_the_disk(small_disk, banditkit_serve):
    """The memory store writes nothing to disk: with the disk full it takes every write and stays healthy."""
    server = banditkit_serve("--store", "memory://", env={"BANDITKIT_SPOOL_DIR": str(small_disk.path / "spool")})
    with httpx.Client(base_url=server.url, timeout=10.0) as http:
        decision_id, snapshot_id = started(http)
        small_disk.fill(server.pid)
        assert http.post("/v1/experiments/hero/decisions/batch", json={"requests": [{}] * 100}).status_code == 200
        reward = {"decision_id": decision_id, "value": 1.0}
        assert http.post("/v1/experiments/hero/rewards", json=reward).status_code == 200
        assert http.post("/v1/experiments", json={"name": "other", "arms": ["x", "y"]}).status_code == 201
        assert http.patch("/v1/experiments/hero/arms", json={"add": ["d"]}).status_code == 200
        assert http.post("/v1/experiments/hero/snapshots").status_code == 201
        assert http.post("/v1/experiments/hero/rollback", json={"snapshot_id": snapshot_id}).status_code == 200
        assert http.get("/v1/health").json() == {"status": "ok"}
    assert "cannot take writes" not in server.log()


def test_a_decision_that_cannot_be_spooled_is_refused(tmp_path, small_disk, banditkit_serve, processes):
    """Redis down and the spool's disk full: a decision can be logged nowhere, so it is answered 503, never
    given unlogged; once the spool takes writes again it is served on the default arm and shipped later."""
    redis_server = processes(RedisServer(tmp_path / "redis", aof=False)).start()
    server = banditkit_serve(
        "--store", f"{redis_server.url}?prefix=spoolfull", env={"BANDITKIT_SPOOL_DIR": str(small_disk.path / "spool")}
    )
    with httpx.Client(base_url=server.url, timeout=10.0) as http:
        started(http)
        small_disk.fill(server.pid)
        redis_server.kill()
        assert_refused(http.post("/v1/experiments/hero/decisions", json={"unit": "lost"}), "the decision spool: disk")
        assert_refused(http.post("/v1/experiments/hero/decisions/batch", json={"requests": [{}]}), "spool")
        health = http.get("/v1/health").json()
        assert health["status"] == "degraded" and health["cause"].startswith("Redis: does not answer"), health
        small_disk.free()
        fallback = http.post("/v1/experiments/hero/decisions", json={"unit": "spooled"})
        assert fallback.status_code == 200 and fallback.json()["fallback"] is True, fallback.text
        redis_server.start()
        wait_for(lambda: http.get("/v1/health").json() == {"status": "ok"}, "health to be ok again")
        log_export = http.get("/v1/experiments/hero/log?format=csv").text
        assert fallback.json()["decision_id"] in log_export and "lost" not in log_export
    log = server.log()
    assert log.count("the decision spool at") == 2, log  # it cannot take writes, then it takes them again
    assert log.count("Redis at") == 2, log
    assert "Traceback" not in log, log

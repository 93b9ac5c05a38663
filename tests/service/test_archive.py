"""The archive of the Redis store: Parquet partitions written once (also across a crash between writing and
trimming), Redis trimmed to the window, the folder read back by the offline evaluation's log loader."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from redis.exceptions import OutOfMemoryError
from redis_loop import Interposed, Killed, claim, create, log_decisions, stored_bandit
from redis_servers import RedisServer

from banditkit.ope import load_log
from banditkit.service import export
from banditkit.service.learner import Learner
from banditkit.service.stores.redis_keys import ARCHIVE_TRIM, Keys

ROOT = Path(__file__).resolve().parents[2]
ARMS = ["a", "b", "c"]
WINDOW, RETENTION = 60.0, 100.0
# Decisions a minute either side of midnight UTC: two date partitions.
JAN1 = datetime(2026, 1, 1, 23, 59, tzinfo=UTC).timestamp()
JAN2 = datetime(2026, 1, 2, 0, 1, tzinfo=UTC).timestamp()


def logged(client, prefix, name="hero", n=40, policy="thompson", n_features=None):
    """``n`` decisions on two dates; even ones rewarded by the client (1.0), odd ones left to the default (0.0)."""
    create(client, prefix, name, ARMS, policy, window_s=WINDOW, default_reward=0.0, n_features=n_features)
    rng = np.random.default_rng(0)
    times = np.where(np.arange(n) < n // 2, JAN1, JAN2) + np.arange(n) * 0.001
    contexts = rng.integers(-4, 5, (n, 2)) / 4 if n_features else None
    records = log_decisions(
        client, prefix, name, ARMS, [ARMS[i % 3] for i in range(n)], [0.5] * n, contexts, times=times
    )
    for record in records[::2]:
        assert claim(client, prefix, name, [(record.decision_id, 1.0, "client")], now=record.time + 1)[0][0] == "new"
    return records


def later() -> float:
    """A time at which every decision logged now is older than the window plus the retention."""
    return time.time() + WINDOW + RETENTION + 1


def archived_rows(out: Path) -> list[dict]:
    """Every archived row under ``out``, oldest part first (parts sort by their stream id as numbers, not text)."""
    files = sorted(out.rglob("*.parquet"), key=export._first_entry)
    return [row for file in files for row in pq.read_table(file).to_pylist()]


def test_the_archive_writes_each_row_once_trims_redis_and_reads_back(redis_prefix, tmp_path):
    client, prefix = redis_prefix
    records = logged(client, prefix)
    contextual = logged(client, prefix, "ctx", n=10, policy="linucb", n_features=2)
    learner = Learner(client, prefix, archive_dir=tmp_path, retention_s=RETENTION, archive_batch_size=15)
    report = learner.step(now=later(), archive_now=True)
    assert (report.applied, report.defaulted, report.archived) == (50, 25, 50)

    folders = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.glob("*/*"))
    assert folders == [
        "experiment=ctx/date=2026-01-01",
        "experiment=ctx/date=2026-01-02",
        "experiment=hero/date=2026-01-01",
        "experiment=hero/date=2026-01-02",
    ]
    hero = Keys.of(prefix, "hero")
    names = sorted(path.name for path in (tmp_path / "experiment=hero").rglob("*.parquet"))
    assert len(names) == 4 and all(name.startswith("part-") for name in names)  # 15+15+10 rows over 2 dates
    for file in tmp_path.rglob("*.parquet"):
        assert pq.read_schema(file).remove_metadata() == export.arrow_schema()

    rows = archived_rows(tmp_path / "experiment=hero")
    assert [row["decision_id"] for row in rows] == [r.decision_id for r in records]
    assert [row["reward"] for row in rows] == [1.0 if i % 2 == 0 else 0.0 for i in range(40)]
    assert [row["time"] for row in rows] == [r.time for r in records]
    assert all(
        row["fallback"] is False and row["policy_version"] == 0 and row["unit"] == f"u{i}" for i, row in enumerate(rows)
    )
    assert json.loads(rows[0]["probabilities"]) == records[0].probabilities

    log = load_log(tmp_path / "experiment=hero")
    assert log.n_rows == 40 and log.arm_names == tuple(ARMS)
    np.testing.assert_array_equal(log.arms, [i % 3 for i in range(40)])
    np.testing.assert_array_equal(log.rewards, [1.0 if i % 2 == 0 else 0.0 for i in range(40)])
    np.testing.assert_array_equal(log.propensities, np.full(40, 0.5))
    with_contexts = load_log(tmp_path / "experiment=ctx")
    np.testing.assert_array_equal(with_contexts.contexts, [r.context for r in contextual])

    for keys in (hero, Keys.of(prefix, "ctx")):  # Redis holds nothing of the archived decisions
        assert client.xlen(keys.decisions) == 0 and client.hlen(keys.pending) == 0
        assert client.hlen(keys.rewards) == 0 and client.zcard(keys.due) == 0
        assert client.xlen(keys.reward_stream) <= 1  # the last one learned stays
    assert stored_bandit(client, prefix, "hero").pulls.sum() == 40  # learned before it was archived

    before = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*.parquet")}
    assert learner.step(now=later(), archive_now=True).archived == 0  # a second pass writes nothing
    assert {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*.parquet")} == before


def test_a_crash_between_writing_and_trimming_archives_no_row_twice(redis_prefix, tmp_path):
    client, prefix = redis_prefix
    first = logged(client, prefix, n=20)
    trim_sha = hashlib.sha1(ARCHIVE_TRIM.encode()).hexdigest()

    def die_before_trim(index, name, args):
        if name == "evalsha" and args[0] == trim_sha:
            raise Killed("after writing, before trimming")

    proxy = Interposed(client)
    dying = Learner(proxy, prefix, "dying", archive_dir=tmp_path, retention_s=RETENTION)
    proxy.arm(die_before_trim)
    with pytest.raises(Killed):
        dying.step(now=later(), archive_now=True)
    written = sorted(tmp_path.rglob("*.parquet"))
    assert len(archived_rows(tmp_path)) == 20 and client.xlen(Keys.of(prefix, "hero").decisions) == 20
    client.delete(Keys.of(prefix, "hero").lease)  # the dead learner's lease expires
    more = log_decisions(client, prefix, "hero", ARMS, ["a"] * 5, [0.5] * 5, times=[JAN2 + 30] * 5)

    report = Learner(client, prefix, "heir", archive_dir=tmp_path, retention_s=RETENTION).step(
        now=later(), archive_now=True
    )
    assert report.archived == 25
    assert sorted(tmp_path.rglob("*.parquet")) == written  # the same files, rewritten with more rows
    ids = [row["decision_id"] for row in archived_rows(tmp_path)]
    assert sorted(ids) == sorted(r.decision_id for r in first + more) and len(set(ids)) == 25
    assert not list(tmp_path.rglob(".*"))  # no temporary file left behind


def run_cli(*args, timeout=60):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "banditkit.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_banditkit_archive_then_evaluate_the_folder(redis_prefix, tmp_path):
    client, prefix = redis_prefix
    create(client, prefix, "hero", ARMS, "thompson", window_s=0.2, default_reward=0.0)
    records = log_decisions(client, prefix, "hero", ARMS, [ARMS[i % 3] for i in range(30)], [1 / 3] * 30)
    claim(client, prefix, "hero", [(r.decision_id, 1.0, "client") for r in records[:10]])
    time.sleep(0.3)
    url = f"redis://127.0.0.1:6379/0?prefix={prefix}"
    result = run_cli("archive", "--store", url, "--out", str(tmp_path / "archive"), "--retention", "0")
    assert result.returncode == 0, result.stderr
    # Not a terminal: no progress bar, one summary line.
    assert result.stderr.strip() == f"archived 30 decisions to {tmp_path / 'archive'} (claimed 20 default rewards)"
    assert client.xlen(Keys.of(prefix, "hero").decisions) == 0
    rows = archived_rows(tmp_path / "archive")
    assert sorted(row["reward"] for row in rows) == [0.0] * 20 + [1.0] * 10
    result = run_cli(
        "evaluate", str(tmp_path / "archive"), "--policy", "ucb1", "--estimators", "ips,snips", "--bootstrap", "50"
    )
    assert result.returncode == 0, result.stderr
    assert "(30 rows)" in result.stdout and "snips" in result.stdout


@pytest.mark.parametrize("crash", [False, True], ids=["trimmed", "crashed-before-trim"])
def test_the_log_export_reads_the_archive_then_redis_each_row_once(redis_prefix, tmp_path, crash):
    """``GET …/log`` with ``archive_dir``: archived rows first, then those still in Redis; a row archived but
    not yet trimmed (the archiver died in between) is given once."""
    from banditkit.service.stores.redis import RedisStore

    client, prefix = redis_prefix
    first = logged(client, prefix, n=20)
    proxy = Interposed(client)
    learner = Learner(proxy, prefix, "archiver", archive_dir=tmp_path, retention_s=RETENTION)
    if crash:
        trim_sha = hashlib.sha1(ARCHIVE_TRIM.encode()).hexdigest()
        proxy.arm(lambda index, name, args: name == "evalsha" and args[0] == trim_sha and _die())
        with pytest.raises(Killed):
            learner.step(now=later(), archive_now=True)
        assert client.xlen(Keys.of(prefix, "hero").decisions) == 20  # archived and still in Redis
    else:
        assert learner.step(now=later(), archive_now=True).archived == 20
    more = log_decisions(client, prefix, "hero", ARMS, ["b"] * 5, [0.5] * 5, times=[JAN2 + 30] * 5)
    store = RedisStore(f"redis://127.0.0.1:6379/0?prefix={prefix}", spool_dir=tmp_path / "spool")
    try:
        rows = list(export.rows(store, "hero", archive=tmp_path))
        live_only = list(export.rows(store, "hero"))
    finally:
        store.close()
    assert [row[0] for row in rows] == [r.decision_id for r in first + more]
    assert [row[10] for row in rows] == [1.0 if i % 2 == 0 else 0.0 for i in range(20)] + [None] * 5
    assert len(live_only) == (25 if crash else 5)


def _die():
    raise Killed("after writing, before trimming")


def test_the_archive_frees_a_redis_out_of_memory_and_keeps_every_reward(tmp_path, processes):
    """Out of memory, Redis refuses a script at a write that may take memory made before any other: the trim
    deletes first, so it runs whole and frees memory (were the offset written first, it would be refused and
    the archive could not free anything)."""
    redis_server = processes(
        RedisServer(tmp_path / "redis", aof=False, extra=("--maxmemory-policy", "noeviction"))
    ).start()
    prefix = "oom"
    with redis_server.client() as client:
        records = logged(client, prefix, n=20)
        learning = Learner(client, prefix)
        learning.step(now=later())  # learned and settled, nothing archived yet
        learning.close()
        learner = Learner(client, prefix, archive_dir=tmp_path / "archive", retention_s=RETENTION)
        assert learner.archive_pass(now=time.time()).archived == 0  # leased (taking it writes), nothing old yet
        client.config_set("maxmemory", client.info("memory")["used_memory"] - 256 * 1024)
        with pytest.raises(OutOfMemoryError):
            client.set("one-more", "x")
        assert learner.archive_pass(now=later()).archived == 20
        keys = Keys.of(prefix, "hero")
        assert client.hlen(keys.pending) == client.hlen(keys.rewards) == client.xlen(keys.decisions) == 0
        assert client.hget(keys.meta, "archive_offset") != "0-0"
    rows = archived_rows(tmp_path / "archive" / "experiment=hero")
    assert [row["decision_id"] for row in rows] == [r.decision_id for r in records]
    assert [row["reward"] for row in rows] == [1.0 if i % 2 == 0 else 0.0 for i in range(20)]

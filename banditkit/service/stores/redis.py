"""The shared store: Redis (one server or a Cluster), written by any number of serving workers.

A serving worker logs decisions and claims rewards; it does not learn. The
learner (``banditkit learn``) reads the reward stream, adds the deltas to the
model in Redis and bumps its version, and workers reload a model whose
version moved (:meth:`RedisStore.versions`). Keys, scripts and encodings are
in :mod:`.redis_keys`.

Writes go through one thread that sends every queued write in one pipeline
round trip (each write is one Lua script, atomic on its experiment's slot) and
completes their futures after the replies, as the SQLite store's group commit
does. When Redis does not answer, the store turns *unavailable*: decisions
then fail at once (the engine answers them on the default arm, flagged
fallback, and logs those here), fallback decisions are appended to a local
spool file (fsync) and shipped, each exactly once, by the same thread as soon
as Redis answers again; rewards fail with :class:`~.base.StoreUnavailableError`.
Redis refusing writes because it cannot persist them (``MISCONF``: its disk is
full) or because it is out of memory (``OOM``: used memory above ``maxmemory``,
nothing it may evict) is the same outage, named by its cause; so is a full disk under the spool
for the decisions that cannot be spooled then (they get 503, never an answer
that is not logged). Each outage is logged once when it starts and once when it
ends (:class:`~.base.Outage`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import TextIO

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import redis_keys as rk
from .base import (
    CURRENT_POLICY,
    DELETED,
    Assignment,
    DecisionRecord,
    ExperimentExistsError,
    ExperimentRecord,
    LoopHealth,
    ModelChange,
    ModelMovedError,
    Outage,
    RewardCommit,
    RewardOutcome,
    RewardRecord,
    RewardWork,
    SnapshotRecord,
    State,
    Store,
    StoreUnavailableError,
    completed,
    decision_from_row,
    decision_row,
    disk_failure,
    moved,
    status_of,
)

logger = logging.getLogger("banditkit.service")
#: Errors that mean "Redis did not answer" (as opposed to a refused command).
DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
MAX_GROUP = 4096
_SCRIPTS = {"claim": rk.CLAIM_REWARDS, "log": rk.LOG_DECISIONS, "create": rk.CREATE_EXPERIMENT}
_SPOOL_SUFFIX = ".spool.jsonl"
_STOP = object()


class RedisStore(Store):
    """A store in Redis shared by many serving processes; see the module docstring.

    ``RedisStore("redis://127.0.0.1:6379/0?prefix=bk")`` connects (a
    :class:`~.redis_keys.RedisURLError` naming the URL if it cannot, a :class:`~.base.StoreUnavailableError`
    if Redis stops answering while it opens);
    ``spool_dir`` holds the decisions served while Redis was down.
    """

    learns_in_process = False

    def __init__(self, url: str, *, spool_dir: str | Path = "banditkit-spool", recheck_s: float = 0.2) -> None:
        self.client, self.location = rk.connect(url)
        self.prefix = self.location.prefix
        self.spool_dir = Path(spool_dir)
        self.recheck_s = recheck_s
        self._sha: dict[str, str] = {}
        self._keys: dict[str, rk.Keys] = {}
        self._windows: dict[str, float] = {}
        self._available = True
        owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._spool_path = self.spool_dir / f"{owner}{_SPOOL_SUFFIX}"
        self._spool: TextIO | None = None  # the open spool file, written by the writer thread only
        self._spooled = 0  # decisions in it not shipped yet
        self._outage = Outage(
            "Redis",
            self.location.url,
            f"serving fallback decisions, spooled to {self._spool_path}; rewards and experiment changes are "
            "answered 503 with Retry-After",
        )
        self._spool_outage = Outage(
            "the decision spool", str(self.spool_dir), "fallback decisions are answered 503 with Retry-After"
        )
        try:
            self._call(self._load_scripts)  # Redis may stop between the PING and here
        except StoreUnavailableError:
            self.client.close()
            raise
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self.groups_sent = 0
        self.jobs_sent = 0
        self._recover()  # ship the spools of workers that died, before serving
        self._thread = threading.Thread(target=self._run, name="banditkit-redis-writer", daemon=True)
        self._thread.start()

    @property
    def available(self) -> bool:
        """False from a failed round trip to Redis until the spool is shipped after it answers again."""
        return self._available

    @property
    def unavailable_cause(self) -> str | None:
        return None if self._available else self._outage.reason or "Redis: does not answer"

    def keys(self, name: str) -> rk.Keys:
        keys = self._keys.get(name)
        if keys is None:
            keys = self._keys[name] = rk.Keys.of(self.prefix, name)
        return keys

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()
        self.client.close()

    # ---- catalogue ---------------------------------------------------------
    def create_experiment(self, record: ExperimentRecord, event: dict) -> Future:
        keys = self.keys(record.name)

        def job(client) -> None:
            if client.sismember(rk.deleted_key(self.prefix), record.name):  # its log is kept until purged
                raise ExperimentExistsError(record.name)
            client.sadd(rk.experiments_key(self.prefix), record.name)  # first: a crash leaves no hidden experiment
            created_keys = rk.create_keys(keys)
            created = client.evalsha(
                self._sha["create"],
                len(created_keys),
                *created_keys,
                json.dumps(record.config),
                repr(record.created_at),
                json.dumps(record.model),
                rk.pack_state(record.state),
                record.version,
                _event_json(record.name, record.version, event),
            )
            if not created:
                raise ExperimentExistsError(record.name)
            self._windows[record.name] = _window(record.config)

        return self._submit_alone(job)

    def load_experiments(self) -> list[ExperimentRecord]:
        names = sorted(self.experiment_names())
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            rk.read_meta(pipe, self.keys(name).meta)
        records = [self._record(name, meta) for name, meta in zip(names, self._call(pipe.execute), strict=True) if meta]
        return sorted(records, key=lambda record: record.created_at)

    def experiment_names(self) -> set[str]:
        return self._call(self.client.smembers, rk.experiments_key(self.prefix))

    def load_experiment(self, name: str) -> ExperimentRecord | None:
        meta = self._call(rk.read_meta, self.client, self.keys(name).meta)
        return self._record(name, meta) if meta else None

    def versions(self, names: list[str]) -> dict[str, int]:
        """The stored version of each experiment in ``names`` (one round trip)."""
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hget(self.keys(name).meta, "version")
        return {name: int(v) for name, v in zip(names, self._call(pipe.execute), strict=True) if v is not None}

    def _record(self, name: str, meta: dict[bytes, bytes]) -> ExperimentRecord:
        """The record of a meta hash read by :func:`~.redis_keys.read_meta`."""
        stored = rk.parse_meta(meta)
        self._windows[name] = _window(stored.config)
        return ExperimentRecord(name, stored.config, stored.model, stored.state, stored.version, stored.created_at)

    def replace_model(self, name: str, change: ModelChange) -> Future:
        """Compare-and-set on the stored version.

        :class:`~.base.ModelMovedError` if the change was built on another version than the stored one (a
        learner moved it; reload and build it again).
        """
        keys = self.keys(name)

        def job(client) -> None:
            with client.pipeline(transaction=True) as pipe:
                pipe.watch(keys.meta)
                stored = int(pipe.hget(keys.meta, "version"))
                if stored != change.expected_version:
                    raise moved(name, stored, change)
                pipe.multi()
                written = {
                    "model": json.dumps(change.model),
                    "state": rk.pack_state(change.state),
                    "version": change.version,
                }
                if change.config is not None:
                    written["config"] = json.dumps(change.config)
                pipe.hset(keys.meta, mapping=written)
                pipe.rpush(keys.events, _event_json(name, change.version, change.event))
                try:
                    pipe.execute()
                except WatchError:
                    raise ModelMovedError(f"experiment {name!r} changed while the change was written") from None
            if change.config is not None:
                self._windows[name] = _window(change.config)
                if status_of(change.config) == DELETED:
                    # After the meta (the truth) and outside its transaction, as the set has no hash tag:
                    # learners and discovering workers stop visiting the experiment.
                    client.sadd(rk.deleted_key(self.prefix), name)
                    client.srem(rk.experiments_key(self.prefix), name)

        return self._submit_alone(job)

    def deleted_names(self) -> set[str]:
        return self._call(self.client.smembers, rk.deleted_key(self.prefix))

    def purge_experiment(self, name: str, event: dict) -> Future:
        """Delete every key of the experiment but its events (one slot: one atomic DEL), then forget the name."""
        keys = self.keys(name)

        def job(client) -> tuple[int, int]:
            version = client.hget(keys.meta, "version")
            decisions, rewards = client.hmget(keys.counts, ["decisions", "rewards"])
            pipe = client.pipeline(transaction=True)
            pipe.delete(*[key for key in keys.all() if key != keys.events])
            pipe.rpush(keys.events, _event_json(name, int(version or 0), event))
            pipe.execute()
            client.srem(rk.deleted_key(self.prefix), name)
            self._windows.pop(name, None)
            return int(decisions or 0), int(rewards or 0)

        return self._submit_alone(job)

    def save_snapshot(
        self, name: str, model: dict, state: State, version: int, created_at: float | None = None
    ) -> Future:
        created_at = time.time() if created_at is None else created_at
        keys = self.keys(name)

        def job(client) -> int:
            snapshot_id = int(client.incr(keys.snapshot_seq))
            pipe = client.pipeline(transaction=True)
            pipe.hset(
                keys.snapshots,
                snapshot_id,
                json.dumps({"policy_version": version, "created_at": created_at, "model": model}),
            )
            pipe.hset(keys.snapshot_states, snapshot_id, rk.pack_state(state))
            pipe.rpush(keys.events, _event_json(name, version, {"kind": "snapshot", "snapshot_id": snapshot_id}))
            pipe.execute()
            return snapshot_id

        return self._submit_alone(job)

    def get_snapshot(self, name: str, snapshot_id: int) -> SnapshotRecord | None:
        return next(iter(self._snapshots(name, [snapshot_id])), None)

    def list_snapshots(self, name: str) -> list[SnapshotRecord]:
        ids = self._call(self.client.hkeys, self.keys(name).snapshots)
        return self._snapshots(name, sorted(int(i) for i in ids))

    def _snapshots(self, name: str, ids: list[int]) -> list[SnapshotRecord]:
        """The snapshots of ``name`` with these ids (those that exist), in one round trip."""
        if not ids:
            return []
        keys = self.keys(name)
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(keys.snapshots, ids)
        rk.read_snapshot_states(pipe, keys.snapshot_states, ids)
        texts, blobs = self._call(pipe.execute)
        return [
            _snapshot(name, i, text, blob) for i, text, blob in zip(ids, texts, blobs, strict=True) if text is not None
        ]

    def events(self, name: str) -> list[dict]:
        return [json.loads(text) for text in self._call(self.client.lrange, self.keys(name).events, 0, -1)]

    # ---- decision log ------------------------------------------------------
    def append_decisions(self, rows: list[DecisionRecord], assignments: dict[str, Assignment] | None = None) -> Future:
        """Log ``rows`` (all of one experiment).

        While Redis is down, spool them if they are all fallbacks (what the engine serves then) and refuse them
        otherwise.
        """
        if not rows:
            return completed()
        if not self._available:
            if all(row.fallback for row in rows):
                return self._submit(("spool", rows))
            return completed(error=self._unavailable())
        keys = self.keys(rows[0].experiment)
        sticky = {unit: rk.assignment_json(a) for unit, a in (assignments or {}).items()}
        args = [self._sha["log"], 5, *rk.log_keys(keys), *rk.log_args(rows, sticky)]
        return self._submit(("evalsha", args, _nothing))

    def get_decision(self, decision_id: str) -> DecisionRecord | None:
        return self.find_decisions([decision_id]).get(decision_id, (None, None))[0]

    def get_reward(self, decision_id: str) -> RewardRecord | None:
        names = sorted(self.experiment_names())
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hget(self.keys(name).rewards, decision_id)
        found = [text for text in self._call(pipe.execute) if text is not None]
        return rk.reward_from_json(found[0]) if found else None

    def find_decisions(self, ids: list[str]) -> dict[str, tuple[DecisionRecord, RewardRecord | None]]:
        """Decisions still in Redis (their window not archived), with their reward (three round trips)."""
        unique = list(dict.fromkeys(ids))
        names = sorted(self.experiment_names())
        if not unique or not names:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            keys = self.keys(name)
            pipe.hmget(keys.pending, unique)
            pipe.hmget(keys.rewards, unique)
        replies = self._call(pipe.execute)
        located: dict[str, tuple[str, str, str | None]] = {}  # id -> (experiment, stream id, reward JSON)
        for index, name in enumerate(names):
            for decision_id, pending, reward in zip(unique, replies[2 * index], replies[2 * index + 1], strict=True):
                if pending is not None and decision_id not in located:
                    located[decision_id] = (name, rk.pending_stream_id(pending), reward)
        rows = self._stream_rows([(self.keys(name).decisions, sid) for name, sid, _ in located.values()])
        return {
            decision_id: (decision_from_row(row), None if reward is None else rk.reward_from_json(reward))
            for (decision_id, (_, _, reward)), row in zip(located.items(), rows, strict=True)
            if row is not None
        }

    def _stream_rows(self, entries: list[tuple[str, str]]) -> list[tuple | None]:
        """The decision rows at (stream key, entry id), in one round trip."""
        if not entries:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key, sid in entries:
            pipe.xrange(key, sid, sid)
        return [json.loads(found[0][1]["row"]) if found else None for found in self._call(pipe.execute)]

    def get_assignment(self, name: str, unit: str) -> Assignment | None:
        """The unit's sticky arm; None while Redis is down (the decision falls back then anyway)."""
        if not self._available:
            return None
        try:
            text = self.client.hget(self.keys(name).assignments, unit)
        except DOWN as error:
            self._down(f"does not answer ({error})")
            return None
        return None if text is None else rk.assignment_from_json(text)

    def commit_rewards(self, work: RewardWork) -> Future:
        """Claim each reward at most once (:data:`~.redis_keys.CLAIM_REWARDS`) and learn nothing here.

        ``work.planner`` is not used, nor ``work.watermark`` kept (the learner learns and settles windows);
        the commit has no delta and no version.

        A reward's arm is the logged decision's, whatever ``RewardRecord.arm`` says; the claim's time is
        the first reward's. Outcomes for a decision not (or no longer) in Redis, and for a client reward
        after the attribution window, have no reward and ``refused`` "missing" or "late".
        """
        if not work.rewards:
            return completed(RewardCommit([]))
        if not self._available:
            return completed(error=self._unavailable())
        name = work.experiment
        keys = self.keys(name)
        window = self._windows.get(name)
        if window is None:
            window = self._windows[name] = _window(json.loads(self._call(self.client.hget, keys.meta, "config")))
        claims = [(r.decision_id, r.value, r.source) for r in work.rewards]
        args = [self._sha["claim"], 6, *rk.claim_keys(keys), *rk.claim_args(work.rewards[0].time, window, name, claims)]
        return self._submit(("evalsha", args, _commit))

    def unrewarded(self, name: str, since: float, before: float, limit: int) -> list[DecisionRecord]:
        keys = self.keys(name)
        ids = self._call(self.client.zrangebyscore, keys.due, since, f"({before!r}", start=0, num=limit)
        pending = self._call(self.client.hmget, keys.pending, ids) if ids else []
        rows = self._stream_rows([(keys.decisions, rk.pending_stream_id(text)) for text in pending if text])
        return [decision_from_row(row) for row in rows if row is not None]

    def iter_log(self, name: str) -> Iterator[tuple]:
        """The decisions still in Redis in time order (the archive holds older ones), each with its reward.

        Workers append concurrently, so the stream is only nearly in time order: the rows are sorted here,
        in memory (the archive bounds the stream to the attribution window plus its retention).
        """
        keys = self.keys(name)
        rows: list[tuple] = []
        start = "-"
        while True:
            entries = self._call(self.client.xrange, keys.decisions, start, "+", count=5000)
            if not entries:
                break
            batch = [json.loads(fields["row"]) for _, fields in entries]
            rewards = self._call(self.client.hmget, keys.rewards, [row[0] for row in batch])
            rows.extend(
                (*row[:10], None if r is None else json.loads(r)[3], row[10] if len(row) > 10 else CURRENT_POLICY)
                for row, r in zip(batch, rewards, strict=True)
            )
            start = "(" + entries[-1][0]
        rows.sort(key=lambda row: (row[1], row[0]))
        yield from rows

    def counts(self, name: str) -> tuple[int, int]:
        decisions, rewards = self._call(self.client.hmget, self.keys(name).counts, ["decisions", "rewards"])
        return int(decisions or 0), int(rewards or 0)

    def learning_loop(self, names: list[str]) -> dict[str, LoopHealth]:
        """Each experiment's reward stream as the learners see it: two pipelined round trips for all of them.

        The first reads the stream's length, its consumer group (pending entries, lag), the model's reward
        offset and the default rewards claimed; the second the first reward after the offset, whose stream
        id gives its time. Names not (or no longer) in Redis are left out.
        """
        if not names or not self._available:
            return {}
        keys = [self.keys(name) for name in names]
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.xlen(key.reward_stream)
            pipe.xinfo_groups(key.reward_stream)
            pipe.hget(key.meta, "reward_offset")
            pipe.hget(key.counts, "defaulted")
        first = self._call(pipe.execute, raise_on_error=False)
        known = [
            (name, key, *first[4 * row : 4 * row + 4])
            for row, (name, key) in enumerate(zip(names, keys, strict=True))
            if first[4 * row + 2] is not None and not isinstance(first[4 * row + 1], Exception)
        ]
        pipe = self.client.pipeline(transaction=False)
        for _, key, _, _, offset, _ in known:
            pipe.xrange(key.reward_stream, f"({offset}", "+", count=1)
        oldest = self._call(pipe.execute) if known else []
        now_ms = time.time() * 1000
        health = {}
        for (name, _, length, groups, _, defaulted), entries in zip(known, oldest, strict=True):
            group: dict = next((g for g in groups if g["name"] == rk.LEARNERS), {})
            age_s = max(0.0, (now_ms - int(entries[0][0].split("-")[0])) / 1000) if entries else 0.0
            lag = group.get("lag")
            health[name] = LoopHealth(
                int(length), int(group.get("pending", 0)), None if lag is None else int(lag), age_s, int(defaulted or 0)
            )
        return health

    def _call(self, method, *args, **kwargs):
        """A read: Redis's answer, or :class:`~.base.StoreUnavailableError` (and the store marked down)."""
        try:
            return method(*args, **kwargs)
        except DOWN as error:
            raise self._down(f"does not answer ({error})") from None

    # ---- the writer thread ---------------------------------------------------
    def _submit(self, job: tuple) -> Future:
        future: Future = Future()
        if self._closed:
            future.set_exception(RuntimeError("the store is closed"))
        else:
            self._queue.put((job, future))
        return future

    def _submit_alone(self, job: Callable) -> Future:
        """A write run by itself on the client, after every earlier write (experiments, models, snapshots)."""
        if not self._available:
            return completed(error=self._unavailable())
        return self._submit(("alone", job))

    def _run(self) -> None:
        carried = None
        while True:
            if carried is not None:
                first, carried = carried, None
            else:
                # Never an unbounded wait: another thread (a read, the model poll) may mark the store down
                # while no write is queued, and only this thread brings it back.
                try:
                    first = self._queue.get(timeout=self.recheck_s)
                except queue.Empty:
                    if not self._available or self._spooled:
                        self._recover()
                    continue
            if first is _STOP:
                break
            group, carried = self._gather(first)
            try:
                self._send(group)
            except Exception as error:
                logger.exception("Redis writes failed")
                for _, future in group:
                    if not future.done():
                        future.set_exception(error)
            if not self._available or self._spooled:
                self._recover()
        self._recover()
        if self._spool is not None:
            self._spool.close()

    def _gather(self, first) -> tuple[list, object]:
        """Jobs queued now that go out together; a job that must run alone ends the group."""
        group = [first]
        if first[0][0] == "alone":
            return group, None
        while len(group) < MAX_GROUP:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP or item[0][0] == "alone":
                return group, item
            group.append(item)
        return group, None

    def _send(self, group: list) -> None:
        if group[0][0][0] == "alone":
            (_, job), future = group[0]
            try:
                try:
                    result = job(self.client)
                except NoScriptError:  # a restarted server lost its scripts: the job did not run
                    self._load_scripts()
                    result = job(self.client)
                future.set_result(result)
            except DOWN as error:
                future.set_exception(self._down(f"does not answer ({error})"))
            except ResponseError as error:
                cause = rk.refusal(error)
                future.set_exception(error if cause is None else self._down(cause))
            except Exception as error:
                future.set_exception(error)
            return
        spooled = [(job, future) for job, future in group if job[0] == "spool"]
        scripts = [(job, future) for job, future in group if job[0] == "evalsha"]
        if spooled:
            self._spool_rows(spooled)
        if scripts:
            self._run_scripts(scripts)

    def _run_scripts(self, jobs: list, retried: bool = False) -> None:
        if not self._available:
            for _, future in jobs:
                future.set_exception(self._unavailable())
            return
        pipe = self.client.pipeline(transaction=False)
        for (_, args, _), _ in jobs:
            pipe.execute_command("EVALSHA", *args)  # a cluster pipeline blocks .evalsha(), not the command
        try:
            replies = pipe.execute(raise_on_error=False)
        except DOWN as error:
            refused = self._down(f"does not answer ({error})")
            for _, future in jobs:
                future.set_exception(refused)
            return
        self.groups_sent += 1
        self.jobs_sent += len(jobs)
        unloaded = []
        for (job, future), reply in zip(jobs, replies, strict=True):
            if isinstance(reply, NoScriptError) and not retried:
                unloaded.append((job, future))  # not run: a restarted server lost its scripts
            elif isinstance(reply, Exception):
                cause = rk.refusal(reply)
                future.set_exception(reply if cause is None else self._down(cause))
            else:
                future.set_result(job[2](reply))
        if unloaded:
            try:
                self._load_scripts()
            except DOWN as error:
                self._down(f"does not answer ({error})")
            self._run_scripts(unloaded, retried=True)

    def _load_scripts(self) -> None:
        for name, text in _SCRIPTS.items():
            self._sha[name] = self.client.script_load(text)

    # ---- outage: spool and ship ------------------------------------------------------------
    def _spool_rows(self, jobs: list) -> None:
        """Append fallback decisions to the spool file, fsync once, then complete their futures.

        The rows go straight to the file, unbuffered: if the write fails (a full disk), the file is cut back
        to what it held, so decisions answered 503 are never shipped later.
        """
        try:
            spool = self._spool
            if spool is None:
                self.spool_dir.mkdir(parents=True, exist_ok=True)
                spool = self._spool = open(self._spool_path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
                fcntl.flock(spool, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours while this process lives
            rows = [row for (_, records), _ in jobs for row in records]
            _append(spool.fileno(), "".join(json.dumps(decision_row(row)) + "\n" for row in rows).encode())
        except OSError as error:
            refused = self._spool_outage.failed(disk_failure(error) or str(error))
            for _, future in jobs:
                future.set_exception(refused)
            return
        self._spool_outage.succeeded()
        self._spooled += len(rows)
        for _, future in jobs:
            future.set_result(None)

    def _recover(self) -> None:
        """If Redis takes writes, turn available again.

        Reload the scripts (a restarted server has none) and ship the spools first. PING is refused too
        while Redis cannot persist writes, not while it is out of memory: :func:`~.redis_keys.probe_writes`
        is.
        """
        try:
            self.client.ping()
            if not self._available:
                rk.probe_writes(self.client, self.prefix)
                self._load_scripts()
            self._ship_spools()
        except DOWN as error:
            self._down(f"does not answer ({error})", refused=0)
            return
        except ResponseError as error:  # MISCONF, OOM, or another refusal: retried at the next round either way
            self._down(rk.refusal(error) or f"refuses writes ({error})", refused=0)
            return
        if not self._available:
            self._outage.succeeded()
        self._available = True

    def _down(self, cause: str, refused: int = 1) -> StoreUnavailableError:
        """Redis failed a round trip for ``cause``: unavailable until :meth:`_recover`; the error to answer."""
        self._available = False
        return self._outage.failed(cause, refused)

    def _unavailable(self) -> StoreUnavailableError:
        """The error of a write refused without a round trip while Redis is unavailable."""
        return StoreUnavailableError(self.unavailable_cause)

    def _ship_spools(self) -> None:
        """Log every spooled decision once: this process's spool, and those of processes that died."""
        if self._spool is not None and self._spooled:
            self._ship(self._spool_path)
            self._spool.truncate(0)
            os.fsync(self._spool.fileno())
            self._spooled = 0
        if not self.spool_dir.is_dir():
            return
        for path in sorted(self.spool_dir.glob("*" + _SPOOL_SUFFIX)):
            if path == self._spool_path:
                continue
            with open(path, "a+", encoding="utf-8") as orphan:
                try:
                    fcntl.flock(orphan, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a live worker's spool: it ships its own
                self._ship(path)
                path.unlink()

    def _ship(self, path: Path) -> None:
        """Log the decisions of a spool file; decisions shipped before (a crash mid-ship) are skipped."""
        with open(path, encoding="utf-8") as spool:
            records = [decision_from_row(json.loads(line)) for line in spool if line.strip()]
        by_experiment: dict[str, list[DecisionRecord]] = {}
        for record in records:
            by_experiment.setdefault(record.experiment, []).append(record)
        shipped = 0
        for name, rows in by_experiment.items():
            keys = self.keys(name)
            for start in range(0, len(rows), 1000):
                chunk = rows[start : start + 1000]
                shipped += self.client.evalsha(self._sha["log"], 5, *rk.log_keys(keys), *rk.log_args(chunk))
        if records:
            logger.warning(
                "shipped %d decisions spooled while Redis was down (%d were already logged)",
                shipped,
                len(records) - shipped,
            )


def _append(descriptor: int, data: bytes) -> None:
    """Append ``data`` to an open file and fsync it; on failure the file is cut back to its size before."""
    size = os.fstat(descriptor).st_size
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
        os.fsync(descriptor)
    except OSError:
        os.ftruncate(descriptor, size)
        raise


def _window(config: dict) -> float:
    return float(config.get("attribution_window_s", float("inf")))


def _nothing(reply) -> None:
    return None


def _commit(reply: list) -> RewardCommit:
    """CLAIM_REWARDS' (code, reward JSON) pairs as a commit that learned nothing."""
    outcomes = []
    for code, text in zip(reply[::2], reply[1::2], strict=True):
        if code in ("old", "new"):
            outcomes.append(RewardOutcome(rk.reward_from_json(text), code == "new"))
        else:
            outcomes.append(RewardOutcome(None, False, code))
    return RewardCommit(outcomes)


def _event_json(name: str, version: int, event: dict) -> str:
    return json.dumps({"experiment": name, "time": time.time(), "policy_version": version, **event})


def _snapshot(name: str, snapshot_id: int, text: str, blob: bytes | None) -> SnapshotRecord:
    """A snapshot from its JSON and packed state (stores written before the state was packed kept it in the JSON)."""
    data = json.loads(text)
    state = rk.unpack_state(data["state"].encode() if blob is None else blob)
    return SnapshotRecord(snapshot_id, name, data["policy_version"], data["created_at"], data["model"], state)

"""The embedded store: one SQLite file in WAL mode, written by a group-commit thread.

Durability: ``synchronous=FULL`` (the default) makes every commit survive a
power loss; ``NORMAL`` survives a crash of the process (kill -9) but may lose
the last commits on power loss. Either way a decision or reward is answered
only after the transaction that holds it has committed.

A full disk (or quota, or file-size limit) and disk I/O errors make writes
fail with :class:`~.base.StoreUnavailableError` naming the cause (503 with
Retry-After); the store is unavailable from the first such failure until a
write succeeds a second after the last one (:class:`~.base.Outage`).

The reward rows are the truth of what an experiment learned: each learned
reward is logged with the policy version its delta made and its place in that
delta. The policy state is a *checkpoint*, written when it pays (see
:class:`SQLiteStore`), never once per commit: a reward's commit writes its
rows and a new version, a few hundred bytes, however large the state. On
opening, the store reads each experiment's checkpoint and learns the rewards
logged after it again, in the same groups and order, so the model it serves is
the one it served before a crash, bit for bit.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..._codec import array_from_bytes
from .base import (
    COUNT_WIDTHS,
    DELETED,
    Assignment,
    DecisionCounts,
    DecisionRecord,
    ExperimentExistsError,
    ExperimentRecord,
    ModelChange,
    Outage,
    RewardCommit,
    RewardRecord,
    RewardWork,
    SnapshotRecord,
    State,
    Store,
    check_count_width,
    claim,
    countable,
    decision_from_row,
    decision_row,
    decode_state,
    disk_failure,
    encode_state,
    moved,
    reward_from_row,
    reward_row,
    status_of,
)
from .lanes import Lanes, Plan, fail, learn_in_order, settle
from .planner import DeltaPlanner
from .writer import Checkpointer, GroupCommitWriter

logger = logging.getLogger("banditkit.service")

#: An experiment's policy state as of a version, one row per array (in the store's file and in the lanes').
CHECKPOINTS = """
CREATE TABLE IF NOT EXISTS checkpoints (
    experiment TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL, dtype TEXT NOT NULL,
    shape TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (experiment, key));
"""
SCHEMA = (
    CHECKPOINTS
    + """
CREATE TABLE IF NOT EXISTS experiments (
    name TEXT PRIMARY KEY, config TEXT NOT NULL, model TEXT NOT NULL,
    version INTEGER NOT NULL, created_at REAL NOT NULL, sweep_watermark REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY, experiment TEXT NOT NULL, time REAL NOT NULL, unit TEXT,
    context TEXT, arm TEXT NOT NULL, propensity REAL NOT NULL, probabilities TEXT NOT NULL,
    policy_version INTEGER NOT NULL, fallback INTEGER NOT NULL,
    policy TEXT NOT NULL DEFAULT 'current') WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS decisions_by_time ON decisions (experiment, time);
CREATE TABLE IF NOT EXISTS rewards (
    decision_id TEXT PRIMARY KEY, experiment TEXT NOT NULL, arm TEXT NOT NULL, value REAL NOT NULL,
    time REAL NOT NULL, source TEXT NOT NULL, applied INTEGER NOT NULL,
    version INTEGER, position INTEGER) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS decision_counts (
    experiment TEXT NOT NULL, width INTEGER NOT NULL, bucket INTEGER NOT NULL, arm TEXT NOT NULL,
    decisions INTEGER NOT NULL, PRIMARY KEY (experiment, width, bucket, arm)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS assignments (
    experiment TEXT NOT NULL, unit TEXT NOT NULL, arm TEXT NOT NULL, propensity REAL NOT NULL,
    probabilities TEXT NOT NULL, PRIMARY KEY (experiment, unit)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    snapshot_id INTEGER PRIMARY KEY AUTOINCREMENT, experiment TEXT NOT NULL,
    policy_version INTEGER NOT NULL, created_at REAL NOT NULL, model TEXT NOT NULL, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT, experiment TEXT NOT NULL, time REAL NOT NULL,
    policy_version INTEGER NOT NULL, detail TEXT NOT NULL);
"""
)
#: The lanes' checkpoints go to the file named after the store's with this suffix.
CHECKPOINT_SUFFIX = "-checkpoints"
#: The learned rewards of an experiment after a version (made after :func:`_migrate`, which adds the column).
LEARNED_INDEX = "CREATE INDEX IF NOT EXISTS rewards_learned ON rewards (experiment, version) WHERE version IS NOT NULL"
_DECISION_COLUMNS = (
    "decision_id, time, experiment, unit, context, arm, propensity, probabilities, policy_version, fallback, policy"
)

#: The tables a purge empties of an experiment's rows, the decision log's first (their counts are reported).
_PURGED = ("decisions", "rewards", "decision_counts", "assignments", "snapshots", "checkpoints")
#: Parameters per multi-row INSERT at most (SQLite allows 32,766).
_MAX_PARAMETERS = 30_000
#: Seconds without a refused write before a successful one ends an outage (a nearly full disk takes some).
_QUIET_S = 1.0
#: About what a learned reward adds to the log, in bytes: a checkpoint is due once the rewards since the last
#: one hold as many bytes as the state (learning them again on opening costs about what writing it costs).
_REWARD_BYTES = 100
#: Seconds between two checkpoints of one experiment at least, however many rewards it learns.
_CHECKPOINT_MIN_S = 1.0
#: An experiment whose state holds at most this many bytes has its rewards learned in the writer's transaction
#: while its lane is idle: one thread hand-off less per reward, and its answers come back with the decisions'
#: of the same group commit. A larger state's rewards are learned in its lane, never holding the writer.
_INLINE_STATE_BYTES = 64 * 1024
#: The WAL file is cut back to this size once checkpointed (it keeps its largest size otherwise).
_WAL_LIMIT_BYTES = 64 * 1024 * 1024


def _insert(db: sqlite3.Connection, statement: str, rows: list[tuple]) -> None:
    """``statement`` ("INSERT ... VALUES") for every row, with one multi-row statement per chunk.

    ``executemany`` steps once per row, and every step drops and retakes the
    interpreter lock: a switch with the event loop per row.
    """
    if not rows:
        return
    width = len(rows[0])
    per_chunk = _MAX_PARAMETERS // width
    placeholder = "(" + ", ".join("?" * width) + ")"
    for begin in range(0, len(rows), per_chunk):
        chunk = rows[begin : begin + per_chunk]
        db.execute(f"{statement} " + ", ".join([placeholder] * len(chunk)), [value for row in chunk for value in row])


@dataclass
class _Learned:
    """An experiment as its lane learned it: model, arrays and version, and what its last checkpoint holds."""

    model: dict[str, Any]
    arrays: State
    version: int
    checkpoint_at: float  # time.monotonic() of the last checkpoint
    rewards_since: int = 0  # rewards learned since it

    def state_bytes(self) -> int:
        return sum(array.nbytes for array in self.arrays.values())


@dataclass(frozen=True, slots=True)
class _Sent:
    """A run of reward work planned on ``version`` and sent to the writer; ``future`` answers its commit."""

    run: list[tuple[RewardWork, Future]]
    plan: Plan
    version: int
    future: Future


class _Moved(Exception):
    """A reward commit found its experiment moved since it planned (a model change came first): plan again."""


class SQLiteStore(Store):
    """A store in one SQLite file; safe for one server process with any number of threads.

    A large experiment's rewards are learned in its lane (:class:`~.lanes.Lanes`):
    the delta is planned on the arrays the experiment's previous reward left,
    then the writer thread commits the rows and the new version, provided the
    experiment did not move meanwhile. The writer thread therefore never
    computes a large delta, and a heavy experiment delays no other experiment's
    decisions or rewards. A small experiment's rewards (a state of at most
    :data:`_INLINE_STATE_BYTES`) are planned inside the writer's transaction
    while nothing of the experiment is in its lane: a delta of a few arrays
    costs the writer less than the hand-offs through a lane would. An experiment's state is checkpointed by the writer
    when it changed and either ``checkpoint_s`` seconds passed since the last
    checkpoint, or the rewards learned since then hold as many bytes as the
    state (and a second passed); and on :meth:`close`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "FULL",
        commit_interval_s: float = 0.0,
        checkpoint_s: float = 10.0,
    ) -> None:
        self.path = str(path)
        self.synchronous = synchronous
        self.checkpoint_s = checkpoint_s
        setup = self._connect()
        setup.execute("PRAGMA journal_mode=WAL")
        counted = _has_table(setup, "decision_counts")
        setup.executescript(SCHEMA)
        _migrate(setup)
        _migrate_policy(setup)
        if not counted:
            _count_decisions(setup)
        setup.execute(LEARNED_INDEX)
        # experiment -> [decisions, rewards]: counted once here, then kept by the writer thread after each
        # commit, so that `counts` (the stats endpoint) costs nothing however long the log grows.
        self._counts = _count_rows(setup)
        setup.close()
        self._readers: list[sqlite3.Connection] = []
        self._local = threading.local()
        self._readers_lock = threading.Lock()
        # What each experiment's lane learned (loaded, and learned again since its checkpoint, on first use).
        self._learned: dict[str, _Learned] = {}
        self._learned_lock = threading.RLock()
        # experiment -> (writer transaction, arrays, version) its last reward job there left: what the next reward
        # job of the same transaction plans on (the writer thread's only).
        self._planned: dict[str, tuple[int, State, int]] = {}
        self.outage = Outage(
            "the SQLite store",
            self.path,
            "decisions, rewards and experiment changes are answered 503 with Retry-After until it takes writes",
            quiet_s=_QUIET_S,
        )
        self._writer = GroupCommitWriter(
            self._write_connection, commit_interval_s, outage=self.outage, refusal=refused_write, probe=_probe
        )
        self._checkpointer = Checkpointer(self._connect)
        # The lanes' checkpoints go to a file of their own: writing megabytes there never holds the main
        # file's write lock, for which every decision's commit waits. Creation and model changes write
        # theirs in the main file, with the model; the newer of the two is the experiment's checkpoint.
        self.checkpoint_path = self.path + CHECKPOINT_SUFFIX
        self._side = sqlite3.connect(self.checkpoint_path, isolation_level=None, check_same_thread=False, timeout=30.0)
        self._side.execute("PRAGMA journal_mode=WAL")
        # No fsync per checkpoint: its commit would flush megabytes while decisions' commits wait for the same
        # disk. A checkpoint lost in a power cut is no loss: the rewards since the one before are learned again.
        self._side.execute("PRAGMA synchronous=NORMAL")
        self._side.executescript(CHECKPOINTS)
        self._side_lock = threading.Lock()
        self._lanes = Lanes(self._learn, self._replace)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        connection.execute(f"PRAGMA synchronous={self.synchronous}")
        return connection

    def _write_connection(self) -> sqlite3.Connection:
        connection = self._connect()
        connection.execute("PRAGMA wal_autocheckpoint=0")  # the Checkpointer's job, off the commit path
        connection.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT_BYTES}")
        return connection

    def _reader(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._connect()
            with self._readers_lock:
                self._readers.append(connection)
        return connection

    def close(self) -> None:
        """Learn and commit what is queued, checkpoint every experiment that changed since its checkpoint, close."""
        self._lanes.close()
        self._writer.close()
        with self._learned_lock:
            changed = [(name, learned) for name, learned in self._learned.items() if learned.rewards_since]
        for name, learned in changed:
            self._checkpoint(name, learned)
        self._side.close()
        self._checkpointer.close()
        with self._readers_lock:
            for connection in self._readers:
                connection.close()
            self._readers.clear()

    @property
    def writer(self) -> GroupCommitWriter:
        return self._writer

    @property
    def unavailable_cause(self) -> str | None:
        return self.outage.reason

    # ---- catalogue ---------------------------------------------------------
    def create_experiment(self, record: ExperimentRecord, event: dict) -> Future:
        checkpoint = _checkpoint_rows(record.name, record.state, record.version)

        def job(db: sqlite3.Connection, after_commit) -> None:
            try:
                db.execute(
                    "INSERT INTO experiments VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        record.name,
                        json.dumps(record.config),
                        json.dumps(record.model),
                        record.version,
                        record.created_at,
                        record.sweep_watermark,
                    ),
                )
            except sqlite3.IntegrityError as error:
                raise ExperimentExistsError(record.name) from error
            _write_checkpoint(db, record.name, checkpoint)
            _insert_event(db, record.name, record.version, event)
            after_commit(lambda: self._learn_model(record.name, record.model, record.state, record.version))

        return self._writer.submit(job, exclusive=True)

    def load_experiments(self) -> list[ExperimentRecord]:
        rows = (
            self._reader()
            .execute("SELECT name, config, created_at, sweep_watermark FROM experiments ORDER BY created_at")
            .fetchall()
        )
        records = []
        for name, config, created_at, watermark in rows:
            with self._learned_lock:
                learned = self._current(name)
                model, arrays, version = learned.model, learned.arrays, learned.version
            records.append(ExperimentRecord(name, json.loads(config), model, arrays, version, created_at, watermark))
        return records

    def replace_model(self, name: str, change: ModelChange) -> Future:
        """In the experiment's lane: after every reward submitted before it, before any submitted after it."""
        return self._lanes.submit(name, change)

    def _replace(self, name: str, change: ModelChange) -> None:
        """Write ``change`` alone, with its state as the experiment's checkpoint (what later rewards add to)."""
        checkpoint = _checkpoint_rows(name, change.state, change.version)

        def job(db: sqlite3.Connection, after_commit) -> None:
            (stored,) = db.execute("SELECT version FROM experiments WHERE name = ?", (name,)).fetchone()
            if stored != change.expected_version:
                raise moved(name, stored, change)
            config = None if change.config is None else json.dumps(change.config)
            db.execute(
                "UPDATE experiments SET model = ?, version = ?, config = COALESCE(?, config) WHERE name = ?",
                (json.dumps(change.model), change.version, config, name),
            )
            _write_checkpoint(db, name, checkpoint)
            _insert_event(db, name, change.version, change.event)
            after_commit(lambda: self._learn_model(name, change.model, change.state, change.version))

        self._writer.submit(job, exclusive=True).result()

    def _learn_model(self, name: str, model: dict[str, Any], arrays: State, version: int) -> None:
        """After a commit that wrote a whole model (creation, model change): what the lane learns from next."""
        with self._learned_lock:
            self._learned[name] = _Learned(model, arrays, version, time.monotonic())

    def deleted_names(self) -> set[str]:
        rows = self._reader().execute("SELECT name, config FROM experiments").fetchall()
        return {name for name, config in rows if status_of(json.loads(config)) == DELETED}

    def purge_experiment(self, name: str, event: dict) -> Future:
        """One transaction deletes every row of the experiment but its events; then its lanes' checkpoint goes."""

        def job(db: sqlite3.Connection, after_commit) -> tuple[int, int]:
            (version,) = db.execute("SELECT version FROM experiments WHERE name = ?", (name,)).fetchone()
            removed = [db.execute(f"DELETE FROM {table} WHERE experiment = ?", (name,)).rowcount for table in _PURGED]
            db.execute("DELETE FROM experiments WHERE name = ?", (name,))
            _insert_event(db, name, version, event)
            after_commit(lambda: self._forget(name))
            return removed[0], removed[1]

        return self._writer.submit(job, exclusive=True)

    def _forget(self, name: str) -> None:
        """After a purge committed: nothing of ``name`` stays in memory or in the checkpoint file."""
        with self._learned_lock:
            self._learned.pop(name, None)
        self._counts.pop(name, None)
        with self._side_lock:
            self._side.execute("DELETE FROM checkpoints WHERE experiment = ?", (name,))

    def save_snapshot(
        self, name: str, model: dict, state: State, version: int, created_at: float | None = None
    ) -> Future:
        created_at = time.time() if created_at is None else created_at

        def job(db: sqlite3.Connection, _after) -> int:
            cursor = db.execute(
                "INSERT INTO snapshots (experiment, policy_version, created_at, model, state) VALUES (?, ?, ?, ?, ?)",
                (name, version, created_at, json.dumps(model), encode_state(state)),
            )
            snapshot_id = cursor.lastrowid
            assert snapshot_id is not None  # an INSERT into a rowid table
            _insert_event(db, name, version, {"kind": "snapshot", "snapshot_id": snapshot_id})
            return snapshot_id

        return self._writer.submit(job, exclusive=True)

    def get_snapshot(self, name: str, snapshot_id: int) -> SnapshotRecord | None:
        row = (
            self._reader()
            .execute(
                "SELECT snapshot_id, experiment, policy_version, created_at, model, state "
                "FROM snapshots WHERE experiment = ? AND snapshot_id = ?",
                (name, snapshot_id),
            )
            .fetchone()
        )
        return None if row is None else _snapshot(row)

    def list_snapshots(self, name: str) -> list[SnapshotRecord]:
        rows = self._reader().execute(
            "SELECT snapshot_id, experiment, policy_version, created_at, model, state "
            "FROM snapshots WHERE experiment = ? ORDER BY snapshot_id",
            (name,),
        )
        return [_snapshot(row) for row in rows]

    def events(self, name: str) -> list[dict]:
        rows = self._reader().execute(
            "SELECT time, policy_version, detail FROM events WHERE experiment = ? ORDER BY event_id", (name,)
        )
        return [{"experiment": name, "time": t, "policy_version": v, **json.loads(detail)} for t, v, detail in rows]

    # ---- decision log ------------------------------------------------------
    def append_decisions(self, rows: list[DecisionRecord], assignments: dict[str, Assignment] | None = None) -> Future:
        values = [decision_row(r) for r in rows]
        sticky = (
            [
                (rows[0].experiment, unit, a.arm, a.propensity, json.dumps(a.probabilities))
                for unit, a in (assignments or {}).items()
            ]
            if rows
            else []
        )

        counted = _bucket_counts(rows)

        def job(db: sqlite3.Connection, after_commit) -> None:
            _insert(db, f"INSERT INTO decisions ({_DECISION_COLUMNS}) VALUES", values)
            _insert(db, "INSERT OR REPLACE INTO assignments VALUES", sticky)
            _add_counts(db, counted)
            after_commit(lambda: self._tally(0, [r.experiment for r in rows]))

        return self._writer.submit(job)

    def get_decision(self, decision_id: str) -> DecisionRecord | None:
        row = (
            self._reader()
            .execute(f"SELECT {_DECISION_COLUMNS} FROM decisions WHERE decision_id = ?", (decision_id,))
            .fetchone()
        )
        return None if row is None else decision_from_row(row)

    def get_reward(self, decision_id: str) -> RewardRecord | None:
        row = (
            self._reader()
            .execute(
                "SELECT decision_id, experiment, arm, value, time, source, applied FROM rewards WHERE decision_id = ?",
                (decision_id,),
            )
            .fetchone()
        )
        return None if row is None else reward_from_row(row)

    def find_decisions(self, ids: list[str]) -> dict[str, tuple[DecisionRecord, RewardRecord | None]]:
        found = {}
        columns = ", ".join("d." + column.strip() for column in _DECISION_COLUMNS.split(","))
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            rows = self._reader().execute(
                f"SELECT {columns}, r.decision_id, r.experiment, r.arm, r.value, r.time, r.source, r.applied "
                "FROM decisions d LEFT JOIN rewards r ON r.decision_id = d.decision_id "
                f"WHERE d.decision_id IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
            for row in rows:
                found[row[0]] = (decision_from_row(row[:11]), None if row[11] is None else reward_from_row(row[11:]))
        return found

    def get_assignment(self, name: str, unit: str) -> Assignment | None:
        row = (
            self._reader()
            .execute(
                "SELECT arm, propensity, probabilities FROM assignments WHERE experiment = ? AND unit = ?", (name, unit)
            )
            .fetchone()
        )
        return None if row is None else Assignment(row[0], row[1], json.loads(row[2]))

    def commit_rewards(self, work: RewardWork) -> Future:
        """Learn ``work`` in the writer's transaction (a small experiment, its lane idle), or in its lane.

        In the lane, the writer thread commits only the rows and version the lane planned.
        """
        name = work.experiment
        learned = self._learned.get(name)
        if learned is not None and self._lanes.idle(name) and learned.state_bytes() <= _INLINE_STATE_BYTES:
            return self._writer.submit(self._learn_inline(name, work))
        return self._lanes.submit(name, work)

    def _learn_inline(self, name: str, work: RewardWork):
        """The writer's job that plans ``work`` on the stored state and commits it; it answers the RewardCommit.

        Submitted only while the experiment's lane is idle, so it comes after every reward and model change
        submitted before it. A planner's error fails the job alone (the writer runs the others of its group
        again without it).
        """
        ids = [reward.decision_id for reward in work.rewards]

        def job(db: sqlite3.Connection, after_commit) -> RewardCommit:
            (stored,) = db.execute("SELECT version FROM experiments WHERE name = ?", (name,)).fetchone()
            plan = learn_in_order([work], _existing_rewards(db, ids), self._arrays_at(db, name, stored), stored)
            (commit,) = plan.commits
            if isinstance(commit, Exception):
                raise commit
            rows = [(*reward_row(row), made, position) for row, made, position in plan.rows]
            _insert(db, "INSERT INTO rewards VALUES", rows)
            if plan.version != stored or plan.watermark is not None:
                db.execute(
                    "UPDATE experiments SET version = ?, sweep_watermark = COALESCE(?, sweep_watermark) WHERE name = ?",
                    (plan.version, plan.watermark, name),
                )
            self._planned[name] = (self._writer.transaction, plan.arrays, plan.version)
            recorded = [name] * len(rows)
            after_commit(lambda: self._inline_committed(name, plan, recorded))
            return commit

        return job

    def _arrays_at(self, db: sqlite3.Connection, name: str, version: int) -> State:
        """In the writer thread: the arrays of ``name`` at ``version``, the version its transaction sees now.

        What an earlier job of the same transaction planned, else what was learned up to the last commit
        (every reward commit and model change updates it right after committing), else, should neither be
        at ``version``, the stored state itself (checkpoint and the rewards logged after it).
        """
        planned = self._planned.get(name)
        if planned is not None and planned[0] == self._writer.transaction and planned[2] == version:
            return planned[1]
        with self._learned_lock:
            learned = self._learned.get(name)
            if learned is not None and learned.version == version:
                return learned.arrays
        with self._side_lock:
            side = _read_checkpoint(self._side, name)
        return _restore(db, name, side).arrays

    def _inline_committed(self, name: str, plan: Plan, recorded: list[str]) -> None:
        """After a reward job learned in the writer's transaction committed: learn from its arrays next."""
        with self._learned_lock:
            learned = self._learned.get(name)
            if learned is not None and learned.version < plan.version:
                learned.arrays, learned.version = plan.arrays, plan.version
                learned.rewards_since += plan.learned
        self._tally(1, recorded)
        if learned is not None and self._checkpoint_due(learned):
            self._checkpoint(name, learned)

    def _learn(self, name: str, run: list[tuple[RewardWork, Future]]) -> None:
        """In the experiment's lane: plan each run on the arrays the previous one left, commit, checkpoint if due.

        While a run commits, the rewards queued behind it are taken and planned on the arrays it will leave,
        and sent to the writer too, so that every group commit can carry an experiment's rewards. Each run
        is planned as if none of its rewards were recorded yet (the common case: no retry), which the writer's
        job checks; a run that finds one recorded, or its experiment moved (the run before it failed), is
        planned again on what is stored, in order (:meth:`_learn_alone`).
        """
        current: _Sent | None = self._send(name, run, None)
        while current is not None:
            taken = self._lanes.take_rewards(name)
            following = self._send(name, taken, current) if taken else None
            try:
                committed = self._settle(name, current)
            except BaseException as error:  # the writer failed: its callers hear of it, the next run goes on
                fail(current.run, error)
                committed = True
            if not committed:
                # Planned on arrays not stored: the run after it (planned on those) waits for its own answer.
                retry = [current.run]
                if following is not None and not self._settle_quietly(name, following):
                    retry.append(following.run)
                for again in retry:
                    self._learn_alone(name, again)
                following = None
            current = following
        learned = self._learned.get(name)
        if learned is not None and self._checkpoint_due(learned):
            self._checkpoint(name, learned)

    def _send(self, name: str, run: list[tuple[RewardWork, Future]], after: _Sent | None) -> _Sent:
        """Plan ``run`` on what the experiment learned, or on what ``after`` will leave, and send it to the writer."""
        if after is None:
            with self._learned_lock:
                learned = self._current(name)
                arrays, version = learned.arrays, learned.version
        else:
            arrays, version = after.plan.arrays, after.plan.version
        plan = learn_in_order([work for work, _ in run], {}, arrays, version)
        return _Sent(run, plan, version, self._writer.submit(self._record(name, plan, version)))

    def _settle(self, name: str, sent: _Sent) -> bool:
        """Wait for ``sent``'s commit and settle its callers; False if it found its experiment moved."""
        try:
            sent.future.result()
        except _Moved:
            return False
        self._learned_from(name, sent.plan, sent.version)
        settle(sent.run, sent.plan)
        return True

    def _settle_quietly(self, name: str, sent: _Sent) -> bool:
        """:meth:`_settle`, with a failure of the writer handed to ``sent``'s callers (True: nothing to retry)."""
        try:
            return self._settle(name, sent)
        except BaseException as error:
            fail(sent.run, error)
            return True

    def _learn_alone(self, name: str, run: list[tuple[RewardWork, Future]]) -> None:
        """Plan ``run`` on what is stored (its recorded rewards read) and commit it, until it commits unmoved."""
        works = [work for work, _ in run]
        ids = [reward.decision_id for work in works for reward in work.rewards]
        while True:
            stored = _existing_rewards(self._reader(), ids)
            with self._learned_lock:
                learned = self._current(name)
                arrays, version = learned.arrays, learned.version
            plan = learn_in_order(works, stored, arrays, version)
            try:
                self._writer.submit(self._record(name, plan, version)).result()
            except _Moved:
                continue
            self._learned_from(name, plan, version)
            settle(run, plan)
            return

    def _learned_from(self, name: str, plan: Plan, version: int) -> None:
        """After ``plan``, made on ``version``, committed: the lane learns from its arrays next."""
        with self._learned_lock:
            learned = self._learned.get(name)
            if learned is not None and learned.version == version:
                learned.arrays, learned.version = plan.arrays, plan.version
                learned.rewards_since += plan.learned

    def _record(self, name: str, plan: Plan, version: int):
        """The writer's job for a reward work a lane planned on ``version``.

        Its rows and version, if the experiment is still at
        ``version`` and none of its rewards was recorded meanwhile (else :class:`_Moved`). Once committed,
        what the experiment learned is the plan's, before the writer runs another transaction.
        """
        rows = [(*reward_row(row), made, position) for row, made, position in plan.rows]
        after, watermark = plan.version, plan.watermark

        def job(db: sqlite3.Connection, after_commit) -> None:
            (stored,) = db.execute("SELECT version FROM experiments WHERE name = ?", (name,)).fetchone()
            if stored != version or _existing_rewards(db, [row[0] for row in rows]):
                raise _Moved(name)
            _insert(db, "INSERT INTO rewards VALUES", rows)
            if after != version or watermark is not None:
                db.execute(
                    "UPDATE experiments SET version = ?, sweep_watermark = COALESCE(?, sweep_watermark) WHERE name = ?",
                    (after, watermark, name),
                )
            self._planned[name] = (self._writer.transaction, plan.arrays, after)
            recorded = [name] * len(rows)

            def committed() -> None:
                self._learned_from(name, plan, version)
                self._tally(1, recorded)

            after_commit(committed)

        return job

    def _current(self, name: str) -> _Learned:
        """What the lane of ``name`` learned.

        Read from the file (checkpoint, then the rewards logged after
        it learned again) the first time. Called with ``_learned_lock`` held.
        """
        learned = self._learned.get(name)
        if learned is None:
            with self._side_lock:
                side = _read_checkpoint(self._side, name)
            learned = self._learned[name] = _restore(self._reader(), name, side)
        return learned

    def _checkpoint_due(self, learned: _Learned) -> bool:
        elapsed = time.monotonic() - learned.checkpoint_at
        if not learned.rewards_since or elapsed < _CHECKPOINT_MIN_S:
            return False
        return elapsed >= self.checkpoint_s or learned.rewards_since * _REWARD_BYTES >= learned.state_bytes()

    def _checkpoint(self, name: str, learned: _Learned) -> None:
        """Write what ``learned`` holds now to the checkpoint file, in the lane.

        Nothing waits for it but the experiment's next rewards. A failure is logged: the rewards since stay in
        the log, and the next checkpoint, or the next opening, catches up.
        """
        with self._learned_lock:
            version, arrays = learned.version, learned.arrays
            learned.checkpoint_at, learned.rewards_since = time.monotonic(), 0
        rows = _checkpoint_rows(name, arrays, version)
        with self._side_lock:
            try:
                self._side.execute("BEGIN IMMEDIATE")
                _write_checkpoint(self._side, name, rows)
                self._side.execute("COMMIT")
            except sqlite3.Error as error:
                if self._side.in_transaction:
                    self._side.execute("ROLLBACK")
                logger.error("checkpoint of experiment %r not written: %s", name, error)

    def unrewarded(self, name: str, since: float, before: float, limit: int) -> list[DecisionRecord]:
        rows = self._reader().execute(
            f"SELECT {_DECISION_COLUMNS} FROM decisions d WHERE experiment = ? AND time >= ? AND time < ? "
            "AND NOT EXISTS (SELECT 1 FROM rewards r WHERE r.decision_id = d.decision_id) "
            "ORDER BY time LIMIT ?",
            (name, since, before, limit),
        )
        return [decision_from_row(row) for row in rows]

    def iter_log(self, name: str) -> Iterator[tuple]:
        connection = self._connect()  # its own connection: a consistent read while writes go on
        try:
            yield from connection.execute(  # the ten first columns, the reward, the serving policy (Store.iter_log)
                f"SELECT {', '.join('d.' + c.strip() for c in _DECISION_COLUMNS.split(',')[:10])}, r.value, d.policy "
                "FROM decisions d LEFT JOIN rewards r ON r.decision_id = d.decision_id "
                "WHERE d.experiment = ? ORDER BY d.time, d.decision_id",
                (name,),
            )
        finally:
            connection.close()

    def counts(self, name: str) -> tuple[int, int]:
        decisions, rewards = self._counts.get(name, (0, 0))
        return decisions, rewards

    def decision_counts(self, name: str, width_s: int) -> DecisionCounts:
        """From the counts kept per bucket as decisions are logged: one row per bucket and arm, not per decision."""
        check_count_width(width_s)
        rows = (
            self._reader()
            .execute(
                "SELECT bucket, arm, decisions FROM decision_counts WHERE experiment = ? AND width = ?",
                (name, width_s),
            )
            .fetchall()
        )
        buckets, arms, counts = zip(*rows, strict=True) if rows else ((), (), ())
        return DecisionCounts.from_rows(width_s, buckets, list(arms), counts)

    def _tally(self, column: int, experiments: list[str]) -> None:
        """After a commit, in the writer thread: count what it logged (column 0 decisions, 1 rewards)."""
        for name, added in Counter(experiments).items():
            self._counts.setdefault(name, [0, 0])[column] += added


def refused_write(error: Exception) -> str | None:
    """The cause when ``error`` is the disk refusing a write (full, quota, file-size limit, I/O error), else None."""
    if isinstance(error, OSError):
        return disk_failure(error)
    code = getattr(error, "sqlite_errorcode", None) if isinstance(error, sqlite3.Error) else None
    if code == sqlite3.SQLITE_FULL:
        return f"disk full ({error})"
    if code is not None and code & 0xFF == sqlite3.SQLITE_IOERR:  # extended codes: IOERR_WRITE, IOERR_FSYNC, ...
        return f"disk I/O error ({error})"
    return None


def _probe(db: sqlite3.Connection) -> None:
    """A write that changes nothing but still has pages to write (the catalogue's), to see the disk take them."""
    db.execute("UPDATE experiments SET sweep_watermark = sweep_watermark")


def _count_rows(db: sqlite3.Connection) -> dict[str, list[int]]:
    """[decisions, rewards] logged per experiment."""
    counts: dict[str, list[int]] = {}
    for column, table in enumerate(("decisions", "rewards")):
        for name, rows in db.execute(f"SELECT experiment, COUNT(*) FROM {table} GROUP BY experiment"):
            counts.setdefault(name, [0, 0])[column] = rows
    return counts


#: Adds a bucket's decisions of an arm to the counts (the row is created by the first).
_ADD_COUNTS = " ON CONFLICT (experiment, width, bucket, arm) DO UPDATE SET decisions = decisions + excluded.decisions"


def _add_counts(db: sqlite3.Connection, counted: list[tuple[str, int, int, str, int]]) -> None:
    """Add ``counted`` (rows of :func:`_bucket_counts`, one per key) to ``decision_counts``.

    One multi-row upsert per chunk, not ``executemany``: that drops and retakes the interpreter lock once per
    row, a wait for a busy event loop each time (see :func:`_insert`).
    """
    per_chunk = _MAX_PARAMETERS // 5
    for begin in range(0, len(counted), per_chunk):
        chunk = counted[begin : begin + per_chunk]
        db.execute(
            "INSERT INTO decision_counts VALUES " + ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk)) + _ADD_COUNTS,
            [value for row in chunk for value in row],
        )


def _bucket_counts(rows: list[DecisionRecord]) -> list[tuple[str, int, int, str, int]]:
    """The rows of ``decision_counts`` that ``rows`` add to: (experiment, width, bucket, arm, decisions).

    A bucket is ``floor(time / width)``, as SQLite computes it in :func:`_count_decisions` (times are positive);
    a time whose bucket is not a 64-bit integer is not counted (:func:`~.base.countable`).
    """
    # Plain dicts rather than Counters: most batches hold one to a few decisions, for which building a Counter
    # costs more than the counting.
    grouped: dict[tuple[str, float, str], int] = {}
    for r in rows:
        group = r.experiment, r.time, r.arm
        grouped[group] = grouped.get(group, 0) + 1
    tally: dict[tuple[str, int, int, str], int] = {}
    buckets: dict[float, list[tuple[int, int]]] = {}  # a batch's decisions mostly share one time
    for (experiment, moment, arm), added in grouped.items():
        keys = buckets.get(moment)
        if keys is None:
            floors = [(width, math.floor(moment / width)) for width in COUNT_WIDTHS]
            keys = buckets[moment] = [(width, bucket) for width, bucket in floors if countable(bucket)]
        for width, bucket in keys:
            key = experiment, width, bucket, arm
            tally[key] = tally.get(key, 0) + added
    return [(*key, added) for key, added in tally.items()]


def _has_table(db: sqlite3.Connection, table: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is not None


def _count_decisions(db: sqlite3.Connection) -> None:
    """Count the decisions of a file written before ``decision_counts`` existed, once, when it is opened."""
    db.execute("BEGIN IMMEDIATE")
    for width in COUNT_WIDTHS:
        db.execute(
            "INSERT INTO decision_counts SELECT experiment, ?, CAST(time / ? AS INTEGER) AS bucket, arm, COUNT(*) "
            "FROM decisions GROUP BY experiment, bucket, arm",
            (width, width),
        )
    db.execute("COMMIT")


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a file written before checkpoints up to date, once.

    The state moves from the experiments table
    into ``checkpoints`` (at the version it was written with), and rewards get the columns that say which
    version they made (none for the earlier ones, which that state holds already).
    """
    experiments = {row[1] for row in db.execute("PRAGMA table_info(experiments)")}
    rewards = {row[1] for row in db.execute("PRAGMA table_info(rewards)")}
    if "state" not in experiments and "version" in rewards:
        return
    db.execute("BEGIN IMMEDIATE")
    if "version" not in rewards:
        db.execute("ALTER TABLE rewards ADD COLUMN version INTEGER")
        db.execute("ALTER TABLE rewards ADD COLUMN position INTEGER")
    if "state" in experiments:
        for name, text, version in db.execute("SELECT name, state, version FROM experiments").fetchall():
            _write_checkpoint(db, name, _checkpoint_rows(name, decode_state(text), version))
        db.execute("ALTER TABLE experiments DROP COLUMN state")
    db.execute("COMMIT")


def _migrate_policy(db: sqlite3.Connection) -> None:
    """Give a file written before policy canaries the decisions' ``policy`` column ("current" for every row)."""
    if "policy" not in {row[1] for row in db.execute("PRAGMA table_info(decisions)")}:
        db.execute("ALTER TABLE decisions ADD COLUMN policy TEXT NOT NULL DEFAULT 'current'")


def _restore(db: sqlite3.Connection, name: str, side: tuple[State, int] | None) -> _Learned:
    """An experiment as last learned.

    Its newest checkpoint (the main file's, written with the model, or
    ``side``, the lanes' file's), with the rewards logged after it learned again, one version after the
    other, each in the order it was learned (so the arrays are the very ones served).
    """
    found = db.execute("SELECT model, version FROM experiments WHERE name = ?", (name,)).fetchone()
    if found is None:
        raise KeyError(f"experiment {name!r} is not in {db.execute('PRAGMA database_list').fetchone()[2]}")
    model, version = json.loads(found[0]), found[1]
    main = _read_checkpoint(db, name)
    if main is None:
        raise RuntimeError(f"experiment {name!r} has no checkpoint")
    arrays, learned = side if side is not None and side[1] >= main[1] else main
    columns = ", ".join("d." + column.strip() for column in _DECISION_COLUMNS.split(","))
    rows = db.execute(
        f"SELECT r.version, r.decision_id, r.experiment, r.arm, r.value, r.time, r.source, r.applied, {columns} "
        "FROM rewards r JOIN decisions d ON d.decision_id = r.decision_id "
        "WHERE r.experiment = ? AND r.version > ? ORDER BY r.version, r.position",
        (name, learned),
    )
    replayed = 0
    for made, group in itertools.groupby(rows, key=lambda row: row[0]):
        batch = list(group)
        rewards = [reward_from_row(row[1:8]) for row in batch]
        planner = DeltaPlanner.of_model(model, {row[1]: decision_from_row(row[8:]) for row in batch})
        arrays = claim(RewardWork(name, rewards, planner), {}, arrays).arrays
        learned, replayed = made, replayed + len(rewards)
    if learned != version:
        raise RuntimeError(
            f"experiment {name!r} is at version {version} but its checkpoint and learned rewards reach {learned}"
        )
    if replayed:
        logger.info("experiment %r: learned %d rewards logged after its checkpoint again", name, replayed)
    return _Learned(model, arrays, version, time.monotonic(), replayed)


def _checkpoint_rows(name: str, state: State, version: int) -> list[tuple]:
    """A state as rows of ``checkpoints``.

    Each array's dtype, shape and raw bytes (no text encoding, so
    writing a large state holds the interpreter lock only to copy it).
    """
    return [
        (name, key, version, array.dtype.str, json.dumps(list(array.shape)), np.ascontiguousarray(array).tobytes())
        for key, array in state.items()
    ]


def _write_checkpoint(db: sqlite3.Connection, name: str, rows: list[tuple]) -> None:
    db.execute("DELETE FROM checkpoints WHERE experiment = ?", (name,))
    for row in rows:  # one statement per array: a multi-row INSERT would copy the arrays once more
        db.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?)", row)


def _read_checkpoint(db: sqlite3.Connection, name: str) -> tuple[State, int] | None:
    """The checkpointed state of ``name`` and its version, or None."""
    rows = db.execute(
        "SELECT key, version, dtype, shape, data FROM checkpoints WHERE experiment = ? ORDER BY rowid", (name,)
    ).fetchall()
    if not rows:
        return None
    state = {
        key: array_from_bytes(dtype, json.loads(shape), data, f"checkpoint[{key!r}]")
        for key, _, dtype, shape, data in rows
    }
    return state, rows[0][1]


def _existing_rewards(db: sqlite3.Connection, ids: list[str]) -> dict[str, RewardRecord]:
    found: dict[str, RewardRecord] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows = db.execute(
            "SELECT decision_id, experiment, arm, value, time, source, applied FROM rewards "
            f"WHERE decision_id IN ({', '.join('?' * len(chunk))})",
            chunk,
        )
        found.update((row[0], reward_from_row(row)) for row in rows)
    return found


def _insert_event(db: sqlite3.Connection, name: str, version: int, event: dict) -> None:
    db.execute(
        "INSERT INTO events (experiment, time, policy_version, detail) VALUES (?, ?, ?, ?)",
        (name, time.time(), version, json.dumps(event)),
    )


def _snapshot(row) -> SnapshotRecord:
    snapshot_id, experiment, version, created_at, model, state = row
    return SnapshotRecord(snapshot_id, experiment, version, created_at, json.loads(model), decode_state(state))

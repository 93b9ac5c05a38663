"""The embedded store: one SQLite file in WAL mode, written by a group-commit thread.

Durability: ``synchronous=FULL`` (the default) makes every commit survive a
power loss; ``NORMAL`` survives a crash of the process (kill -9) but may lose
the last commits on power loss. Either way a decision or reward is answered
only after the transaction that holds it has committed.

A full disk (or quota, or file-size limit) and disk I/O errors make writes
fail with :class:`~.base.StoreUnavailableError` naming the cause (503 with
Retry-After); the store is unavailable from the first such failure until a
write succeeds a second after the last one (:class:`~.base.Outage`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

from .base import (
    Assignment,
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
    claim,
    decision_from_row,
    decision_row,
    decode_state,
    disk_failure,
    encode_state,
    moved,
    reward_from_row,
    reward_row,
)
from .writer import Checkpointer, GroupCommitWriter

SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    name TEXT PRIMARY KEY, config TEXT NOT NULL, model TEXT NOT NULL, state TEXT NOT NULL,
    version INTEGER NOT NULL, created_at REAL NOT NULL, sweep_watermark REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY, experiment TEXT NOT NULL, time REAL NOT NULL, unit TEXT,
    context TEXT, arm TEXT NOT NULL, propensity REAL NOT NULL, probabilities TEXT NOT NULL,
    policy_version INTEGER NOT NULL, fallback INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS decisions_by_time ON decisions (experiment, time);
CREATE TABLE IF NOT EXISTS rewards (
    decision_id TEXT PRIMARY KEY, experiment TEXT NOT NULL, arm TEXT NOT NULL, value REAL NOT NULL,
    time REAL NOT NULL, source TEXT NOT NULL, applied INTEGER NOT NULL) WITHOUT ROWID;
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
_DECISION_COLUMNS = (
    "decision_id, time, experiment, unit, context, arm, propensity, probabilities, policy_version, fallback"
)

#: Parameters per multi-row INSERT at most (SQLite allows 32,766).
_MAX_PARAMETERS = 30_000
#: Seconds without a refused write before a successful one ends an outage (a nearly full disk takes some).
_QUIET_S = 1.0


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


class SQLiteStore(Store):
    """A store in one SQLite file; safe for one server process with any number of threads."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", commit_interval_s: float = 0.0) -> None:
        self.path = str(path)
        self.synchronous = synchronous
        setup = self._connect()
        setup.execute("PRAGMA journal_mode=WAL")
        setup.executescript(SCHEMA)
        # experiment -> [decisions, rewards]: counted once here, then kept by the writer thread after each
        # commit, so that `counts` (the stats endpoint) costs nothing however long the log grows.
        self._counts = _count_rows(setup)
        setup.close()
        self._readers: list[sqlite3.Connection] = []
        self._local = threading.local()
        self._readers_lock = threading.Lock()
        # Policy state changed by the current transaction's jobs, written once before its commit:
        # name -> [state, version, watermark or None]. Touched by the writer thread only.
        self._pending: dict[str, list] = {}
        # What the last commit wrote for each experiment, (state, version), so that the next transaction
        # neither reads nor decodes it; dropped with an abandoned transaction or a rewrite of the model.
        self._written: dict[str, tuple[State, int]] = {}
        self.outage = Outage(
            "the SQLite store",
            self.path,
            "decisions, rewards and experiment changes are answered 503 with Retry-After until it takes writes",
            quiet_s=_QUIET_S,
        )
        self._writer = GroupCommitWriter(
            self._write_connection,
            commit_interval_s,
            before_commit=self._flush_states,
            discard=self._discard_states,
            outage=self.outage,
            refusal=refused_write,
            probe=_probe,
        )
        self._checkpointer = Checkpointer(self._connect)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        connection.execute(f"PRAGMA synchronous={self.synchronous}")
        return connection

    def _write_connection(self) -> sqlite3.Connection:
        connection = self._connect()
        connection.execute("PRAGMA wal_autocheckpoint=0")  # the Checkpointer's job, off the commit path
        return connection

    def _reader(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._connect()
            with self._readers_lock:
                self._readers.append(connection)
        return connection

    def close(self) -> None:
        self._writer.close()
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
        def job(db: sqlite3.Connection, _after) -> None:
            try:
                db.execute(
                    "INSERT INTO experiments VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.name,
                        json.dumps(record.config),
                        json.dumps(record.model),
                        encode_state(record.state),
                        record.version,
                        record.created_at,
                        record.sweep_watermark,
                    ),
                )
            except sqlite3.IntegrityError as error:
                raise ExperimentExistsError(record.name) from error
            _insert_event(db, record.name, record.version, event)

        return self._writer.submit(job, exclusive=True)

    def load_experiments(self) -> list[ExperimentRecord]:
        rows = (
            self._reader()
            .execute(
                "SELECT name, config, model, state, version, created_at, sweep_watermark "
                "FROM experiments ORDER BY created_at"
            )
            .fetchall()
        )
        return [
            ExperimentRecord(
                name, json.loads(config), json.loads(model), decode_state(state), version, created_at, watermark
            )
            for name, config, model, state, version, created_at, watermark in rows
        ]

    def replace_model(self, name: str, change: ModelChange) -> Future:
        def job(db: sqlite3.Connection, _after) -> None:
            (stored,) = db.execute("SELECT version FROM experiments WHERE name = ?", (name,)).fetchone()
            if stored != change.expected_version:
                raise moved(name, stored, change)
            db.execute(
                "UPDATE experiments SET model = ?, state = ?, version = ? WHERE name = ?",
                (json.dumps(change.model), encode_state(change.state), change.version, name),
            )
            self._written.pop(name, None)
            _insert_event(db, name, change.version, change.event)

        return self._writer.submit(job, exclusive=True)

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

        def job(db: sqlite3.Connection, after_commit) -> None:
            _insert(db, f"INSERT INTO decisions ({_DECISION_COLUMNS}) VALUES", values)
            _insert(db, "INSERT OR REPLACE INTO assignments VALUES", sticky)
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
                found[row[0]] = (decision_from_row(row[:10]), None if row[10] is None else reward_from_row(row[10:]))
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
        def job(db: sqlite3.Connection, after_commit) -> RewardCommit:
            stored = _existing_rewards(db, [r.decision_id for r in work.rewards])
            pending = self._pending_state(db, work.experiment)
            claimed = claim(work, stored, pending[0])
            _insert(db, "INSERT INTO rewards VALUES", [reward_row(r) for r in claimed.rows])
            if claimed.delta is not None:
                pending[0], pending[1] = claimed.arrays, pending[1] + 1
            if work.watermark is not None:
                pending[2] = work.watermark
            recorded = [work.experiment] * len(claimed.rows)
            after_commit(lambda: self._tally(1, recorded))
            return RewardCommit(claimed.outcomes, claimed.delta, pending[1])

        return self._writer.submit(job)

    def _pending_state(self, db: sqlite3.Connection, name: str) -> list:
        """The transaction's copy of an experiment's [state, version, watermark or None].

        Written before the commit: what the last commit wrote (read from the file only the first time) with
        this transaction's deltas merged, so each delta is computed from the state it is merged into.
        """
        pending = self._pending.get(name)
        if pending is None:
            written = self._written.get(name)
            if written is None:
                text, version = db.execute("SELECT state, version FROM experiments WHERE name = ?", (name,)).fetchone()
                written = decode_state(text), version
            pending = self._pending[name] = [*written, None]
        return pending

    def _flush_states(self, db: sqlite3.Connection) -> None:
        for name, (state, version, watermark) in self._pending.items():
            db.execute(
                "UPDATE experiments SET state = ?, version = ?, "
                "sweep_watermark = COALESCE(?, sweep_watermark) WHERE name = ?",
                (encode_state(state), version, watermark, name),
            )
            self._written[name] = state, version
        self._pending.clear()

    def _discard_states(self) -> None:
        self._pending.clear()
        self._written.clear()

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
            yield from connection.execute(
                f"SELECT {', '.join('d.' + c.strip() for c in _DECISION_COLUMNS.split(','))}, r.value "
                "FROM decisions d LEFT JOIN rewards r ON r.decision_id = d.decision_id "
                "WHERE d.experiment = ? ORDER BY d.time, d.decision_id",
                (name,),
            )
        finally:
            connection.close()

    def counts(self, name: str) -> tuple[int, int]:
        decisions, rewards = self._counts.get(name, (0, 0))
        return decisions, rewards

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

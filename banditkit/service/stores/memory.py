"""A store in process memory: for tests and for a service embedded in another program.

Decisions and model changes apply at once, under one lock; rewards are
learned in their experiment's lane (:mod:`.lanes`), so a large policy state
takes its time away from the event loop and from other experiments.

The log keeps decisions and rewards as the same tuples of plain values the
SQLite store writes (:func:`~.base.decision_row`). The garbage collector stops
tracking such tuples, so a long log adds almost nothing to its full
collections, which pause the whole process: with 460,000 decisions and
153,000 rewards kept as record objects a full collection took about 200 ms,
kept as tuples about 10 ms (``benchmarks/bench_stores.py``). Each
experiment's decisions are kept in time order, so the default-reward sweep
reads only its window and exports need no sort.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future

from .base import (
    DELETED,
    Assignment,
    DecisionRecord,
    ExperimentExistsError,
    ExperimentRecord,
    ModelChange,
    RewardRecord,
    RewardWork,
    SnapshotRecord,
    State,
    Store,
    completed,
    decision_from_row,
    decision_row,
    moved,
    reward_from_row,
    reward_row,
    status_of,
)
from .lanes import Lanes, learn_in_order, settle

_VALUE = 3  # position in a reward row


class MemoryStore(Store):
    """Every write applies at once under one lock; nothing survives the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._experiments: dict[str, ExperimentRecord] = {}
        self._decisions: dict[str, tuple] = {}  # decision_id -> decision_row(...)
        self._rewards: dict[str, tuple] = {}  # decision_id -> reward_row(...)
        self._log: dict[str, list[tuple[float, str]]] = {}  # experiment -> sorted (time, decision_id)
        self._rewarded: dict[str, int] = {}  # experiment -> rewards recorded
        self._assignments: dict[tuple[str, str], Assignment] = {}
        self._snapshots: dict[int, SnapshotRecord] = {}
        self._events: list[dict] = []
        self._snapshot_ids = itertools.count(1)
        self._lanes = Lanes(self._learn, self._replace)

    def close(self) -> None:
        """Finish the rewards being learned; every other write already happened."""
        self._lanes.close()

    # ---- catalogue ---------------------------------------------------------
    def create_experiment(self, record: ExperimentRecord, event: dict) -> Future:
        with self._lock:
            if record.name in self._experiments:
                return completed(error=ExperimentExistsError(record.name))
            self._experiments[record.name] = copy.deepcopy(record)
            self._log[record.name] = []
            self._rewarded[record.name] = 0
            self._add_event(record.name, record.version, event)
        return completed()

    def load_experiments(self) -> list[ExperimentRecord]:
        with self._lock:
            return [copy.deepcopy(record) for record in self._experiments.values()]

    def replace_model(self, name: str, change: ModelChange) -> Future:
        """In the experiment's lane: after every reward submitted before it, before any submitted after it."""
        return self._lanes.submit(name, change)

    def _replace(self, name: str, change: ModelChange) -> None:
        with self._lock:
            record = self._experiments[name]
            if record.version != change.expected_version:
                raise moved(name, record.version, change)
            record.model, record.state = copy.deepcopy(change.model), dict(change.state)
            record.version = change.version
            if change.config is not None:
                record.config = copy.deepcopy(change.config)
            self._add_event(name, change.version, change.event)

    def deleted_names(self) -> set[str]:
        with self._lock:
            return {name for name, record in self._experiments.items() if status_of(record.config) == DELETED}

    def purge_experiment(self, name: str, event: dict) -> Future:
        with self._lock:
            record = self._experiments.pop(name)
            ids = [decision_id for _, decision_id in self._log.pop(name, ())]
            rewards = sum(self._rewards.pop(decision_id, None) is not None for decision_id in ids)
            for decision_id in ids:
                del self._decisions[decision_id]
            self._rewarded.pop(name, None)
            for key in [key for key in self._assignments if key[0] == name]:
                del self._assignments[key]
            for snapshot_id in [i for i, s in self._snapshots.items() if s.experiment == name]:
                del self._snapshots[snapshot_id]
            self._add_event(name, record.version, event)
        return completed((len(ids), rewards))

    def save_snapshot(
        self, name: str, model: dict, state: State, version: int, created_at: float | None = None
    ) -> Future:
        created_at = time.time() if created_at is None else created_at
        with self._lock:
            snapshot_id = next(self._snapshot_ids)
            self._snapshots[snapshot_id] = SnapshotRecord(
                snapshot_id, name, version, created_at, copy.deepcopy(model), dict(state)
            )
            self._add_event(name, version, {"kind": "snapshot", "snapshot_id": snapshot_id})
        return completed(snapshot_id)

    def get_snapshot(self, name: str, snapshot_id: int) -> SnapshotRecord | None:
        snapshot = self._snapshots.get(snapshot_id)
        return snapshot if snapshot is not None and snapshot.experiment == name else None

    def list_snapshots(self, name: str) -> list[SnapshotRecord]:
        return [s for s in self._snapshots.values() if s.experiment == name]

    def events(self, name: str) -> list[dict]:
        return [event for event in self._events if event["experiment"] == name]

    def _add_event(self, name: str, version: int, event: dict) -> None:
        self._events.append({"experiment": name, "time": time.time(), "policy_version": version, **event})

    # ---- decision log ------------------------------------------------------
    def append_decisions(self, rows: list[DecisionRecord], assignments: dict[str, Assignment] | None = None) -> Future:
        with self._lock:
            for row in rows:
                self._decisions[row.decision_id] = decision_row(row)
                log, entry = self._log[row.experiment], (row.time, row.decision_id)
                if not log or log[-1] <= entry:  # the usual case: decisions come in time order
                    log.append(entry)
                else:
                    bisect.insort(log, entry)
            if rows and assignments:
                for unit, assignment in assignments.items():
                    self._assignments[(rows[0].experiment, unit)] = assignment
        return completed()

    def get_decision(self, decision_id: str) -> DecisionRecord | None:
        row = self._decisions.get(decision_id)
        return None if row is None else decision_from_row(row)

    def get_reward(self, decision_id: str) -> RewardRecord | None:
        row = self._rewards.get(decision_id)
        return None if row is None else reward_from_row(row)

    def find_decisions(self, ids: list[str]) -> dict[str, tuple[DecisionRecord, RewardRecord | None]]:
        return {i: (decision_from_row(self._decisions[i]), self.get_reward(i)) for i in ids if i in self._decisions}

    def get_assignment(self, name: str, unit: str) -> Assignment | None:
        return self._assignments.get((name, unit))

    def commit_rewards(self, work: RewardWork) -> Future:
        """Learn ``work`` in its experiment's lane (:mod:`.lanes`).

        The delta is planned outside the lock, so
        neither another experiment's rewards nor any decision waits for it.
        """
        return self._lanes.submit(work.experiment, work)

    def _learn(self, name: str, run: list[tuple[RewardWork, Future]]) -> None:
        works = [work for work, _ in run]
        ids = [reward.decision_id for work in works for reward in work.rewards]
        while True:
            with self._lock:
                record = self._experiments[name]
                arrays, version = record.state, record.version
                stored = {i: reward_from_row(self._rewards[i]) for i in ids if i in self._rewards}
            plan = learn_in_order(works, stored, arrays, version)
            with self._lock:
                if record.version != version or any(row.decision_id in self._rewards for row, _, _ in plan.rows):
                    continue  # moved meanwhile (never through this lane): plan again on what is stored now
                for row, _, _ in plan.rows:
                    self._rewards[row.decision_id] = reward_row(row)
                self._rewarded[name] = self._rewarded.get(name, 0) + len(plan.rows)
                record.state, record.version = plan.arrays, plan.version
                if plan.watermark is not None:
                    record.sweep_watermark = plan.watermark
            settle(run, plan)
            return

    def unrewarded(self, name: str, since: float, before: float, limit: int) -> list[DecisionRecord]:
        with self._lock:
            log, rows = self._log[name], list[tuple]()
            for index in range(bisect.bisect_left(log, (since,)), len(log)):
                t, decision_id = log[index]
                if t >= before or len(rows) == limit:
                    break
                if decision_id not in self._rewards:
                    rows.append(self._decisions[decision_id])
        return [decision_from_row(row) for row in rows]

    def iter_log(self, name: str) -> Iterator[tuple]:
        with self._lock:
            ids = [decision_id for _, decision_id in self._log.get(name, ())]
        for decision_id in ids:
            reward = self._rewards.get(decision_id)
            row = self._decisions[decision_id]
            yield *row[:10], None if reward is None else reward[_VALUE], row[10]

    def counts(self, name: str) -> tuple[int, int]:
        with self._lock:
            return len(self._log.get(name, ())), self._rewarded.get(name, 0)

"""What the decision service keeps, and the small interface every store implements.

A store holds three things, as three groups of methods: the experiment
catalogue (configuration, model, version, snapshots, audit events), the policy
state (changed only by merging a *delta* with :func:`merge_delta`, by the
policy's declared rule: added, appended, or in order; see
:mod:`banditkit.policies.base`), and the decision log (one row per decision, at
most one reward per decision).

Writes return a :class:`concurrent.futures.Future` that completes once the
write is durable, so a server can wait for it without blocking its event loop
and a store can commit many requests together (group commit).

The protocol is plain data in, plain data out. The caller hands a store a
unit of work and reads what happened from the future's result; it passes no
callback and the store keeps no reference to the caller's objects:

- :class:`RewardWork` (experiment, rewards, planner, sweep watermark) ->
  :class:`RewardCommit` (one :class:`RewardOutcome` per reward, the delta
  merged, the new version, the merged arrays). The planner
  (:class:`RewardPlanner`) is a pure function of the new rewards and the
  arrays they join: a store that learns in process calls it on the arrays the
  experiment's previous work left, one work after the other per experiment
  (:class:`~.lanes.Lanes`), and commits the rows only if no other write moved
  the experiment meanwhile, so work learns in commit order.
  :func:`claim` is that step, written once for every such store; the store
  provides only which decisions already have a reward. Which reward of a batch counts, and what a client is
  answered, is decided once above the stores
  (:mod:`banditkit.service.rewarding`).
- :class:`ModelChange` (model, state, version, the version it was built on,
  audit event) -> nothing, or :class:`ModelMovedError` when the stored
  version is not the one it was built on (compare-and-set); the caller builds
  it again from the model as it is and retries.
- a snapshot (model, state, version) -> its id.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..._codec import decode_arrays, encode_arrays
from ...errors import InvalidParameterError
from ...policies import Policy
from ...policies.base import State

logger = logging.getLogger("banditkit.service")
#: Key prefixes of an experiment's arrays: the policy state, and the reward ledger (always additive).
POLICY_PREFIX, LEDGER_PREFIX = "policy/", "ledger/"
#: Prefix of a candidate policy's arrays (its own ``policy/`` and ``ledger/`` keys under it): see
#: :mod:`banditkit.service.candidates`.
CANDIDATE_PREFIX = "candidate/"
#: Keys of a stored model that belong to policy canaries, not to the experiment's Bandit.
CANARY_KEYS = ("candidate", "lineage")
#: The ``policy`` of a decision served by the experiment's own policy (a candidate's decisions name it).
CURRENT_POLICY = "current"
#: Where an experiment is in its life: served; archived (no decisions, rewards still join); deleted (out of the
#: catalogue, its log kept until :meth:`Store.purge_experiment`). Stored under :data:`STATUS_KEY` of the
#: configuration (absent while active), so a status change is a :class:`ModelChange` like any configuration
#: edit: one more version, one audit event, and every worker following the versions sees it.
STATUS_KEY = "status"
ACTIVE, ARCHIVED, DELETED = "active", "archived", "deleted"
#: Widths, in seconds, of the time buckets :meth:`Store.decision_counts` counts decisions in (a minute, an hour).
COUNT_WIDTHS = (60, 3600)


class Probabilities(dict):
    """Arm -> probability, with its JSON text computed once (one distribution serves many decisions)."""

    __slots__ = ("json",)

    def __init__(self, values) -> None:
        super().__init__(values)
        self.json = json.dumps(self)


def probabilities_json(probabilities: dict[str, float]) -> str:
    return probabilities.json if isinstance(probabilities, Probabilities) else json.dumps(probabilities)


class ExperimentExistsError(Exception):
    """An experiment with this name is already in the catalogue."""


class StoreUnavailableError(Exception):
    """The store cannot take the write now; retry later.

    A shared store's server is down or unreachable, or a disk is full: the message names the cause.
    """


def disk_failure(error: OSError) -> str | None:
    """The cause when ``error`` is the file system refusing a write for lack of room, else None.

    Lack of room: a full disk, a quota, a file-size limit.
    """
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"disk full ({error.strerror})"
    return None


class Outage:
    """Whether a store takes writes, with one log line when an outage starts and one when it ends.

    A store calls :meth:`failed` for each write its storage refused (the error then answers 503 with the
    cause) and :meth:`succeeded` for each that went through. The outage ends at a write that succeeds
    ``quiet_s`` after the last refused one, so a nearly full disk, where small writes fit and large ones do
    not, is one outage and two log lines, not two per write.
    """

    def __init__(self, store: str, location: str, while_down: str, quiet_s: float = 0.0) -> None:
        """Track the outages of ``store``.

        ``store`` names the store in errors (clients see it), ``location`` only in the log; ``while_down``
        says in the log what the service does meanwhile.
        """
        self.store = store
        self.location = location
        self.while_down = while_down
        self.quiet_s = quiet_s
        self.cause: str | None = None
        self._lock = threading.Lock()
        self._started = self._last = 0.0
        self._refused = 0

    def failed(self, cause: str, refused: int = 1) -> StoreUnavailableError:
        """Count ``refused`` writes refused for ``cause`` (0: a probe failed); the error to answer them with.

        The first failure of an outage is logged.
        """
        with self._lock:
            now = time.monotonic()
            if self.cause is None:
                self._started, self._refused = now, 0
                logger.warning("%s at %s cannot take writes: %s; %s", self.store, self.location, cause, self.while_down)
            self.cause, self._last = cause, now
            self._refused += refused
        return StoreUnavailableError(f"{self.store}: {cause}")

    @property
    def reason(self) -> str | None:
        """The store and the cause while the outage lasts (what health reports), else None."""
        cause = self.cause
        return None if cause is None else f"{self.store}: {cause}"

    def succeeded(self) -> None:
        """A write went through: the outage, if any, ends unless a write was refused less than ``quiet_s`` ago."""
        if self.cause is None:  # the usual case, on every commit: one attribute read
            return
        with self._lock:
            now = time.monotonic()
            if self.cause is None or now - self._last < self.quiet_s:
                return
            self.cause = None
            logger.warning(
                "%s at %s takes writes again, after %.1f s (%d refused meanwhile)",
                self.store,
                self.location,
                now - self._started,
                self._refused,
            )


class ModelMovedError(Exception):
    """A model change was built on another version than the stored one.

    A reward or another process changed the model meanwhile: build it again from the model as it is now.
    """


def moved(name: str, stored: int, change: ModelChange) -> ModelMovedError:
    """The error of a :class:`ModelChange` refused because the stored version is ``stored``."""
    return ModelMovedError(
        f"experiment {name!r} is at version {stored}, the model change "
        f"({change.event.get('kind', 'change')}) was built for version {change.expected_version}"
    )


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One row of the decision log: what was served, to whom, with which probability."""

    decision_id: str
    time: float  # seconds since the epoch, UTC
    experiment: str
    unit: str | None
    context: tuple[float, ...] | None
    arm: str
    propensity: float
    probabilities: dict[str, float]  # arm -> probability of every arm at decision time
    policy_version: int
    fallback: bool
    #: Which policy served it: :data:`CURRENT_POLICY`, or ``"candidate"`` (a policy canary): its propensity is
    #: that policy's probability of the arm.
    policy: str = CURRENT_POLICY


@dataclass(frozen=True, slots=True)
class DecisionCounts:
    """Decisions of one experiment per arm and per time bucket: the allocation over time.

    Bucket ``i`` holds the decisions made in ``[buckets[i] * width_s, (buckets[i] + 1) * width_s)`` seconds
    since the epoch; only buckets with a decision are listed, in increasing order. ``counts`` has shape
    (n_buckets, n_arms), its columns in the order of ``arms`` (every arm that was served at least once).
    """

    width_s: int
    buckets: np.ndarray
    arms: tuple[str, ...]
    counts: np.ndarray

    @classmethod
    def of(cls, width_s: int, times: np.ndarray, arms: list[str]) -> DecisionCounts:
        """The counts of decisions made at ``times`` (seconds since the epoch, shape (n,)) on ``arms`` (n,).

        A time whose bucket is not a signed 64-bit integer (:func:`countable`) is not counted.
        """
        bucket = np.floor(np.asarray(times, dtype=np.float64) / width_s)
        kept = (bucket >= -(2.0**63)) & (bucket < 2.0**63)
        names, column = np.unique(np.asarray(arms, dtype=str)[kept], return_inverse=True)
        unique, row = np.unique(bucket[kept], return_inverse=True)
        table = np.zeros((len(unique), len(names)), dtype=np.int64)
        np.add.at(table, (row, column), 1)
        return cls(width_s, unique.astype(np.int64), tuple(names.tolist()), table)

    @classmethod
    def from_rows(cls, width_s: int, buckets, arms: list[str], counts) -> DecisionCounts:
        """From one (bucket, arm, decisions) triple per row, each pair once, in any order."""
        names = tuple(sorted(set(arms)))
        unique, row = np.unique(np.asarray(buckets, dtype=np.int64), return_inverse=True)
        table = np.zeros((len(unique), len(names)), dtype=np.int64)
        if len(arms):
            column = np.searchsorted(np.array(names, dtype=object), np.asarray(arms, dtype=object))
            table[row, column] = counts
        return cls(width_s, unique, names, table)


@dataclass(frozen=True, slots=True)
class RewardRecord:
    """The one reward a decision receives; ``source`` is "client" or "default" (window closed)."""

    decision_id: str
    experiment: str
    arm: str
    value: float
    time: float
    source: str = "client"
    applied: bool = True  # False when the arm no longer existed in the policy


@dataclass(frozen=True, slots=True)
class RewardOutcome:
    """``reward`` is the stored reward; ``first`` is False when an earlier one was already there.

    A store that joins rewards to decisions itself (Redis) refuses some: then ``reward`` is None and
    ``refused`` says why, "missing" (no such decision) or "late" (after the attribution window).
    """

    reward: RewardRecord | None
    first: bool
    refused: str | None = None


@dataclass(frozen=True, slots=True)
class Assignment:
    """The arm a unit keeps in a sticky experiment (while that arm is active)."""

    arm: str
    propensity: float
    probabilities: dict[str, float]


@dataclass(slots=True)
class ExperimentRecord:
    """An experiment as stored: its configuration, the Bandit's model, state and version."""

    name: str
    config: dict[str, Any]  # the validated creation request
    model: dict[str, Any]  # Bandit.to_dict() without its policy state
    state: State  # the policy state, changed by deltas
    version: int
    created_at: float
    sweep_watermark: float = 0.0  # decisions before this time have been settled


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    snapshot_id: int
    experiment: str
    policy_version: int
    created_at: float
    model: dict[str, Any]
    state: State = field(repr=False)


@dataclass(frozen=True, slots=True)
class Delta:
    """What new rewards change in an experiment's arrays, and the policy whose rule merges it.

    ``arm_indices`` (n,) and ``rewards`` (n,) are the rewards it was computed from, in order: what the
    server's Bandit needs to follow it in memory (its ledger and guardrails:
    :func:`~banditkit.service.model.adopt_rewards`). ``merged``, when given, is the arrays it was computed
    from with it merged, as the policy's update made them: :func:`claim` takes them rather than merging
    again, which for the state it came from gives the same arrays up to rounding, at the cost of another
    pass over the state (and, for linear policies, a cubic-time check of their cached inverses).
    """

    policy: Policy
    arrays: State
    arm_indices: np.ndarray | None = None
    rewards: np.ndarray | None = None
    merged: State | None = field(default=None, repr=False)
    #: The rewards the experiment's candidate learned (``candidate/`` keys of ``arrays``), when it learned some.
    candidate_arm_indices: np.ndarray | None = None
    candidate_rewards: np.ndarray | None = None


class RewardPlanner(Protocol):
    """The policy side of learning rewards: a pure function of the rewards and the arrays they join."""

    def plan(self, new: list[RewardRecord], arrays: State) -> tuple[Delta | None, list[bool]]:
        """The delta of ``new`` computed from ``arrays``, and per reward whether it changed the policy.

        ``new`` holds the rewards not recorded before, ``arrays`` the experiment's arrays as the store holds
        them at that point of its transaction. The delta is None when nothing changes; a reward whose arm no
        longer exists did not change the policy (False).
        """


@dataclass(frozen=True, slots=True)
class RewardWork:
    """Rewards for a store to record at most once, each for a different decision of ``experiment``.

    A store that learns in process asks ``planner`` for the delta of the rewards that are new, merges it, and
    commits their rows, a version one higher and ``watermark`` (sweeper progress) together; without a planner
    the rewards are recorded only. A store that learns elsewhere (Redis) only claims the
    rewards and ignores ``planner`` and ``watermark``.
    """

    experiment: str
    rewards: list[RewardRecord]
    planner: RewardPlanner | None = None
    watermark: float | None = None

    def __post_init__(self) -> None:
        if len({reward.decision_id for reward in self.rewards}) != len(self.rewards):
            raise ValueError(
                "RewardWork.rewards must hold one reward per decision id; the first of several "
                "is chosen above the store (banditkit.service.rewarding)"
            )


@dataclass(frozen=True, slots=True)
class RewardCommit:
    """What a committed :class:`RewardWork` did.

    One :class:`RewardOutcome` per reward, in order, the delta merged (None if none), the experiment's version
    after it (None for a store that learns elsewhere) and its arrays with the delta merged (None without a
    delta): the server serves these very arrays, rather than merging the delta a second time.
    """

    outcomes: list[RewardOutcome]
    delta: Delta | None = None
    version: int | None = None
    arrays: State | None = None


@dataclass(frozen=True, slots=True)
class ModelChange:
    """A new model and state for an experiment (arm change, rollback, guardrail action, configuration edit).

    Built by the caller from the model at ``expected_version``; the store writes it with ``version`` and logs
    ``event`` only if its version is still ``expected_version``, else it raises :class:`ModelMovedError`.
    """

    model: dict[str, Any]
    state: State
    version: int
    expected_version: int
    event: dict[str, Any]
    #: The experiment's configuration as it is to be stored from now on, when the change edits it (PATCH).
    config: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """What a learning store commits of a :class:`RewardWork`, and the outcome of each reward.

    The new reward rows, the merged arrays (the same object when nothing changed) and the delta; the outcome
    of each reward is for its answer.
    """

    rows: list[RewardRecord]
    arrays: State
    delta: Delta | None
    outcomes: list[RewardOutcome]


def claim(work: RewardWork, stored: dict[str, RewardRecord], arrays: State) -> Claim:
    """Claim the new rewards of ``work`` and merge their delta, in a learning store.

    The rewards of ``work`` whose decision has no reward in ``stored`` (what the store holds for these ids)
    are new; ``work.planner`` computes their delta from ``arrays`` (the experiment's arrays as its previous
    work left them), which is merged here. Every store that learns in process commits what this returns, so
    they all do it alike.
    """
    new = [reward for reward in work.rewards if reward.decision_id not in stored]
    if work.planner is None or not new:  # nothing to learn: recorded only
        delta, applied = None, [False] * len(new)
    else:
        delta, applied = work.planner.plan(new, arrays)
    rows = [
        RewardRecord(r.decision_id, r.experiment, r.arm, r.value, r.time, r.source, flag)
        for r, flag in zip(new, applied, strict=True)
    ]
    kept = {row.decision_id: row for row in rows}
    outcomes = [
        RewardOutcome(kept[r.decision_id], True)
        if r.decision_id in kept
        else RewardOutcome(stored[r.decision_id], False)
        for r in work.rewards
    ]
    if delta is None:
        merged = arrays
    else:  # the planner computed the delta from these very arrays: its merged arrays are theirs
        merged = delta.merged if delta.merged is not None else merge_delta(delta.policy, arrays, delta.arrays)
    if delta is not None:
        for key in delta.arrays:
            if not np.isfinite(merged[key]).all():  # never into the state: nothing of this work is recorded
                raise InvalidParameterError(
                    f"these rewards would make the experiment's {key!r} NaN or infinite (contexts too large?)",
                    field="context",
                )
    return Claim(rows, merged, delta, outcomes)


@dataclass(frozen=True, slots=True)
class LoopHealth:
    """The learning loop of one experiment of a shared store, as its metrics report it.

    ``stream_length``: entries in the reward stream; ``pending``: delivered to a learner, not acknowledged;
    ``lag``: not yet delivered to any learner (None when the store cannot tell); ``unlearned_age_s``: age of
    the oldest reward not yet in the stored model (0 when all are); ``defaulted``: default rewards applied.
    """

    stream_length: int
    pending: int
    lag: int | None
    unlearned_age_s: float
    defaulted: int


class Store(ABC):
    """The interface of the memory, SQLite and Redis stores."""

    #: True when :meth:`commit_rewards` adds the policy delta; False when another process learns from the
    #: recorded rewards (Redis: ``banditkit learn``) and the server only follows the stored model.
    learns_in_process = True

    @property
    def available(self) -> bool:
        """False while the store cannot take writes (decisions then fall back or get 503, rewards get 503)."""
        return self.unavailable_cause is None

    @property
    def unavailable_cause(self) -> str | None:
        """Why the store cannot take writes now (its server does not answer, its disk is full), or None."""
        return None

    def experiment_names(self) -> set[str]:
        """The names in the catalogue (for a server following experiments other processes create)."""
        return {record.name for record in self.load_experiments()}

    def load_experiment(self, name: str) -> ExperimentRecord | None:
        """One experiment as stored now, or None."""
        return next((record for record in self.load_experiments() if record.name == name), None)

    def versions(self, names: list[str]) -> dict[str, int]:
        """The stored policy version of each experiment of ``names`` that exists."""
        wanted = set(names)
        return {record.name: record.version for record in self.load_experiments() if record.name in wanted}

    #: True when several writers may compute deltas from states that are not the latest. Such a store serves
    #: only ``Policy.distributable`` policies (see :func:`unservable_reason`); memory and SQLite have one writer,
    #: which computes every delta from the state it merges into.
    several_writers: bool = False

    # ---- catalogue ---------------------------------------------------------
    @abstractmethod
    def create_experiment(self, record: ExperimentRecord, event: dict) -> Future:
        """Add an experiment; the future raises :class:`ExperimentExistsError` if the name is taken."""

    @abstractmethod
    def load_experiments(self) -> list[ExperimentRecord]:
        """Every experiment, with its current state and version."""

    @abstractmethod
    def replace_model(self, name: str, change: ModelChange) -> Future:
        """Write ``change`` (compare-and-set on the version) in a transaction of its own, after every earlier write.

        Every reward of the experiment submitted before it is included. The future raises
        :class:`ModelMovedError` when the stored version is not ``change.expected_version`` (a reward or
        another process moved it: rebuild the change and retry).
        """

    @abstractmethod
    def save_snapshot(
        self, name: str, model: dict[str, Any], state: State, version: int, created_at: float | None = None
    ) -> Future:
        """Keep a full model (as served at ``version``) and log the event; the future gives its id.

        ``created_at`` (seconds since the epoch, default now) is the time stored and listed, so that the caller
        can answer the same time it stored.
        """

    @abstractmethod
    def get_snapshot(self, name: str, snapshot_id: int) -> SnapshotRecord | None: ...

    @abstractmethod
    def list_snapshots(self, name: str) -> list[SnapshotRecord]: ...

    @abstractmethod
    def events(self, name: str) -> list[dict]:
        """The audit log of an experiment: creation, arm changes, snapshots, rollbacks."""

    # ---- decision log ------------------------------------------------------
    @abstractmethod
    def append_decisions(self, rows: list[DecisionRecord], assignments: dict[str, Assignment] | None = None) -> Future:
        """Append decisions (and set sticky assignments by unit); durable when the future completes."""

    @abstractmethod
    def get_decision(self, decision_id: str) -> DecisionRecord | None: ...

    @abstractmethod
    def get_reward(self, decision_id: str) -> RewardRecord | None: ...

    @abstractmethod
    def find_decisions(self, ids: list[str]) -> dict[str, tuple[DecisionRecord, RewardRecord | None]]:
        """The decisions among ``ids`` that exist, each with its reward if it has one (one round trip)."""

    @abstractmethod
    def get_assignment(self, name: str, unit: str) -> Assignment | None: ...

    @abstractmethod
    def commit_rewards(self, work: RewardWork) -> Future:
        """Record each reward of ``work`` whose decision has none yet, in one transaction.

        The future gives a :class:`RewardCommit`.

        A store that learns in process merges the planned delta (see :func:`claim`), computed from the
        arrays the experiment's previous work left, and commits the rows only if nothing else moved the
        experiment since (else it plans again), so an order-dependent policy learns as if each work committed
        alone. The rows are the truth: the store may write the merged arrays later (a checkpoint), and
        learns the rewards logged after its last checkpoint again when it opens.
        """

    @abstractmethod
    def unrewarded(self, name: str, since: float, before: float, limit: int) -> list[DecisionRecord]:
        """Decisions made in [since, before) that have no reward yet, oldest first."""

    @abstractmethod
    def iter_log(self, name: str) -> Iterator[tuple]:
        """Every decision of an experiment in time order, as its :func:`decision_row` values and its reward.

        The first ten values, then the reward (None if none), then the serving policy (:func:`decision_row`'s
        last value): what the log export writes, without decoding and encoding it again.
        """

    def learning_loop(self, names: list[str]) -> dict[str, LoopHealth]:
        """The learning loop of each experiment of ``names``, for a store that other processes learn from.

        Empty for a store that learns in process: it has no loop.
        """
        return {}

    @abstractmethod
    def counts(self, name: str) -> tuple[int, int]:
        """(decisions logged, rewards recorded) for an experiment."""

    def decision_counts(self, name: str, width_s: int) -> DecisionCounts:
        """The experiment's decisions per arm and per bucket of ``width_s`` seconds (one of :data:`COUNT_WIDTHS`).

        This default reads the whole log (:meth:`iter_log`); a store that keeps the counts as it logs
        (SQLite) answers without reading it.
        """
        check_count_width(width_s)
        times, arms = [], []
        for row in self.iter_log(name):
            times.append(row[1])
            arms.append(row[5])
        return DecisionCounts.of(width_s, np.array(times, dtype=np.float64), arms)

    def deleted_names(self) -> set[str]:
        """The deleted experiments whose log is kept (their names stay taken until purged)."""
        return {record.name for record in self.load_experiments() if status_of(record.config) == DELETED}

    @abstractmethod
    def purge_experiment(self, name: str, event: dict) -> Future:
        """Remove a deleted experiment for good: its model, snapshots, assignments, decisions and rewards.

        The audit events are kept, ``event`` appended to them. The name is free afterwards. The caller
        checks the experiment was deleted (nothing serves it, no reward joins it any more). The future gives
        (decisions, rewards) removed.
        """

    @abstractmethod
    def close(self) -> None:
        """Flush pending writes and release files."""


def status_of(config: dict) -> str:
    """The lifecycle status stored in an experiment's configuration (:data:`ACTIVE` when it has none)."""
    return str(config.get(STATUS_KEY, ACTIVE))


def with_status(config: dict, status: str) -> dict:
    """A copy of a stored configuration with ``status`` (the key dropped for :data:`ACTIVE`, as at creation)."""
    changed = {key: value for key, value in config.items() if key != STATUS_KEY}
    if status != ACTIVE:
        changed[STATUS_KEY] = status
    return changed


def countable(bucket: float) -> bool:
    """True when a time bucket fits a signed 64-bit integer (a time within about 2.9e11 years of 1970).

    Every real decision time does; a store logs any finite time it is given, and counts only these.
    """
    return -(2.0**63) <= bucket < 2.0**63


def check_count_width(width_s: int) -> None:
    """ValueError naming ``width_s`` unless it is one of :data:`COUNT_WIDTHS`."""
    if width_s not in COUNT_WIDTHS:
        raise ValueError(f"width_s must be one of {COUNT_WIDTHS} seconds, got {width_s!r}")


# ---- encodings shared by the stores -------------------------------------------------------
def decision_row(record: DecisionRecord) -> tuple:
    """A decision as a tuple of plain values (context and probabilities as JSON), in the log's column order."""
    return (
        record.decision_id,
        record.time,
        record.experiment,
        record.unit,
        None if record.context is None else json.dumps(record.context),
        record.arm,
        record.propensity,
        probabilities_json(record.probabilities),
        record.policy_version,
        int(record.fallback),
        record.policy,
    )


def decision_from_row(row) -> DecisionRecord:
    """Inverse of :func:`decision_row`; a row logged before decisions named their policy (10 values) is "current"."""
    decision_id, t, experiment, unit, context, arm, propensity, probabilities, version, fallback = row[:10]
    return DecisionRecord(
        decision_id,
        t,
        experiment,
        unit,
        None if context is None else tuple(json.loads(context)),
        arm,
        propensity,
        json.loads(probabilities),
        version,
        bool(fallback),
        row[10] if len(row) > 10 else CURRENT_POLICY,
    )


def reward_row(record: RewardRecord) -> tuple:
    """A reward as a tuple of plain values, in the column order of the rewards table."""
    return (
        record.decision_id,
        record.experiment,
        record.arm,
        record.value,
        record.time,
        record.source,
        int(record.applied),
    )


def reward_from_row(row) -> RewardRecord:
    """Inverse of :func:`reward_row`."""
    decision_id, experiment, arm, value, t, source, applied = row
    return RewardRecord(decision_id, experiment, arm, value, t, source, bool(applied))


def encode_state(state: State) -> str:
    """Exact JSON text for a state: :func:`banditkit._codec.encode_arrays`, as the Bandit's JSON writes it."""
    return json.dumps(encode_arrays(state))


def decode_state(text: str) -> State:
    """Inverse of :func:`encode_state`."""
    return decode_arrays(json.loads(text))


def merge_delta(policy: Policy, state: State, delta: State) -> State:
    """An experiment's arrays with ``delta`` merged in, as new arrays: the one way every store applies a delta.

    The ``policy/`` arrays merge by the policy's rule (:meth:`Policy.merge_delta`);
    the others (the reward ledger) add. Keys absent from the delta are kept.
    """
    own, policy_delta = policy_state(state), policy_state(delta)
    if policy_delta:
        own = policy.merge_delta(own, policy_delta)
    merged = {POLICY_PREFIX + key: value for key, value in own.items()}
    merged.update(
        (key, value + delta[key] if key in delta else value)
        for key, value in state.items()
        if not key.startswith(POLICY_PREFIX)
    )
    return merged


def policy_state(arrays: State) -> State:
    """The policy's part of an experiment's arrays (or of a delta), without the key prefix."""
    return {key.removeprefix(POLICY_PREFIX): value for key, value in arrays.items() if key.startswith(POLICY_PREFIX)}


def unservable_reason(store: Store, policy: Policy) -> str | None:
    """Why ``store`` cannot serve ``policy`` (an ORDERED policy on a store with several writers), or None."""
    if store.several_writers and not policy.distributable:
        return (
            f"policy {policy.name!r} cannot be served by {type(store).__name__}: its state merges only in "
            f"order ({policy.merge_rule}), and this store's writers compute deltas from states that may "
            f"not be the latest; use a distributable policy or a store with one writer (sqlite, memory)"
        )
    return None


async def settled(future: Future) -> Any:
    """A store future's result: at once if it is done (memory store), else awaited without blocking the loop."""
    if future.done():
        return future.result()
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    waker = _WAKERS.get(loop)
    if waker is None:
        waker = _WAKERS[loop] = _LoopWaker(loop)
    future.add_done_callback(lambda done: waker.completed(done, waiter))
    return await waiter


class _LoopWaker:
    """Hands futures completed in another thread to one event loop, waking it once per burst.

    A group commit completes dozens of futures at once; waking the loop for
    each (as ``asyncio.wrap_future`` does) costs a system call and a callback
    apiece, while this queues them and wakes the loop once to resolve them all.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._done: list[tuple[Future, asyncio.Future]] = []
        self._scheduled = False

    def completed(self, future: Future, waiter: asyncio.Future) -> None:
        """Any thread: ``future`` is done; ``waiter`` (of this loop) gets its outcome soon."""
        with self._lock:
            self._done.append((future, waiter))
            if self._scheduled:
                return
            self._scheduled = True
        self._loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        with self._lock:
            done, self._done, self._scheduled = self._done, [], False
        for future, waiter in done:
            if waiter.cancelled():
                continue
            error = future.exception()
            if error is None:
                waiter.set_result(future.result())
            else:
                waiter.set_exception(error)


_WAKERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopWaker] = weakref.WeakKeyDictionary()


def completed(result: Any = None, error: BaseException | None = None) -> Future:
    """A future that is already done (the memory store's writes are synchronous)."""
    future: Future = Future()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
    return future

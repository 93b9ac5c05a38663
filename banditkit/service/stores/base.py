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
"""

from __future__ import annotations

import asyncio
import json
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..._codec import decode_arrays, encode_arrays
from ...policies import Policy
from ...policies.base import State

#: Key prefixes of an experiment's arrays: the policy state, and the reward ledger (always additive).
POLICY_PREFIX, LEDGER_PREFIX = "policy/", "ledger/"


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
    """The store does not answer (a shared store's server is down or unreachable); retry later."""


class ModelMovedError(Exception):
    """A model change was built on an older version than the stored one (another process changed it)."""


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One row of the decision log: what was served, to whom, with which probability."""

    decision_id: str
    time: float                        # seconds since the epoch, UTC
    experiment: str
    unit: str | None
    context: tuple[float, ...] | None
    arm: str
    propensity: float
    probabilities: dict[str, float]    # arm -> probability of every arm at decision time
    policy_version: int
    fallback: bool


@dataclass(frozen=True, slots=True)
class RewardRecord:
    """The one reward a decision receives; ``source`` is "client" or "default" (window closed)."""

    decision_id: str
    experiment: str
    arm: str
    value: float
    time: float
    source: str = "client"
    applied: bool = True               # False when the arm no longer existed in the policy


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
    config: dict[str, Any]             # the validated creation request
    model: dict[str, Any]              # Bandit.to_dict() without its policy state
    state: State                       # the policy state, changed by deltas
    version: int
    created_at: float
    sweep_watermark: float = 0.0       # decisions before this time have been settled


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
    """What new rewards change in an experiment's arrays, and the policy whose rule merges it."""

    policy: Policy
    arrays: State


#: Computes the delta of the rewards that are new from the experiment's arrays as the store holds them at
#: that point of the transaction (earlier deltas merged); returns the delta (None when nothing changes) and,
#: per reward, whether it changed the policy.
DeltaFunction = Callable[[list[RewardRecord], State], tuple[Delta | None, list[bool]]]
#: Called after the transaction that wrote a delta commits, with the new version.
CommitHook = Callable[[Delta | None, int], None]
#: Builds a model change when its (exclusive) transaction runs: model, state, version, audit event.
ModelChange = Callable[[], tuple[dict, State, int, dict]]


class Store(ABC):
    """The interface of the memory, SQLite and Redis stores."""

    #: True when :meth:`record_rewards` adds the policy delta; False when another process learns from the
    #: recorded rewards (Redis: ``banditkit learn``) and the server only follows the stored model.
    learns_in_process = True

    @property
    def available(self) -> bool:
        """False while the store does not answer (decisions then fall back, rewards get 503)."""
        return True

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
    def replace_model(self, name: str, change: ModelChange, on_commit: Callable[[], None]) -> Future:
        """Overwrite an experiment's model and state (arm changes, rollback) and log the change's event.

        ``change()`` runs once every earlier write has committed and run its
        hooks, alone in its transaction, so it sees the latest state; it may
        raise to cancel. ``on_commit()`` runs after the commit.
        """

    @abstractmethod
    def save_snapshot(self, name: str, capture: Callable[[], tuple[dict, State, int]]) -> Future:
        """Keep the full model that ``capture()`` returns (after earlier writes); the future gives its id."""

    @abstractmethod
    def get_snapshot(self, name: str, snapshot_id: int) -> SnapshotRecord | None: ...

    @abstractmethod
    def list_snapshots(self, name: str) -> list[SnapshotRecord]: ...

    @abstractmethod
    def events(self, name: str) -> list[dict]:
        """The audit log of an experiment: creation, arm changes, snapshots, rollbacks."""

    # ---- decision log ------------------------------------------------------
    @abstractmethod
    def append_decisions(self, rows: list[DecisionRecord],
                         assignments: dict[str, Assignment] | None = None) -> Future:
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
    def record_rewards(self, name: str, rewards: list[RewardRecord], delta: DeltaFunction,
                       on_commit: CommitHook, watermark: float | None = None) -> Future:
        """Record each reward at most once and merge the policy delta, in one transaction.

        ``delta(new, arrays)`` is called inside the transaction with the rewards
        that are new and the experiment's arrays as they stand there; their rows
        and the delta (merged by :func:`merge_delta`) commit together, and the
        version goes up by one when the delta is not None. ``on_commit(delta,
        version)`` runs after the commit. The future gives one
        :class:`RewardOutcome` per input reward, in order. ``watermark``
        (sweeper) is stored in the same transaction.
        """

    @abstractmethod
    def unrewarded(self, name: str, since: float, before: float, limit: int) -> list[DecisionRecord]:
        """Decisions made in [since, before) that have no reward yet, oldest first."""

    @abstractmethod
    def iter_log(self, name: str) -> Iterator[tuple]:
        """Every decision of an experiment in time order, as its :func:`decision_row` values followed by
        its reward (None if none): what the log export writes, without decoding and encoding it again."""

    @abstractmethod
    def counts(self, name: str) -> tuple[int, int]:
        """(decisions logged, rewards recorded) for an experiment."""

    @abstractmethod
    def close(self) -> None:
        """Flush pending writes and release files."""


# ---- encodings shared by the stores -------------------------------------------------------
def decision_row(record: DecisionRecord) -> tuple:
    """A decision as a tuple of plain values (context and probabilities as JSON), in the log's column order."""
    return (record.decision_id, record.time, record.experiment, record.unit,
            None if record.context is None else json.dumps(record.context), record.arm, record.propensity,
            probabilities_json(record.probabilities), record.policy_version, int(record.fallback))


def decision_from_row(row) -> DecisionRecord:
    """Inverse of :func:`decision_row`."""
    decision_id, t, experiment, unit, context, arm, propensity, probabilities, version, fallback = row
    return DecisionRecord(decision_id, t, experiment, unit, None if context is None else tuple(json.loads(context)),
                          arm, propensity, json.loads(probabilities), version, bool(fallback))


def reward_row(record: RewardRecord) -> tuple:
    """A reward as a tuple of plain values, in the column order of the rewards table."""
    return (record.decision_id, record.experiment, record.arm, record.value, record.time, record.source,
            int(record.applied))


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
    merged.update((key, value + delta[key] if key in delta else value) for key, value in state.items()
                  if not key.startswith(POLICY_PREFIX))
    return merged


def policy_state(arrays: State) -> State:
    """The policy's part of an experiment's arrays (or of a delta), without the key prefix."""
    return {key.removeprefix(POLICY_PREFIX): value for key, value in arrays.items() if key.startswith(POLICY_PREFIX)}


def unservable_reason(store: Store, policy: Policy) -> str | None:
    """Why ``store`` cannot serve ``policy`` (an ORDERED policy on a store with several writers), or None."""
    if store.several_writers and not policy.distributable:
        return (f"policy {policy.name!r} cannot be served by {type(store).__name__}: its state merges only in "
                f"order ({policy.merge_rule}), and this store's writers compute deltas from states that may "
                f"not be the latest; use a distributable policy or a store with one writer (sqlite, memory)")
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

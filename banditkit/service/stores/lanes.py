"""Reward work and model changes queued per experiment: each experiment's in order, experiments side by side.

A store that learns in process computes every reward's delta from the arrays
the previous reward left, so one experiment's rewards are learned one after
the other; another experiment's need not wait for them. A policy state of many
megabytes takes milliseconds per reward to update; in its own lane it delays
only its own experiment, never another's rewards, nor any decision (decisions
are logged by the store's writer, which computes no delta). A model change
goes through the same lane, so it comes after every reward submitted before it
and before every reward submitted after it.

What queued while a lane was busy is handed over at once, so the rewards of
many requests are learned one after the other and committed together
(:func:`learn_in_order`): one commit for all of them, as a group commit does.
A run of rewards never straddles a model change, and a store may take the
rewards queued behind the run it learns (:meth:`Lanes.take_rewards`) to plan
them while that run commits. A store may also learn a small experiment's
rewards elsewhere (in its writer's transaction) while the experiment's lane is
:meth:`~Lanes.idle`: nothing of it is then queued that they could overtake.

Learning is background work next to serving: on Linux the lanes' threads run
at a lower scheduling priority (nice :data:`NICE`), so when the cores are
busy the event loop and the writer, which answer requests, get them first.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from .base import ModelChange, RewardCommit, RewardRecord, RewardWork, State, claim

#: Items handed to a lane's function at once at most.
MAX_BATCH = 256
#: How much lower the lanes' threads are scheduled than the serving threads (Linux niceness, 0 to 19).
NICE = 5

Item = RewardWork | ModelChange
#: What a store does with a run of one experiment's reward work: learn it and complete every future.
Learn = Callable[[str, list[tuple[RewardWork, Future]]], None]
#: What a store does with a model change of an experiment (its result or error completes the future).
Replace = Callable[[str, ModelChange], None]


class Lanes:
    """Per experiment, hands queued items in order to ``learn`` and ``replace``; experiments run in parallel.

    ``learn`` takes runs of reward work, ``replace`` model changes; the experiments share ``threads``.
    """

    def __init__(self, learn: Learn, replace: Replace, threads: int = 4) -> None:
        self._learn = learn
        self._replace = replace
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="banditkit-learn", initializer=_background)
        self._lock = threading.Lock()
        self._queues: dict[str, deque[tuple[Item, Future]]] = {}

    def submit(self, name: str, item: Item) -> Future:
        """Queue ``item`` for experiment ``name``; the future gives its result (a RewardCommit, or None)."""
        future: Future = Future()
        with self._lock:
            queue = self._queues.get(name)
            idle = queue is None
            if queue is None:
                queue = self._queues[name] = deque()
            queue.append((item, future))
        if idle:
            self._executor.submit(self._drain, name)
        return future

    def _drain(self, name: str) -> None:
        """Run the queue of ``name`` until it is empty (one pool thread per busy experiment)."""
        while True:
            with self._lock:
                queue = self._queues[name]
                if not queue:
                    del self._queues[name]
                    return
                item, future = queue[0]
                if isinstance(item, ModelChange):
                    queue.popleft()
            if isinstance(item, ModelChange):
                try:
                    future.set_result(self._replace(name, item))
                except BaseException as error:  # handed to the caller, who waits on the future
                    future.set_exception(error)
                continue
            run = self.take_rewards(name)
            try:
                self._learn(name, run)
            except BaseException as error:  # a failure of the store itself: every caller hears of it
                fail(run, error)

    def idle(self, name: str) -> bool:
        """Whether nothing of experiment ``name`` is queued or being run in its lane (called on any thread)."""
        return name not in self._queues

    def take_rewards(self, name: str) -> list[tuple[RewardWork, Future]]:
        """The reward work at the head of the queue of ``name`` (up to a model change), taken off it.

        Called by the lane of ``name`` only, from its ``learn``, a store may take the work queued behind the
        run it learns and plan it while that run commits: it still comes after that run and before anything
        queued after it.
        """
        run: list[tuple[RewardWork, Future]] = []
        with self._lock:
            queue = self._queues[name]
            while queue and len(run) < MAX_BATCH and isinstance(queue[0][0], RewardWork):
                run.append(queue.popleft())  # type: ignore[arg-type]  # a RewardWork, checked above
        return run

    def close(self) -> None:
        """Finish everything queued, then stop the threads."""
        self._executor.shutdown(wait=True)


def fail(run: list[tuple[RewardWork, Future]], error: BaseException) -> None:
    """Complete with ``error`` every future of ``run`` not completed yet."""
    for _, future in run:
        if not future.done():
            future.set_exception(error)


def _background() -> None:
    """In a new lane thread: lower its own scheduling priority (on Linux a thread has its own niceness)."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):  # not permitted: it keeps the process's priority
            niceness = min(19, os.getpriority(os.PRIO_PROCESS, 0) + NICE)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)


@dataclass(frozen=True, slots=True)
class Plan:
    """Reward work learned one work after the other, ready to commit at once.

    ``commits`` has one :class:`~.base.RewardCommit` per work (or the exception its planner raised: that
    work changes nothing); ``rows`` the reward rows to record, each with the version its work's delta
    made and its place among that delta's learned rewards (None, None for a reward not learned);
    ``arrays``, ``version`` and ``watermark`` what the experiment has after all of them; ``learned`` how
    many rewards changed the policy.
    """

    commits: list[RewardCommit | Exception]
    rows: list[tuple[RewardRecord, int | None, int | None]]
    arrays: State
    version: int
    watermark: float | None
    learned: int


def learn_in_order(works: list[RewardWork], stored: dict[str, RewardRecord], arrays: State, version: int) -> Plan:
    """:func:`~.base.claim` each work on the arrays the previous one left, as if each committed alone.

    A reward an earlier work records counts as stored for the later ones; the versions are numbered from
    ``version``.
    """
    stored = dict(stored)
    commits: list[RewardCommit | Exception] = []
    rows: list[tuple[RewardRecord, int | None, int | None]] = []
    watermark, learned = None, 0
    for work in works:
        try:
            claimed = claim(work, stored, arrays)
        except Exception as error:
            commits.append(error)
            continue
        stored.update((row.decision_id, row) for row in claimed.rows)
        if claimed.delta is None:
            rows.extend((row, None, None) for row in claimed.rows)
            commits.append(RewardCommit(claimed.outcomes, None, version))
        else:
            version, arrays = version + 1, claimed.arrays
            position = itertools.count()
            rows.extend((row, version, next(position)) if row.applied else (row, None, None) for row in claimed.rows)
            learned += sum(row.applied for row in claimed.rows)
            commits.append(RewardCommit(claimed.outcomes, claimed.delta, version, claimed.arrays))
        if work.watermark is not None:
            watermark = work.watermark
    return Plan(commits, rows, arrays, version, watermark, learned)


def settle(run: list[tuple[RewardWork, Future]], plan: Plan) -> None:
    """Complete each work's future with its commit (or its planner's exception), once the plan is committed."""
    for (_, future), commit in zip(run, plan.commits, strict=True):
        if isinstance(commit, Exception):
            future.set_exception(commit)
        else:
            future.set_result(commit)

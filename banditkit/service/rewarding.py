"""Rewards: joined to their logged decision, recorded once, learned as a delta in the same transaction.

A reward for decision ``d`` is accepted once. A retry with the same value gets
the first answer again; another value gets 409; an unknown decision 404; a
reward after the attribution window (or after the window's default reward was
applied) 410. When the window closes without a reward, the experiment's
``default_reward`` is applied by :func:`sweep`, which keeps its progress in the
store and so survives restarts.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from .experiment import Experiment
from .model import apply_rewards, guarded, reward_delta
from .schemas import RewardRequest, RewardResult
from .stores import DecisionRecord, RewardRecord, Store
from .stores.base import Delta, State, policy_state, settled

#: Decisions settled by one sweep transaction at most.
SWEEP_BATCH = 2000


class RecentDecisions:
    """The last ``capacity`` decisions this process logged, so most rewards need no read from the store.

    Only a hint: a decision missing here is looked up in the store, and
    whether it already has a reward is decided by the store's atomic claim.
    Entries are tuples of plain values (what a reward needs), which the
    garbage collector stops tracking: a large cache adds no collection pauses.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._rows: OrderedDict[str, tuple] = OrderedDict()

    def add(self, rows: list[DecisionRecord]) -> None:
        for row in rows:
            self._rows[row.decision_id] = (row.time, row.experiment, row.unit, row.context, row.arm, row.propensity,
                                           row.policy_version, row.fallback)
        while len(self._rows) > self.capacity:
            self._rows.popitem(last=False)

    def find(self, store: Store, ids: list[str]) -> dict[str, tuple[DecisionRecord, RewardRecord | None]]:
        """Like :meth:`Store.find_decisions` (without the probabilities, which rewards do not need); a
        reward is only known for decisions read from the store."""
        found = {}
        for i in ids:
            entry = self._rows.get(i)
            if entry is not None:
                t, experiment, unit, context, arm, propensity, version, fallback = entry
                found[i] = (DecisionRecord(i, t, experiment, unit, context, arm, propensity, {}, version, fallback),
                            None)
        missing = [i for i in ids if i not in found]
        if missing:
            found.update(store.find_decisions(missing))
        return found


async def record(store: Store, experiment: Experiment, items: list[RewardRequest],
                 on_guardrail: Callable[[Experiment], None], recent: RecentDecisions) -> list[RewardResult]:
    """One result per reward, in order; ``status`` is 200, 404, 409, 410 or 422."""
    if not store.learns_in_process:
        return await claim(store, experiment, items)
    now = time.time()
    results: list[RewardResult | None] = [None] * len(items)
    pending: list[tuple[int, RewardRecord]] = []
    decisions: dict[str, DecisionRecord] = {}
    known = recent.find(store, [item.decision_id for item in items])
    for row, item in enumerate(items):
        results[row] = _out_of_range(item, experiment)
        if results[row] is not None:
            continue
        decision, earlier = known.get(item.decision_id, (None, None))
        if decision is None or decision.experiment != experiment.name:
            results[row] = _not_found(item, experiment)
            continue
        if earlier is not None:
            results[row] = _answer(earlier, item)
        elif now > decision.time + experiment.config.attribution_window_s:
            results[row] = _late(item, experiment)
        else:
            decisions[item.decision_id] = decision
            pending.append((row, RewardRecord(item.decision_id, experiment.name, decision.arm, item.value, now)))
    if pending:
        future = learn(store, experiment, [reward for _, reward in pending], decisions, on_guardrail)
        outcomes = await settled(future)
        for (row, _), outcome in zip(pending, outcomes):
            results[row] = _answer(outcome.reward, items[row])
    return results


async def claim(store: Store, experiment: Experiment, items: list[RewardRequest]) -> list[RewardResult]:
    """:func:`record` for a store that joins and claims rewards itself and learns elsewhere (Redis): the
    store's claim answers whether the decision exists, is already rewarded or is past its window."""
    now = time.time()
    results: list[RewardResult | None] = [_out_of_range(item, experiment) for item in items]
    rows = [row for row, result in enumerate(results) if result is None]
    if not rows:
        return results
    rewards = [RewardRecord(items[row].decision_id, experiment.name, "", items[row].value, now) for row in rows]
    outcomes = await settled(store.record_rewards(experiment.name, rewards, None, None))  # no delta: not learned here
    window = experiment.config.attribution_window_s
    for row, outcome in zip(rows, outcomes):
        item = items[row]
        if outcome.reward is not None:
            results[row] = _answer(outcome.reward, item)
        elif outcome.refused == "late" or now > decision_id_time(item.decision_id) + window:
            results[row] = _late(item, experiment)   # a decision past its window may be archived already
        else:
            results[row] = _not_found(item, experiment)
    return results


def decision_id_time(decision_id: str) -> float:
    """The time a decision id was made (its first 12 hex digits are milliseconds since the epoch); +inf
    for an id that does not start that way (it is never older than a window)."""
    try:
        return int(decision_id[:12], 16) / 1000 if len(decision_id) >= 12 else float("inf")
    except ValueError:
        return float("inf")


async def sweep(store: Store, experiment: Experiment, now: float, horizon: float,
                on_guardrail: Callable[[Experiment], None]) -> int:
    """Apply ``default_reward`` to the decisions whose attribution window has closed without a reward.

    Only decisions made before ``horizon`` (the oldest decision still being
    written) are settled, so the stored progress never passes one that is not
    visible yet.
    """
    value = experiment.config.default_reward
    if value is None:
        return 0
    cutoff = min(now - experiment.config.attribution_window_s, horizon)
    applied = 0
    while True:
        rows = await asyncio.to_thread(store.unrewarded, experiment.name, experiment.sweep_watermark, cutoff,
                                       SWEEP_BATCH)  # a scan: off the event loop
        watermark = cutoff if len(rows) < SWEEP_BATCH else rows[-1].time
        if not rows:  # nothing to settle: the stored watermark only saves work, so skip the write
            experiment.sweep_watermark = watermark
            return applied
        rewards = [RewardRecord(row.decision_id, experiment.name, row.arm, value, now, "default") for row in rows]
        future = learn(store, experiment, rewards, {row.decision_id: row for row in rows}, on_guardrail, watermark)
        outcomes = await settled(future)
        experiment.sweep_watermark = watermark
        applied += sum(outcome.first for outcome in outcomes)
        if len(rows) < SWEEP_BATCH:
            return applied


def learn(store: Store, experiment: Experiment, rewards: list[RewardRecord], decisions: dict[str, DecisionRecord],
          on_guardrail: Callable[[Experiment], None], watermark: float | None = None):
    """Record ``rewards`` once and merge their delta in one transaction; memory follows on commit.

    The delta is computed from the store's arrays as they stand in the
    transaction (earlier deltas of the same group commit merged), so it is
    exact for every merge rule; memory merges it in the same order on commit.
    """
    learned: list[tuple] = []

    def delta(new: list[RewardRecord], arrays: State):
        with experiment.lock:
            bandit = experiment.bandit
            index = {arm: i for i, arm in enumerate(bandit.arms)}
            applied = [reward.arm in index for reward in new]
            kept = [reward for reward, ok in zip(new, applied) if ok]
            if not kept:
                return None, applied
            rows = [decisions[reward.decision_id] for reward in kept]
            arms = np.array([index[reward.arm] for reward in kept], dtype=np.intp)
            values = np.array([reward.value for reward in kept], dtype=np.float64)
            contexts = np.array([row.context for row in rows], dtype=np.float64) if bandit.policy.contextual else None
            propensities = (np.array([row.propensity for row in rows], dtype=np.float64)
                            if bandit.policy.needs_propensities else None)
            learned.append((arms, values))
            change = reward_delta(bandit, arms, values, contexts, propensities, base=policy_state(arrays))
            return Delta(bandit.policy, change), applied

    def on_commit(change: Delta | None, version: int) -> None:
        if change is None:
            return
        with experiment.lock:
            bandit = experiment.bandit
            before = guarded(bandit)
            apply_rewards(bandit, change.arrays, *learned[-1], version=version)
            changed = guarded(bandit) != before
        if changed:
            on_guardrail(experiment)

    return store.record_rewards(experiment.name, rewards, delta, on_commit, watermark)


def _out_of_range(item: RewardRequest, experiment: Experiment) -> RewardResult | None:
    low, high = experiment.bandit.policy.reward_bounds
    if low <= item.value <= high:
        return None
    return RewardResult(decision_id=item.decision_id, status=422, detail=(
        f"value must be in [{low}, {high}] for policy {experiment.bandit.policy.name!r}, got {item.value!r}"))


def _not_found(item: RewardRequest, experiment: Experiment) -> RewardResult:
    return RewardResult(decision_id=item.decision_id, status=404, detail=(
        f"decision {item.decision_id!r} not found in experiment {experiment.name!r}"))


def _answer(stored: RewardRecord, item: RewardRequest) -> RewardResult:
    if stored.source == "default":
        return RewardResult(decision_id=item.decision_id, status=410, detail=(
            f"the attribution window of decision {item.decision_id!r} closed and its default reward "
            f"{stored.value!r} was applied"))
    if stored.value != item.value:
        return RewardResult(decision_id=item.decision_id, status=409, detail=(
            f"decision {item.decision_id!r} already has reward {stored.value!r}; got {item.value!r}"))
    return RewardResult(decision_id=item.decision_id, status=200, arm=stored.arm, value=stored.value,
                        applied=stored.applied)


def _late(item: RewardRequest, experiment: Experiment) -> RewardResult:
    return RewardResult(decision_id=item.decision_id, status=410, detail=(
        f"reward for decision {item.decision_id!r} came after the attribution window of "
        f"{experiment.config.attribution_window_s:g} s"))

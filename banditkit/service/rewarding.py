"""Rewards: joined to their logged decision, recorded once, learned as a delta committed with them.

A reward for decision ``d`` is accepted once. A retry with the same value gets
the first answer again; another value gets 409; an unknown decision 404; a
reward after the attribution window (or after the window's default reward was
applied) 410. When the window closes without a reward, the experiment's
``default_reward`` is applied by :func:`sweep`, which keeps its progress in the
store and so survives restarts.

This rule lives here once, for every store: the first reward of a decision
within a batch is the one submitted (:func:`first_per_decision`), the store
records it only if the decision has no reward yet (its one primitive, atomic
in its transaction or script) and gives back the stored reward either way,
and :func:`_answer` turns a stored reward into 200, 409 or 410.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from . import candidates
from .experiment import Experiment
from .metrics import Metrics, reward_outcome
from .model import DeltaPlanner, adopt_rewards, guarded
from .schemas import RewardRequest, RewardResult
from .stores import DecisionRecord, RewardRecord, Store
from .stores.base import RewardCommit, RewardOutcome, RewardWork, settled
from .stores.planner import candidate_arrays

logger = logging.getLogger("banditkit.service")

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
            self._rows[row.decision_id] = (
                row.time,
                row.experiment,
                row.unit,
                row.context,
                row.arm,
                row.propensity,
                row.policy_version,
                row.fallback,
                row.policy,
            )
        while len(self._rows) > self.capacity:
            self._rows.popitem(last=False)

    def find(self, store: Store, ids: list[str]) -> dict[str, tuple[DecisionRecord, RewardRecord | None]]:
        """Like :meth:`Store.find_decisions`, without the probabilities, which rewards do not need.

        A reward is only known for decisions read from the store.
        """
        found: dict[str, tuple[DecisionRecord, RewardRecord | None]] = {}
        for i in ids:
            entry = self._rows.get(i)
            if entry is not None:
                t, experiment, unit, context, arm, propensity, version, fallback, policy = entry
                found[i] = (
                    DecisionRecord(i, t, experiment, unit, context, arm, propensity, {}, version, fallback, policy),
                    None,
                )
        missing = [i for i in ids if i not in found]
        if missing:
            found.update(store.find_decisions(missing))
        return found


async def record(
    store: Store,
    experiment: Experiment,
    items: list[RewardRequest],
    on_guardrail: Callable[[Experiment], None],
    recent: RecentDecisions,
    metrics: Metrics | None = None,
) -> list[RewardResult]:
    """One result per reward, in order; ``status`` is 200, 404, 409, 410 or 422.

    ``metrics`` counts each reward's outcome and the store's commit time.
    """
    if not store.learns_in_process:
        return await claim(store, experiment, items, metrics)
    now = time.time()
    results: list[RewardResult | None] = [None] * len(items)
    first = [False] * len(items)
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
        started = time.perf_counter()
        outcomes = await learn(store, experiment, [reward for _, reward in pending], decisions, on_guardrail)
        if metrics is not None:
            metrics.store_latency("commit_rewards", time.perf_counter() - started)
        for (row, _), outcome in zip(pending, outcomes, strict=True):
            assert outcome.reward is not None  # a store that learns in process refuses no reward
            results[row] = _answer(outcome.reward, items[row])
            first[row] = outcome.first
    return _counted(_filled(results), first, experiment, metrics)


async def claim(
    store: Store, experiment: Experiment, items: list[RewardRequest], metrics: Metrics | None = None
) -> list[RewardResult]:
    """:func:`record` for a store that joins and claims rewards itself and learns elsewhere (Redis).

    The store's claim answers whether the decision exists, is already rewarded or is past its window.
    """
    now = time.time()
    results: list[RewardResult | None] = [_out_of_range(item, experiment) for item in items]
    first = [False] * len(items)
    rows = [row for row, result in enumerate(results) if result is None]
    if not rows:
        return _counted(_filled(results), first, experiment, metrics)
    rewards = [RewardRecord(items[row].decision_id, experiment.name, "", items[row].value, now) for row in rows]
    unique, positions = first_per_decision(rewards)
    started = time.perf_counter()
    commit = await settled(store.commit_rewards(RewardWork(experiment.name, unique)))  # no planner: not learned
    if metrics is not None:
        metrics.store_latency("commit_rewards", time.perf_counter() - started)
    window = experiment.config.attribution_window_s
    claimed: set[int] = set()
    for row, position in zip(rows, positions, strict=True):
        item, outcome = items[row], commit.outcomes[position]
        if outcome.reward is not None:
            results[row] = _answer(outcome.reward, item)
            first[row] = outcome.first and position not in claimed  # a later reward of the same decision repeats
            claimed.add(position)
        elif outcome.refused == "late" or now > decision_id_time(item.decision_id) + window:
            results[row] = _late(item, experiment)  # a decision past its window may be archived already
        else:
            results[row] = _not_found(item, experiment)
    return _counted(_filled(results), first, experiment, metrics)


def _counted(
    results: list[RewardResult], first: list[bool], experiment: Experiment, metrics: Metrics | None
) -> list[RewardResult]:
    """``results``, each counted in ``metrics`` by its outcome (``first``: the reward was recorded by this call)."""
    if metrics is not None:
        metrics.rewarded(
            experiment.name,
            (reward_outcome(result.status, result.applied, new) for result, new in zip(results, first, strict=True)),
        )
    return results


def _filled(results: list[RewardResult | None]) -> list[RewardResult]:
    """``results`` once every reward has its answer."""
    assert all(result is not None for result in results)
    return results  # type: ignore[return-value]  # checked just above


def first_per_decision(rewards: list[RewardRecord]) -> tuple[list[RewardRecord], list[int]]:
    """The first reward of each decision in ``rewards``, and for every reward the position of its decision's first.

    The first reward is the one a store may record; a later one gets the first one's answer.
    """
    positions: dict[str, int] = {}
    unique: list[RewardRecord] = []
    where = []
    for reward in rewards:
        position = positions.setdefault(reward.decision_id, len(unique))
        if position == len(unique):
            unique.append(reward)
        where.append(position)
    return unique, where


def decision_id_time(decision_id: str) -> float:
    """The time a decision id was made: its first 12 hex digits are milliseconds since the epoch.

    +inf for an id that does not start that way (it is never older than a window).
    """
    try:
        return int(decision_id[:12], 16) / 1000 if len(decision_id) >= 12 else float("inf")
    except ValueError:
        return float("inf")


async def sweep(
    store: Store, experiment: Experiment, now: float, horizon: float, on_guardrail: Callable[[Experiment], None]
) -> int:
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
        rows = await asyncio.to_thread(
            store.unrewarded, experiment.name, experiment.sweep_watermark, cutoff, SWEEP_BATCH
        )  # a scan: off the event loop
        watermark = cutoff if len(rows) < SWEEP_BATCH else rows[-1].time
        if not rows:  # nothing to settle: the stored watermark only saves work, so skip the write
            experiment.sweep_watermark = watermark
            return applied
        rewards = [RewardRecord(row.decision_id, experiment.name, row.arm, value, now, "default") for row in rows]
        outcomes = await learn(
            store, experiment, rewards, {row.decision_id: row for row in rows}, on_guardrail, watermark
        )
        experiment.sweep_watermark = watermark
        applied += sum(outcome.first for outcome in outcomes)
        if len(rows) < SWEEP_BATCH:
            return applied


async def learn(
    store: Store,
    experiment: Experiment,
    rewards: list[RewardRecord],
    decisions: dict[str, DecisionRecord],
    on_guardrail: Callable[[Experiment], None],
    watermark: float | None = None,
) -> list[RewardOutcome]:
    """Record ``rewards`` at most once with their delta merged, then serve the merged arrays.

    One outcome per reward (a later reward of the same decision gets the first one's).

    The store computes the delta with the experiment's :class:`~.model.DeltaPlanner` from the arrays its
    previous commit left, so it is exact for every merge rule; the commits come back in commit order, and
    memory follows them in that order.
    """
    await experiment.model_written()
    repeated = len(decisions) < len(rewards)  # ``decisions`` holds each rewarded decision once
    unique, positions = first_per_decision(rewards) if repeated else (rewards, None)
    # An experiment fed by a reward source records its rewards without learning them (applied: false).
    planner = (
        None
        if experiment.config.source is not None
        else DeltaPlanner.of(experiment.bandit, decisions, candidates.routes(experiment.candidate, experiment.lineage))
    )
    work = RewardWork(experiment.name, unique, planner, watermark)
    commit = await settled(store.commit_rewards(work))
    if commit.delta is not None:
        _follow(store, experiment, commit, on_guardrail)
    outcomes = commit.outcomes
    if not repeated:
        return outcomes
    assert positions is not None
    return [
        outcomes[p] if unique[p] is reward else RewardOutcome(outcomes[p].reward, False)
        for reward, p in zip(rewards, positions, strict=True)
    ]


def _follow(
    store: Store, experiment: Experiment, commit: RewardCommit, on_guardrail: Callable[[Experiment], None]
) -> None:
    """Serve the arrays the store merged a committed delta into (:func:`adopt_rewards`).

    The store's own arrays, so memory and store are identical, and nothing here costs in proportion to the
    state's size.
    """
    delta, version, arrays = commit.delta, commit.version, commit.arrays
    assert delta is not None and delta.arm_indices is not None and delta.rewards is not None
    assert version is not None and arrays is not None  # a store that learns in process gives them
    with experiment.lock:
        bandit = experiment.bandit
        if version == bandit.version + 1:
            before = guarded(bandit)
            adopt_rewards(bandit, arrays, version=version)
            changed = guarded(bandit) != before
            candidate = experiment.candidate
            if candidate is not None and delta.candidate_arm_indices is not None:
                assert delta.candidate_rewards is not None  # given together
                adopt_rewards(
                    candidate.bandit, candidate_arrays(arrays), version=max(version, candidate.bandit.version + 1)
                )
        else:
            changed = False
    if version > bandit.version + 1:
        # An earlier commit never reached memory (its request was cancelled while it committed): serve the
        # model as stored, which has it and this one.
        logger.warning(
            "experiment %r: served version %d, committed %d; reloading it from the store",
            experiment.name,
            bandit.version,
            version,
        )
        experiment.adopt(store.load_experiment(experiment.name))
    if changed:
        on_guardrail(experiment)


def _out_of_range(item: RewardRequest, experiment: Experiment) -> RewardResult | None:
    policy = experiment.bandit.policy
    low, high = policy.reward_bounds
    if low <= item.value <= high:
        return None
    return RewardResult(
        decision_id=item.decision_id,
        status=422,
        detail=(
            f"value must be in [{low}, {high}] for policy {policy.name!r}, got {item.value!r}{policy.reward_advice()}"
        ),
    )


def _not_found(item: RewardRequest, experiment: Experiment) -> RewardResult:
    return RewardResult(
        decision_id=item.decision_id,
        status=404,
        detail=(f"decision {item.decision_id!r} not found in experiment {experiment.name!r}"),
    )


def _answer(stored: RewardRecord, item: RewardRequest) -> RewardResult:
    if stored.source == "default":
        return RewardResult(
            decision_id=item.decision_id,
            status=410,
            detail=(
                f"the attribution window of decision {item.decision_id!r} closed and its default reward "
                f"{stored.value!r} was applied"
            ),
        )
    if stored.value != item.value:
        return RewardResult(
            decision_id=item.decision_id,
            status=409,
            detail=(f"decision {item.decision_id!r} already has reward {stored.value!r}; got {item.value!r}"),
        )
    return RewardResult(
        decision_id=item.decision_id, status=200, arm=stored.arm, value=stored.value, applied=stored.applied
    )


def _late(item: RewardRequest, experiment: Experiment) -> RewardResult:
    return RewardResult(
        decision_id=item.decision_id,
        status=410,
        detail=(
            f"reward for decision {item.decision_id!r} came after the attribution window of "
            f"{experiment.config.attribution_window_s:g} s"
        ),
    )

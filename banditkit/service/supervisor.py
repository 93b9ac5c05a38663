"""The supervisor: checks every experiment on a period, raises alerts and applies their remediations.

Six checks (``docs/supervisor.md``), each with thresholds from the experiment's ``supervisor`` block:
``exploration_collapsed``, ``slo_breach`` and ``reward_shift`` concern one arm; ``fallback_rate``,
``learner_lag`` and ``store_latency`` the experiment; and ``source_stale`` while the experiment's reward
source fails (:mod:`.sources` also raises and resolves it as its polls fail and recover). An alert opens
when its condition holds at a check and resolves at the first check where it no longer does (an arm's
alerts stay open while the arm is disabled);
each opening and resolution is written once as an event (:meth:`.Engine.record_alert`, a compare-and-set
on the model version, so several workers write it once), shown in ``/stats`` while open, and POSTed to
the experiment's webhook. ``banditkit watch URL`` runs the same checks through the HTTP API
(:mod:`banditkit.service.watch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..changes import ShiftDetector, ShiftState
from .alerts import open_alerts
from .schemas import AlertKind, AlertRequest, StatsOut, SupervisorSpec

if TYPE_CHECKING:
    from .engine import Engine

logger = logging.getLogger("banditkit.service")
#: Columns of a log row the checks read, as :meth:`.Store.iter_log` and the CSV export give them.
ID, TIME, ARM, FALLBACK, REWARD = 0, 1, 5, 9, 10


def arm_alerts(spec: SupervisorSpec, stats: StatsOut) -> list[AlertRequest]:
    """The ``exploration_collapsed`` and ``slo_breach`` alerts of the active arms in ``stats``."""
    alerts = []
    for row in stats.arms:
        if not row.active:
            continue
        if row.probability is not None and row.probability < spec.min_probability and row.pulls < spec.min_pulls:
            alerts.append(
                AlertRequest(
                    kind="exploration_collapsed",
                    arm=row.arm,
                    detail=f"served with probability {row.probability:.3g} after {row.pulls} rewards",
                    value=row.probability,
                    threshold=spec.min_probability,
                )
            )
        high = row.cs_high if row.cs_high is not None else row.high
        if spec.min_reward is not None and high is not None and high < spec.min_reward:
            alerts.append(
                AlertRequest(
                    kind="slo_breach",
                    arm=row.arm,
                    detail=f"mean reward at most {high:.4g} (95%), below {spec.min_reward:g}",
                    value=high,
                    threshold=spec.min_reward,
                )
            )
    return alerts


def level_alerts(
    spec: SupervisorSpec, stats: StatsOut, decisions: int, fallbacks: int, latency_s: float
) -> list[AlertRequest]:
    """The alerts of the experiment itself, and those of its arms (:func:`arm_alerts`), found in one check.

    ``decisions`` and ``fallbacks`` count the decisions made since the last check; ``latency_s`` is how long
    a read of the store took.
    """
    levels: list[tuple[AlertKind, float, float]] = [
        ("fallback_rate", fallbacks / decisions if decisions >= spec.min_decisions else 0.0, spec.max_fallback_rate),
        ("learner_lag", stats.learner_lag_s, spec.max_learner_lag_s),
        ("store_latency", latency_s, spec.max_store_latency_s),
    ]
    found = arm_alerts(spec, stats)
    for kind, value, limit in levels:
        if value > limit:
            found.append(AlertRequest(kind=kind, detail=f"{value:.3g} above {limit:g}", value=value, threshold=limit))
    source = stats.source
    if source is not None and source.failing:  # the reward source's last poll failed: its last good answer serves
        found.append(AlertRequest(kind="source_stale", detail=(source.last_error or "")[:1000], value=source.age_s))
    return found


@dataclass
class LogFollower:
    """What one experiment's decision log has told the supervisor so far, read incrementally.

    ``position`` counts the leading rows that are settled (rewarded, or past their attribution window):
    they are never read again. Rewarded rows past it are remembered by id in ``fed``, so each reward
    reaches the detector once. Per arm, the detector's statistics.
    """

    spec: SupervisorSpec
    position: int = 0
    fed: set[str] = field(default_factory=set)
    checked_until: float = 0.0
    arms: list[str] = field(default_factory=list)
    state: ShiftState | None = None

    @property
    def detector(self) -> ShiftDetector:
        return ShiftDetector(self.spec.shift, self.spec.shift_arl, self.spec.shift_warmup)

    def feed(
        self, rows: Iterable[tuple], now: float, settled_before: float, bounds: tuple[float, float]
    ) -> tuple[list[AlertRequest], int, int]:
        """Read the log rows after ``position``: reward shifts, and (decisions, fallbacks) since the last check.

        ``rows`` are the log's rows from ``position`` on; ``settled_before`` the decision time before which
        no reward can come any more; ``bounds`` the reward range mapped onto [0, 1] (infinite: no
        reward_shift check, the rate of unbounded rewards has no scale).
        """
        rewards: dict[str, list[float]] = {}
        decisions = fallbacks = 0
        settled_prefix = True
        advanced = 0
        low, high = bounds
        scaled = math.isfinite(low) and math.isfinite(high) and high > low
        for row in rows:
            decision_id, decided, arm, reward = row[ID], float(row[TIME]), row[ARM], row[REWARD]
            if decided > self.checked_until:
                decisions += 1
                fallbacks += bool(int(row[FALLBACK]))
            if reward is not None and decision_id not in self.fed:
                self.fed.add(decision_id)
                if scaled:
                    rewards.setdefault(arm, []).append(min(max((float(reward) - low) / (high - low), 0.0), 1.0))
            if settled_prefix and (reward is not None or decided < settled_before):
                advanced += 1
                self.fed.discard(decision_id)
            else:
                settled_prefix = False
        self.position += advanced
        self.checked_until = now
        return self._shifts(rewards), decisions, fallbacks

    def _shifts(self, rewards: dict[str, list[float]]) -> list[AlertRequest]:
        """Feed each arm's new rewards to its detector (all arms in one array); an alert per arm that alarmed."""
        arms = sorted(set(self.arms) | set(rewards))
        detector = self.detector
        previous = self.state if self.state is not None else detector.init_state(0)
        self.state = previous.take(np.array([self.arms.index(arm) if arm in self.arms else -1 for arm in arms]))
        self.arms = arms
        longest = max((len(values) for values in rewards.values()), default=0)
        if not longest:
            return []
        matrix = np.full((len(arms), longest), np.nan)
        for index, arm in enumerate(arms):
            values = rewards.get(arm, [])
            matrix[index, : len(values)] = values
        self.state, alarms = detector.update(self.state, matrix)
        return [
            AlertRequest(
                kind="reward_shift",
                arm=arm,
                detail=f"reward rate moved by at least {self.spec.shift:g} of the reward range",
                threshold=detector.threshold,
            )
            for arm, alarmed in zip(arms, np.any(alarms, axis=1).tolist(), strict=True)
            if alarmed
        ]


def transitions(
    found: list[AlertRequest], opened: dict[tuple[str, str | None], dict], active_arms: set[str]
) -> list[AlertRequest]:
    """The alerts to write: those ``found`` not yet open, and resolutions of open ones no longer found.

    An arm's open alert stays open while the arm is not active (its condition is not checked then).
    """
    keys = {(alert.kind, alert.arm) for alert in found}
    changes = [alert for alert in found if (alert.kind, alert.arm) not in opened]
    for kind, arm in opened:
        if (kind, arm) not in keys and (arm is None or arm in active_arms):
            changes.append(AlertRequest(kind=kind, arm=arm, state="resolved"))  # type: ignore[arg-type]
    return changes


def alert_lines(opened: dict[tuple[str, str | None], dict]) -> list[str]:
    """The open alerts as ``/stats`` lines."""
    lines = []
    for (kind, arm), event in opened.items():
        where = f" on arm {arm!r}" if arm is not None else ""
        lines.append(f"{kind}{where}: {event['detail']}" if event.get("detail") else f"{kind}{where}")
    return lines


class Supervisor:
    """Runs the checks of every experiment an engine serves, every ``interval_s`` seconds.

    ``alert_counts`` (alerts opened by this process per (experiment, kind)) and :meth:`open_counts` are
    what metrics read.
    """

    def __init__(self, engine: Engine, interval_s: float) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.followers: dict[str, LogFollower] = {}
        self.alert_counts: Counter[tuple[str, str]] = Counter()
        self.opened: dict[str, dict[tuple[str, str | None], dict]] = {}

    def open_counts(self) -> dict[tuple[str, str], int]:
        """Open alerts per (experiment, kind), as last checked."""
        counts: Counter[tuple[str, str]] = Counter()
        for name, opened in self.opened.items():
            counts.update((name, kind) for kind, _ in opened)
        return dict(counts)

    async def run_forever(self) -> None:
        """Check every experiment each period; a failure is logged and the next period tries again."""
        while True:
            await asyncio.sleep(self.interval_s)
            await self.check_all()

    async def check_all(self) -> None:
        for name in list(self.engine.experiments):
            try:
                await self.check(name)
            except Exception:
                logger.exception("supervisor check of %r failed; next check in %.0f s", name, self.interval_s)

    async def check(self, name: str) -> list[dict]:
        """Check one experiment now; the alert events written."""
        engine = self.engine
        experiment = engine.experiment(name)
        spec = experiment.config.supervisor
        follower = self.followers.get(name)
        if follower is None or follower.spec != spec:
            follower = self.followers[name] = LogFollower(spec)
        store = engine.store
        now = time.time()
        started = time.perf_counter()
        events = await asyncio.to_thread(store.events, name)
        latency = time.perf_counter() - started
        window = experiment.config.attribution_window_s
        rows = await asyncio.to_thread(_rows_after, store, name, follower.position)
        bounds = experiment.bandit.policy.reward_bounds
        found, decisions, fallbacks = follower.feed(rows, now, now - window - 2 * self.interval_s, bounds)
        stats = engine.stats(name)  # on the event loop, as GET .../stats computes it
        found += level_alerts(spec, stats, decisions, fallbacks, latency)
        opened = open_alerts(events)
        written = []
        for alert in transitions(found, opened, {row.arm for row in stats.arms if row.active}):
            answer = await engine.record_alert(name, alert)
            if answer.written and answer.event is not None:
                written.append(answer.event)
                if alert.state == "open":
                    self.alert_counts[(name, alert.kind)] += 1
        if written:
            opened = open_alerts(await asyncio.to_thread(store.events, name))
        self.opened[name] = opened
        engine.supervisor_alerts[name] = alert_lines(opened)
        return written


def _rows_after(store, name: str, position: int) -> list[tuple]:
    """The log rows of ``name`` after the first ``position`` (read in a thread: the store's reads block)."""
    return list(itertools.islice(store.iter_log(name), position, None))


class Webhook:
    """POSTs alert events as JSON in a background task: retried with exponential backoff, never blocking.

    :meth:`send` only queues; the task delivers up to ``concurrency`` events at once (a receiver that is down
    does not hold back another's), waiting ``backoff_s`` x 2^(try - 1) (at most ``max_backoff_s``) before
    each retry, for ``attempts`` tries.
    """

    def __init__(
        self, *, backoff_s: float = 0.5, max_backoff_s: float = 60.0, attempts: int = 12, concurrency: int = 16
    ) -> None:
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.attempts = attempts
        self.concurrency = concurrency
        self.queue: asyncio.Queue[tuple[str, dict]] = asyncio.Queue(maxsize=10_000)
        self.delivered = 0
        self.failed = 0

    def send(self, url: str, payload: dict) -> None:
        """Queue ``payload`` for ``url``; dropped (and logged) when ten thousand wait already."""
        try:
            self.queue.put_nowait((url, payload))
        except asyncio.QueueFull:
            self.failed += 1
            logger.error("webhook queue full: alert %s of %r dropped", payload.get("alert"), payload.get("experiment"))

    async def run(self) -> None:
        import httpx  # the service extra's

        slots = asyncio.Semaphore(self.concurrency)
        sending: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks

        async def deliver(client, url: str, payload: dict) -> None:
            try:
                await self._deliver(client, url, payload)
            finally:
                slots.release()

        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as client:
            try:
                while True:
                    url, payload = await self.queue.get()
                    await slots.acquire()  # at most `concurrency` being delivered: the rest wait in the queue
                    task = asyncio.create_task(deliver(client, url, payload))
                    sending.add(task)
                    task.add_done_callback(sending.discard)
            finally:
                for task in sending:
                    task.cancel()

    async def _deliver(self, client, url: str, payload: dict) -> None:
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s))
            with contextlib.suppress(Exception):
                response = await client.post(url, json=payload)
                if 200 <= response.status_code < 300:
                    self.delivered += 1
                    return
        self.failed += 1
        logger.error("webhook %s did not take alert %s after %d tries", url, payload.get("alert"), self.attempts)


def webhook_hook(engine: Engine, webhook: Webhook):
    """The engine's ``on_alert``: queue the event for the experiment's webhook, if it has one."""

    def on_alert(name: str, event: dict) -> None:
        experiment = engine.experiments.get(name)
        url = None if experiment is None else experiment.config.supervisor.webhook_url
        if url is not None:
            webhook.send(url, event)

    return on_alert

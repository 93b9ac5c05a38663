"""What the dashboard shows, read from the engine and its store: the data its templates render.

The allocation over time comes from :meth:`~.stores.Store.decision_counts`, counts per arm and per minute or
hour bucket that the SQLite store keeps as it logs decisions, so a page costs the same with a thousand or a
million logged decisions (``benchmarks/bench_dashboard.py``): at most 2,880 minute rows per arm (logs spanning
up to two days) or one row per hour and arm, merged here into at most :data:`MAX_POINTS` buckets.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import charts
from .engine import Engine
from .stores import Store

#: Most buckets of the allocation chart.
MAX_POINTS = 120
#: Widths the allocation chart's buckets may take, in seconds (each a multiple of the stored minute or hour).
BUCKET_WIDTHS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400, 172_800, 604_800)
#: Logs spanning at most this many seconds are read per minute, longer ones per hour.
MINUTES_UP_TO_S = 2 * 86_400
#: Events listed on an experiment's page at most (newest first).
MAX_EVENTS = 50


@dataclass(frozen=True)
class Allocation:
    """Decisions per arm in consecutive buckets of ``width_s`` seconds from ``start_s`` (seconds since the epoch).

    ``counts`` has shape (n_buckets, n_arms), columns in the order of ``arms``; a bucket without decisions
    holds zeros.
    """

    start_s: int
    width_s: int
    arms: tuple[str, ...]
    counts: np.ndarray


@dataclass(frozen=True)
class Event:
    """An audit event as a line of the events table: time, version and kind, its other fields as JSON."""

    time: float
    policy_version: int
    kind: str
    detail: str

    @classmethod
    def of(cls, event: dict[str, Any]) -> Event:
        """From an event of :meth:`~.stores.Store.events`."""
        fields = ("experiment", "time", "policy_version", "kind")
        detail = {key: value for key, value in event.items() if key not in fields}
        text = json.dumps(detail, sort_keys=True) if detail else ""
        return cls(event["time"], event["policy_version"], event.get("kind", ""), text)


@dataclass(frozen=True)
class Snapshot:
    """A snapshot as a line of the versions table (from its audit event)."""

    snapshot_id: int
    policy_version: int
    taken: float


@dataclass(frozen=True)
class ExperimentLine:
    """An experiment as a line of the experiments table."""

    name: str
    policy: str
    arms: int
    active: int
    version: int
    decisions: int
    rewards: int
    created_at: float


def allocation(store: Store, name: str, max_points: int = MAX_POINTS) -> Allocation | None:
    """The decisions of ``name`` per arm over time, in at most ``max_points`` buckets; None before any decision.

    Read per hour, and per minute when the log spans at most :data:`MINUTES_UP_TO_S`; the bucket width is the
    smallest of :data:`BUCKET_WIDTHS` (or a multiple of a week) that is a multiple of the stored width and keeps
    the chart within ``max_points``.
    """
    counted = store.decision_counts(name, 3600)
    if not len(counted.buckets):
        return None
    if (counted.buckets[-1] - counted.buckets[0] + 1) * 3600 <= MINUTES_UP_TO_S:
        counted = store.decision_counts(name, 60)
    stored = counted.width_s
    first, end = int(counted.buckets[0]) * stored, (int(counted.buckets[-1]) + 1) * stored
    fits = [w for w in BUCKET_WIDTHS if w % stored == 0 and math.ceil((end - first) / w) + 1 <= max_points]
    width = fits[0] if fits else 604_800 * math.ceil((end - first) / 604_800 / (max_points - 1))
    start = first // width
    index = counted.buckets * stored // width - start
    dense = np.zeros((int(index[-1]) + 1, len(counted.arms)), dtype=np.int64)
    np.add.at(dense, index, counted.counts)
    return Allocation(start * width, width, counted.arms, dense)


def experiment_view(engine: Engine, name: str) -> dict[str, Any]:
    """Everything an experiment's page shows, for ``templates/panel.html``; 404 (NotFoundError) if unknown."""
    experiment = engine.experiment(name)
    described = experiment.describe()
    stats = engine.stats(name)
    served = [arm.name for arm in described.arms]
    counted = allocation(engine.store, name)
    # Served arms in their order, then arms removed since (they are in the log, not in the model).
    order = served + [arm for arm in (counted.arms if counted else ()) if arm not in served]
    colors = {arm: charts.color(position) for position, arm in enumerate(order)}
    events = engine.store.events(name)
    chart_events = [
        charts.Tick(event["time"], f"v{event['policy_version']} {event.get('kind', '')}")
        for event in events
        if event.get("kind") in ("arms", "rollback", "guardrail")
    ]
    allocation_chart = None
    if counted is not None:
        columns = [counted.arms.index(arm) for arm in order if arm in counted.arms]
        arms = [counted.arms[column] for column in columns]
        allocation_chart = charts.allocation_chart(
            counted.start_s, counted.width_s, arms, counted.counts[:, columns], colors, chart_events
        )
    return {
        "name": name,
        "experiment": described,
        "stats": stats,
        "colors": colors,
        "reward_chart": charts.reward_chart(stats.arms, colors),
        "p_best_chart": charts.p_best_chart(stats.arms, colors),
        "allocation": counted,
        "allocation_chart": allocation_chart,
        "events": [Event.of(event) for event in reversed(events[-MAX_EVENTS:])],
        # From the audit log, which lists every snapshot: the store's list would decode each one's state.
        "snapshots": [
            Snapshot(event["snapshot_id"], event["policy_version"], event["time"])
            for event in reversed(events)
            if event.get("kind") == "snapshot"
        ],
    }


def overview(engine: Engine) -> list[ExperimentLine]:
    """One line per experiment, in name order: its configuration, version and log counts."""
    lines = []
    for name in sorted(engine.experiments):
        described = engine.experiments[name].describe()
        decisions, rewards = engine.store.counts(name)
        active = sum(arm.active for arm in described.arms)
        policy = described.policy.get("name", "")
        lines.append(
            ExperimentLine(
                name,
                policy,
                len(described.arms),
                active,
                described.policy_version,
                decisions,
                rewards,
                described.created_at,
            )
        )
    return lines

"""The dashboard's charts as SVG geometry computed here, drawn by its templates: no JavaScript to chart.

Each function returns plain data (coordinates rounded to 0.1 px, labels, colours) for a template of
``templates/`` to write out; the values themselves go along unrounded, so a reader (or a test) can check a
chart against ``/stats``. Every chart is drawn in its own ``viewBox`` and scales with the page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from .schemas import ArmStatsOut

#: Arm colours, in arm order (Tableau 10, readable on white and by most colour-blind readers).
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
#: Chart width and the left margin kept for arm names and axis labels, in SVG units.
WIDTH, LEFT = 640.0, 150.0
ROW = 26.0


def color(position: int) -> str:
    return PALETTE[position % len(PALETTE)]


@dataclass(frozen=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True)
class Interval:
    """One arm of the reward chart: its values as ``/stats`` gives them and their x positions (None: none)."""

    arm: str
    color: str
    y: float
    mean: float | None
    low: float | None
    high: float | None
    cs_low: float | None
    cs_high: float | None
    x_mean: float | None
    x_low: float | None
    x_high: float | None
    x_cs_low: float | None
    x_cs_high: float | None


@dataclass(frozen=True)
class Bar:
    """One arm's bar: its value in [0, 1] (None: no bar) and the bar's length."""

    arm: str
    color: str
    y: float
    value: float | None
    width: float | None


@dataclass(frozen=True)
class Area:
    """One arm's band of the allocation chart: its decisions and the polygon's points (``"x,y x,y ..."``)."""

    arm: str
    color: str
    decisions: int
    points: str


@dataclass
class Chart:
    """One SVG chart: its size, axis ticks, one mark per arm, and vertical lines (events)."""

    height: float
    width: float = WIDTH
    ticks: list[Tick] = field(default_factory=list)
    marks: list[Interval | Bar | Area] = field(default_factory=list)
    lines: list[Tick] = field(default_factory=list)


def nice_ticks(low: float, high: float, count: int = 5) -> np.ndarray:
    """Round values between ``low`` and ``high`` (about ``count``), at a step of 1, 2 or 5 times a power of ten."""
    raw = (high - low) / max(count, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(multiple * power for multiple in (1, 2, 5, 10) if multiple * power >= raw)
    return np.arange(math.ceil(low / step) * step, high + step * 1e-9, step)


def domain(values: list[float]) -> tuple[float, float]:
    """A range holding ``values``, widened by 5% each side (and around a single value)."""
    low, high = min(values), max(values)
    pad = (high - low) * 0.05 if high > low else max(abs(high) * 0.1, 0.5)
    return low - pad, high + pad


def reward_chart(arms: list[ArmStatsOut], colors: dict[str, str]) -> Chart | None:
    """Mean reward per arm with its 95% confidence sequence (thick) and fixed-n interval (thin).

    ``arms`` are those of ``/stats``, ``colors`` each one's colour; None when no arm has a reward yet.
    """
    values = [v for a in arms for v in (a.mean, a.low, a.high, a.cs_low, a.cs_high) if v is not None]
    if not values:
        return None
    low, high = domain(values)
    scale = (WIDTH - LEFT - 20) / (high - low)

    def x(value: float | None) -> float | None:
        return None if value is None else round(LEFT + (value - low) * scale, 1)

    chart = Chart(height=ROW * len(arms) + 30)
    chart.ticks = [Tick(x(float(t)) or 0.0, f"{t:g}") for t in nice_ticks(low, high)]
    chart.marks = [
        Interval(
            a.arm,
            colors[a.arm],
            round(ROW * position + ROW / 2, 1),
            a.mean,
            a.low,
            a.high,
            a.cs_low,
            a.cs_high,
            x(a.mean),
            x(a.low),
            x(a.high),
            x(a.cs_low),
            x(a.cs_high),
        )
        for position, a in enumerate(arms)
    ]
    return chart


def p_best_chart(arms: list[ArmStatsOut], colors: dict[str, str]) -> Chart | None:
    """A bar per arm for its ``p_best`` on a 0 to 1 axis; None when the policy gives none (contextual)."""
    if all(a.p_best is None for a in arms):
        return None
    span = WIDTH - LEFT - 20
    chart = Chart(height=ROW * len(arms) + 30)
    chart.ticks = [Tick(round(LEFT + t * span, 1), f"{t:g}") for t in (0.0, 0.25, 0.5, 0.75, 1.0)]
    chart.marks = [
        Bar(
            a.arm,
            colors[a.arm],
            round(ROW * position + 5, 1),
            a.p_best,
            None if a.p_best is None else round(a.p_best * span, 1),
        )
        for position, a in enumerate(arms)
    ]
    return chart


def allocation_chart(
    start_s: float, width_s: int, arms: list[str], counts: np.ndarray, colors: dict[str, str], events: list[Tick]
) -> Chart:
    """Each arm's share of the decisions per time bucket, stacked to 100% (a step area per arm).

    ``counts`` has shape (n_buckets, n_arms), bucket ``i`` starting at ``start_s + i * width_s`` seconds since
    the epoch; a bucket without decisions is left empty. ``events`` (at a time in seconds since the epoch,
    with a label) become vertical lines where they fall inside the chart.
    """
    height, top, plot = 220.0, 10.0, 180.0
    span = WIDTH - LEFT - 20
    n = len(counts)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    upper = np.cumsum(shares, axis=1)
    edges = LEFT + np.arange(n + 1) * (span / n)
    xs = np.repeat(edges, 2)[1:-1]  # each bucket's left and right edge: a step shape

    def y(level: np.ndarray) -> np.ndarray:
        return top + plot * (1 - np.repeat(level, 2))

    chart = Chart(height=height)
    for column, arm in enumerate(arms):
        top_y = y(upper[:, column])
        bottom_y = y(upper[:, column] - shares[:, column])
        points = np.concatenate([np.stack([xs, top_y], 1), np.stack([xs[::-1], bottom_y[::-1]], 1)])
        chart.marks.append(
            Area(arm, colors[arm], int(counts[:, column].sum()), " ".join(f"{px:.1f},{py:.1f}" for px, py in points))
        )
    end_s = start_s + n * width_s
    fmt = "%H:%M" if end_s - start_s <= 2 * 86_400 else "%m-%d %H:%M" if width_s < 86_400 else "%Y-%m-%d"
    chart.ticks = [Tick(round(float(edges[i]), 1), utc(start_s + i * width_s, fmt)) for i in _tick_positions(n)]
    for event in events:
        if start_s <= event.at <= end_s:
            chart.lines.append(Tick(round(LEFT + (event.at - start_s) / (end_s - start_s) * span, 1), event.label))
    return chart


def _tick_positions(n: int, count: int = 5) -> list[int]:
    """Up to ``count`` + 1 evenly spread bucket edges among the ``n`` + 1 of the chart."""
    return sorted({round(i * n / count) for i in range(count + 1)})


def utc(seconds: float, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """Seconds since the epoch as UTC text (by default ``YYYY-MM-DD HH:MM:SS``, the dashboard's time format)."""
    return datetime.fromtimestamp(seconds, UTC).strftime(fmt)

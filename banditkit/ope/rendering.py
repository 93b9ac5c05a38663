"""Offline-evaluation reports drawn and written: matplotlib is imported here only, on first use."""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import BanditkitError

_COLUMNS = ("value", "low", "high", "ratio", "ratio_low", "ratio_high", "ess", "max_weight", "support")


def plot_estimates(groups: dict[str, dict[str, Any]], logged: Any = None, path: str | Path | None = None) -> Any:
    """Every estimate as a point with its interval, one row per (group, estimator); return the Figure.

    Estimates are :class:`~banditkit.ope.report.Estimate` (not imported: the report imports this module).

    ``groups`` maps a candidate (or "target" for a one-target report) to its estimates by estimator;
    ``logged``, when given, is drawn as a vertical line with its interval as a band.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise BanditkitError("plot needs matplotlib: pip install matplotlib (or banditkit[viz])") from error
    labels, values, lows, highs, colours = [], [], [], [], []
    palette = ("C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9")
    for index, (group, estimates) in enumerate(groups.items()):
        for estimator, estimate in estimates.items():
            low, high = estimate.interval()
            labels.append(f"{group} · {estimator}" if len(groups) > 1 else estimator)
            values.append(estimate.value)
            lows.append(estimate.value - low if not math.isnan(low) else 0.0)
            highs.append(high - estimate.value if not math.isnan(high) else 0.0)
            colours.append(palette[index % len(palette)])
    # A bare Figure needs no pyplot backend: it saves headless and still displays in notebooks.
    figure = Figure(figsize=(7.5, 1.2 + 0.32 * len(labels)), dpi=110)
    axis = figure.subplots()
    positions = list(range(len(labels)))[::-1]
    for y, value, low, high, colour in zip(positions, values, lows, highs, colours, strict=True):
        axis.errorbar(value, y, xerr=[[low], [high]], fmt="o", color=colour, capsize=3, markersize=4)
    if logged is not None:
        axis.axvline(logged.value, color="0.3", linestyle="--", linewidth=1, label="logged policy")
        low, high = logged.interval()
        if not math.isnan(low):
            axis.axvspan(low, high, color="0.5", alpha=0.15, linewidth=0)
        axis.legend(loc="lower right", fontsize=8)
    axis.set_yticks(positions, labels, fontsize=8)
    level = next((e.confidence for estimates in groups.values() for e in estimates.values()), 0.95)
    axis.set_xlabel(f"estimated value (mean reward per decision), {level:.0%} intervals")
    axis.grid(True, axis="x", alpha=0.3)
    figure.tight_layout()
    if path is not None:
        figure.savefig(path)
    return figure


def write_html(
    path: str | Path,
    title: str,
    rows: list[dict[str, Any]],
    figure: Any,
    notes: Sequence[str],
    warnings: Sequence[str],
) -> None:
    """One self-contained page: title, notes, the figure as a base64 PNG, the table of rows, the warnings."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    image = base64.b64encode(buffer.getvalue()).decode("ascii")
    keys = [key for key in rows[0] if key not in _COLUMNS] + [key for key in _COLUMNS if key in rows[0]]
    keys = [key for key in keys if key not in ("n_rows", "confidence", "normal_low", "normal_high", "std_error")]
    head = "".join(f"<th>{html.escape(key)}</th>" for key in keys)
    body = "".join("<tr>" + "".join(f"<td>{_cell(row.get(key))}</td>" for key in keys) + "</tr>" for row in rows)
    items = "".join(f"<li>{html.escape(warning)}</li>" for warning in warnings)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}th{{background:#f3f3f3}}
td:first-child,td:nth-child(2){{text-align:left}}.warn{{color:#8a5a00}}</style></head><body>
<h1>{html.escape(title)}</h1>
{"".join(f"<p><strong>{html.escape(note)}</strong></p>" for note in notes)}
<img alt="estimates with intervals" src="data:image/png;base64,{image}">
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
{f'<h2>Warnings</h2><ul class="warn">{items}</ul>' if items else ""}
</body></html>
"""
    Path(path).write_text(page, encoding="utf-8")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.5g}"
    return html.escape(str(value))

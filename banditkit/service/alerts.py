"""Alerts as the audit log holds them, and what a remediation does to a model.

Shared by the engine, which writes an alert's event and its remediation as one model change, and the
supervisor, which decides them.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..bandit import Bandit
from .schemas import AlertRequest


def open_alerts(events: Iterable[dict]) -> dict[tuple[str, str | None], dict]:
    """The alerts open after ``events`` (an experiment's audit log, oldest first), keyed by (kind, arm)."""
    opened: dict[tuple[str, str | None], dict] = {}
    for event in events:
        if event.get("kind") != "alert":
            continue
        key = (event["alert"], event.get("arm"))
        if event.get("state") == "open":
            opened[key] = event
        else:
            opened.pop(key, None)
    return opened


def remediate(bandit: Bandit, alert: AlertRequest, action: str) -> list[str]:
    """Apply ``action`` for ``alert`` to ``bandit`` (a copy about to be stored); the arms it disabled.

    ``disable_arm`` disables the alert's arm, ``pause_exploration`` every active arm but the best one (by
    mean reward; the default arm, else the first active, before any reward); the last active arm is never
    disabled. ``alert_only`` changes nothing.
    """
    active = bandit.active_arms
    if action == "disable_arm":
        doomed = [alert.arm] if alert.arm in active and len(active) > 1 else []
        reason = f"supervisor: {alert.kind}" + (f" ({alert.detail})" if alert.detail else "")
    elif action == "pause_exploration":
        doomed = [arm for arm in active if arm != best_arm(bandit)]
        reason = f"supervisor: exploration paused after {alert.kind}"
    else:
        doomed = []
    for arm in doomed:
        bandit.disable_arm(arm, reason)
    return doomed


def best_arm(bandit: Bandit) -> str:
    """The active arm of largest mean reward; before any reward, the default arm (else the first active)."""
    rows = [row for row in bandit.stats() if row.active and row.pulls > 0]
    if rows:
        return max(rows, key=lambda row: float(row.mean or 0.0)).arm
    active = bandit.active_arms
    default = bandit.guardrails.default_arm
    return default if default in active else active[0]

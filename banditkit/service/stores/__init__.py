"""Stores of the decision service: memory (tests, embedded use) and SQLite (the default)."""

from __future__ import annotations

from .base import (
    Assignment,
    DecisionRecord,
    ExperimentExistsError,
    ExperimentRecord,
    RewardOutcome,
    RewardRecord,
    SnapshotRecord,
    Store,
)
from .memory import MemoryStore
from .sqlite import SQLiteStore


def open_store(url: str, *, synchronous: str = "FULL", commit_interval_s: float = 0.0) -> Store:
    """A store from its URL: ``memory://`` or ``sqlite:///relative/or/absolute/path.db``."""
    if url == "memory://":
        return MemoryStore()
    if url.startswith("sqlite:///"):
        return SQLiteStore(url.removeprefix("sqlite:///"), synchronous=synchronous,
                           commit_interval_s=commit_interval_s)
    raise ValueError(f"store must be sqlite:///PATH or memory://, got {url!r}")


__all__ = ["Assignment", "DecisionRecord", "ExperimentExistsError", "ExperimentRecord", "MemoryStore",
           "RewardOutcome", "RewardRecord", "SQLiteStore", "SnapshotRecord", "Store", "open_store"]

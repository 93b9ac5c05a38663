"""Stores of the decision service: memory (tests, embedded use), SQLite (the default) and Redis (shared)."""

from __future__ import annotations

from pathlib import Path

from .base import (
    Assignment,
    DecisionRecord,
    ExperimentExistsError,
    ExperimentRecord,
    ModelChange,
    ModelMovedError,
    RewardCommit,
    RewardOutcome,
    RewardRecord,
    RewardWork,
    SnapshotRecord,
    Store,
    StoreUnavailableError,
)
from .memory import MemoryStore
from .redis_keys import is_redis_url
from .sqlite import SQLiteStore

STORE_URLS = "sqlite:///PATH, memory://, redis://HOST:PORT/DB or redis+cluster://HOST:PORT"


def open_store(
    url: str,
    *,
    synchronous: str = "FULL",
    commit_interval_s: float = 0.0,
    spool_dir: str | Path = "banditkit-spool",
    checkpoint_s: float = 10.0,
) -> Store:
    """A store from its URL: ``memory://``, ``sqlite:///relative/or/absolute/path.db``, or a Redis URL.

    Redis URLs are read by :mod:`.redis_keys`; ``spool_dir`` keeps the decisions served while Redis is down.
    ``checkpoint_s``: how long an SQLite experiment's state may go unwritten after it changed
    (:class:`.SQLiteStore`).
    """
    if url == "memory://":
        return MemoryStore()
    if url.startswith("sqlite:///"):
        return SQLiteStore(
            url.removeprefix("sqlite:///"),
            synchronous=synchronous,
            commit_interval_s=commit_interval_s,
            checkpoint_s=checkpoint_s,
        )
    if is_redis_url(url):
        from .redis import RedisStore  # imports redis-py: only when asked for

        return RedisStore(url, spool_dir=spool_dir)
    raise ValueError(f"store must be {STORE_URLS}, got {url!r}")


__all__ = [
    "Assignment",
    "DecisionRecord",
    "ExperimentExistsError",
    "ExperimentRecord",
    "MemoryStore",
    "ModelChange",
    "ModelMovedError",
    "RewardCommit",
    "RewardOutcome",
    "RewardRecord",
    "RewardWork",
    "SQLiteStore",
    "SnapshotRecord",
    "Store",
    "StoreUnavailableError",
    "open_store",
]

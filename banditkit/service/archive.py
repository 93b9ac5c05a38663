"""The archive of the Redis store: old decisions with their rewards, from Redis to Parquet partitions.

Decisions older than the attribution window plus a retention are written to
``DIR/experiment=E/date=YYYY-MM-DD/part-<first stream id>.parquet`` (date of
the decision, UTC) with the columns and types of the log export
(:func:`.export.arrow_schema`), so ``banditkit evaluate DIR`` and
``banditkit.ope`` read the folder as they read an export. Only then does Redis
forget them (pending rows, rewards, open windows, both streams up to what is
archived and learned), so its memory is bounded by the window plus the
retention.

A batch starts after the stored ``archive_offset`` and its files are named
after their first stream id, so a crash between writing and trimming rewrites
the same files (a superset of rows, never a second copy) on the next pass.
Files are written to a hidden temporary name, flushed to disk and renamed.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .export import arrow_schema, arrow_table
from .stores.base import CURRENT_POLICY
from .stores.redis_keys import ARCHIVE_MOVED, Keys, archive_trim_keys

#: Decisions read, written and trimmed per batch.
ARCHIVE_BATCH = 50_000


def archive_experiment(
    client,
    keys: Keys,
    name: str,
    out: Path,
    *,
    cutoff: float,
    trim: Callable[[list[str], list], int],
    keep: Callable[[], None],
    on_rows: Callable[[str, int], None] | None = None,
    batch_size: int = ARCHIVE_BATCH,
) -> int:
    """Archive the decisions of experiment ``name`` logged before ``cutoff`` (seconds since the epoch).

    ``trim(keys, args)`` runs :data:`.stores.redis_keys.ARCHIVE_TRIM` for the caller (who holds the lease);
    ``keep()`` renews that lease between batches; ``on_rows(name, n)`` follows progress. Returns how many
    decisions were archived.
    """
    cutoff_ms = int(cutoff * 1000)
    if cutoff_ms <= 0:
        return 0
    schema = arrow_schema()
    archived = 0
    while True:
        keep()
        offset = client.hget(keys.meta, "archive_offset") or "0-0"
        entries = client.xrange(keys.decisions, min=f"({offset}", max=str(cutoff_ms - 1), count=batch_size)
        if not entries:
            return archived
        ids = [entry_id for entry_id, _ in entries]
        decisions = json.loads("[" + ",".join(fields["row"] for _, fields in entries) + "]")
        decision_ids = [row[0] for row in decisions]
        rewards = _reward_values(client.hmget(keys.rewards, decision_ids))
        rows = [
            (*row[:9], bool(row[9]), reward, row[10] if len(row) > 10 else CURRENT_POLICY)
            for row, reward in zip(decisions, rewards, strict=True)
        ]
        write_batch(out, name, ids, rows, schema)
        if trim(archive_trim_keys(keys), [offset, ids[-1], *decision_ids]) == ARCHIVE_MOVED:
            return archived  # another archiver moved the offset meanwhile: its pass goes on from there
        archived += len(rows)
        if on_rows is not None:
            on_rows(name, len(rows))
        if len(entries) < batch_size:
            return archived


def write_batch(out: Path, name: str, ids: list[str], rows: list[tuple], schema=None) -> list[Path]:
    """Write log rows (in :data:`.export.COLUMNS` order) logged as stream entries ``ids``.

    One file per decision date, named after the date's first entry. Returns the paths written.
    """
    schema = arrow_schema() if schema is None else schema
    days = np.floor(np.array([row[1] for row in rows], dtype=np.float64) / 86_400).astype(np.int64)
    written = []
    for day in np.unique(days):  # a loop over dates, not rows
        chosen = np.flatnonzero(days == day)
        folder = Path(out) / f"experiment={name}" / f"date={np.datetime64(int(day), 'D')}"
        path = folder / f"part-{ids[chosen[0]]}.parquet"
        write_atomically(path, arrow_table([rows[i] for i in chosen], schema))
        written.append(path)
    return written


def write_atomically(path: Path, table) -> None:
    """``table`` as Parquet at ``path``: written to a hidden temporary file, flushed to disk, renamed."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, temporary)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _reward_values(stored: list[str | None]) -> list[float | None]:
    """The reward value of each stored reward row JSON (None where a decision has no reward)."""
    present = [(i, text) for i, text in enumerate(stored) if text is not None]
    values: list[float | None] = [None] * len(stored)
    if present:
        for (i, _), row in zip(present, json.loads("[" + ",".join(text for _, text in present) + "]"), strict=True):
            values[i] = float(row[3])
    return values


def remove_archived(out: Path, name: str) -> int:
    """Delete the Parquet partitions of experiment ``name`` under ``out`` (its purge); how many files went.

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> (out / "experiment=hero" / "date=2026-12-01").mkdir(parents=True)
    >>> (out / "experiment=hero" / "date=2026-12-01" / "part-1-0.parquet").write_bytes(b"")
    0
    >>> remove_archived(out, "hero"), (out / "experiment=hero").exists()
    (1, False)
    """
    folder = Path(out) / f"experiment={name}"
    if not folder.is_dir():
        return 0
    files = sum(1 for path in folder.rglob("*") if path.is_file())
    shutil.rmtree(folder)
    return files

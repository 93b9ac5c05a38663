"""The decision log as a table for offline evaluation (``banditkit evaluate``, ``banditkit.ope``).

One row per decision, columns in this order:

=============== ==========================================================
decision_id     the id the decision was answered with
time            seconds since the Unix epoch (UTC) when it was made
experiment      experiment name
unit            the unit it was made for, or empty
context         the context as a JSON list, or empty
arm             the arm served
propensity      probability with which that arm was chosen, in (0, 1]
probabilities   JSON object arm -> probability of every arm at that time
policy_version  version of the policy that made it
fallback        true when a guardrail served the default arm
reward          the reward received (client or default), or empty
policy          the policy that served it: ``current``, or the id of the experiment's candidate then
                (a policy canary); ``propensity`` and ``probabilities`` are that policy's
=============== ==========================================================

In CSV, a text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'``
so that a spreadsheet shows it rather than running it (see :mod:`banditkit._csv`).
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from pathlib import Path

from .._csv import escape_cell
from .stores import Store
from .stores.base import CURRENT_POLICY

COLUMNS = (
    "decision_id",
    "time",
    "experiment",
    "unit",
    "context",
    "arm",
    "propensity",
    "probabilities",
    "policy_version",
    "fallback",
    "reward",
    "policy",
)


def rows(store: Store, experiment: str, archive: Path | None = None) -> Iterator[tuple]:
    """The log rows of ``experiment`` as tuples in :data:`COLUMNS` order.

    Context and probabilities are the JSON text they were logged as.

    ``archive``: the folder ``banditkit learn --archive`` writes (Redis store); its rows of the experiment come
    first, then those still in the store. A row in both (archived, and not yet trimmed when the archiver
    stopped) is given once.
    """
    live = ((*row[:9], bool(row[9]), row[10], row[11]) for row in store.iter_log(experiment))
    if archive is None:
        yield from live
        return
    kept = list(live)  # the Redis store holds these in memory already (its window)
    start = kept[0][1] if kept else float("inf")
    both = set()
    for row in archived_rows(archive, experiment):
        if row[1] >= start:
            both.add(row[0])
        yield row
    yield from (row for row in kept if row[0] not in both)


def archived_rows(out: Path, name: str) -> Iterator[tuple]:
    """The log rows of experiment ``name`` that the Redis learner archived under ``out``.

    Read from its ``experiment=E/date=D/part-<first stream id>.parquet`` files, in :data:`COLUMNS` order,
    oldest file first.
    """
    import pyarrow.parquet as pq

    for path in sorted(Path(out).glob(f"experiment={name}/date=*/part-*.parquet"), key=_first_entry):
        kept = [column for column in COLUMNS if column in pq.read_schema(path).names]  # "policy" came later
        table = pq.read_table(path, columns=kept)
        values = [
            table.column(column).to_pylist() if column in kept else [CURRENT_POLICY] * table.num_rows
            for column in COLUMNS
        ]
        yield from zip(*values, strict=True)


def _first_entry(path: Path) -> tuple[int, int]:
    """The stream id a part file is named after, as (milliseconds, sequence): the files' time order."""
    milliseconds, sequence = path.stem.removeprefix("part-").split("-")
    return int(milliseconds), int(sequence)


def csv_chunks(store: Store, experiment: str, rows_per_chunk: int = 2000, archive: Path | None = None) -> Iterator[str]:
    """The log as CSV text, in chunks (for streaming); floats keep round-trip precision.

    A text cell a spreadsheet would run as a formula (a client's ``unit`` of ``=1+1``) is prefixed with ``'``
    (:func:`banditkit._csv.escape_cell`), which ``banditkit.ope`` removes when it reads the file; Parquet keeps
    every value as it was logged.
    """
    buffer = io.StringIO()
    # CRLF (RFC 4180): the csv module quotes a cell holding a character of the line terminator, so a unit with
    # a carriage return in it is quoted (with "\n" alone it was written bare and split its row in two).
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for count, row in enumerate(rows(store, experiment, archive), start=1):
        writer.writerow(
            [
                escape_cell(value)
                if isinstance(value, str)
                else ""
                if value is None
                else repr(value)
                if isinstance(value, float)
                else str(value).lower()
                if isinstance(value, bool)
                else value
                for value in row
            ]
        )
        if count % rows_per_chunk == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def arrow_schema():
    """The log's Parquet schema: :data:`COLUMNS` with their pyarrow types.

    Needs pyarrow (``pip install 'banditkit[io]'``). The export and the archive both write it, so their files
    read back alike.
    """
    pa = _pyarrow()
    types = (
        pa.string(),
        pa.float64(),
        pa.string(),
        pa.string(),
        pa.string(),
        pa.string(),
        pa.float64(),
        pa.string(),
        pa.int64(),
        pa.bool_(),
        pa.float64(),
        pa.string(),
    )
    return pa.schema(list(zip(COLUMNS, types, strict=True)))


def arrow_table(rows: list[tuple], schema=None):
    """Log rows (tuples in :data:`COLUMNS` order, as :func:`rows` yields them) as a pyarrow Table."""
    pa = _pyarrow()
    schema = arrow_schema() if schema is None else schema
    columns = list(zip(*rows, strict=True)) or [()] * len(COLUMNS)
    return pa.table(
        [pa.array(values, type=column.type) for values, column in zip(columns, schema, strict=True)], schema=schema
    )


def parquet_bytes(store: Store, experiment: str, rows_per_group: int = 65_536, archive: Path | None = None) -> bytes:
    """The log as a Parquet file (needs pyarrow: ``pip install 'banditkit[io]'``).

    Built one row group at a time, so memory holds the compressed file and one group of rows, not the whole
    log as Python objects.
    """
    import pyarrow.parquet as pq

    schema = arrow_schema()
    sink = io.BytesIO()
    logged = rows(store, experiment, archive)
    with pq.ParquetWriter(sink, schema) as writer:
        while group := list(itertools.islice(logged, rows_per_group)):
            writer.write_table(arrow_table(group, schema))
    return sink.getvalue()


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet  # fails early when the Parquet part is missing
    except ImportError as error:
        raise ImportError("Parquet export needs pyarrow: pip install 'banditkit[io]'") from error
    return pa

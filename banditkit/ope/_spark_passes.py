"""The passes of :mod:`banditkit.ope.spark` over a DataFrame, and the tasks its partitions run.

Each pass runs a task on every partition (``mapInArrow``) that turns the partition's rows into one row
of partial results (a pickled payload; a ``BanditkitError`` travels back the same way and is raised on
the driver, as the local path raises it). The tasks call the streamed path's per-chunk functions, so
the rows' numbers (``Plan.runs``: the first number of each run of consecutive rows) are all that
Spark adds.
"""

from __future__ import annotations

import itertools
import pickle
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from .._typing import FloatArray
from ..errors import BanditkitError, InvalidParameterError
from .logs import LoggedData, load_log
from .per_row import estimator_terms, model_features
from .reward_model import fold_coefficients, predict_folds, ridge_statistics, sample_folds
from .streaming import Sums, target_rows

#: Hidden columns the passes add: the row's file as a 64-bit hash of its path (0 under ``row_id``), the row's
#: index in it, and (read by the first pass only, as a string per row costs more to move than a row's numbers)
#: the file's path.
_GROUP, _KEY, PATH_COLUMN = "__banditkit_group", "__banditkit_row", "__banditkit_path"


@dataclass(frozen=True)
class Run:
    """A run of consecutive log rows from the layout pass: where its rows start in the numbering."""

    kept: int
    offset: int
    position_offsets: tuple[int, ...]


@dataclass(frozen=True)
class Plan:
    """What the layout pass learns, shipped to the workers with the later passes."""

    arm_names: tuple[str, ...]
    named_arms: bool
    position_rows: tuple[int, ...]
    n_rows: int
    runs: dict[tuple[int, int], Run]
    paths: dict[int, str]
    by_row_id: str | None
    drop_unrewarded: bool
    experiment: str | None
    chunk_rows: int

    @property
    def n_positions(self) -> int:
        return max(len(self.position_rows), 1)

    @property
    def positions(self) -> list[int]:
        """Positions with rows, when the log has several (per-position estimates as in memory)."""
        if self.n_positions <= 1:
            return []
        return [p for p, count in enumerate(self.position_rows) if count]


def pyspark_sql() -> Any:
    try:
        import pyspark.sql as pyspark_sql
    except ImportError as error:
        raise BanditkitError("pyspark is needed to evaluate in Spark: pip install 'banditkit[spark]'") from error
    return pyspark_sql


def prepare(log: Any, spark: Any, row_id: str | None) -> Any:
    """The log (a DataFrame, or a path read by the session ``spark``) with the row-numbering columns."""
    pyspark = pyspark_sql()
    functions = pyspark.functions
    if isinstance(log, (str, Path)):
        # recursiveFileLookup: the files' own columns, as pyarrow reads them (no columns from folder names)
        reader = spark.read.option("recursiveFileLookup", "true").option("pathGlobFilter", "*.parquet")
        log = reader.parquet(str(log))
    elif not isinstance(log, pyspark.DataFrame):
        raise InvalidParameterError(
            f"log must be a Spark DataFrame or the path of a Parquet file or folder, got {type(log).__name__}"
        )
    for name in ("arm", "reward", "propensity"):
        if name not in log.columns:
            raise InvalidParameterError(f"log has no {name!r} column; columns are {sorted(log.columns)}")
    if row_id is not None:
        if row_id not in log.columns:
            raise InvalidParameterError(f"row_id {row_id!r} is not a column of the log; columns are {log.columns}")
        kind = log.schema[row_id].dataType
        if not isinstance(kind, pyspark.types.IntegralType):
            raise InvalidParameterError(f"row_id column {row_id!r} must hold integers, got {kind.simpleString()}")
        ordered = log.repartitionByRange(functions.col(row_id)).sortWithinPartitions(row_id)
        return ordered.select(
            "*",
            functions.lit(0).cast("long").alias(_GROUP),
            functions.col(row_id).cast("long").alias(_KEY),
            functions.lit("").alias(PATH_COLUMN),
        )
    try:
        return log.select(
            "*",
            functions.xxhash64(functions.col("_metadata.file_path")).alias(_GROUP),
            functions.col("_metadata.row_index").alias(_KEY),
            functions.col("_metadata.file_path").alias(PATH_COLUMN),
        )
    except pyspark.utils.AnalysisException:
        raise InvalidParameterError(
            "the log DataFrame is not read from Parquet files, so its rows have no file order: pass row_id=COLUMN, "
            "a column of unique integers that orders them"
        ) from None


def _file_order(group: str) -> tuple[int, PurePosixPath | str]:
    """Sort key of a file: the local path's order (``sorted`` of the paths), from Spark's file URI."""
    parsed = urlparse(group)
    return (0, PurePosixPath(unquote(parsed.path))) if parsed.scheme in ("", "file") else (1, group)


def _file_name(group: str) -> str:
    parsed = urlparse(group)
    return unquote(parsed.path) if parsed.scheme in ("", "file") else group


def run_tasks(frame: Any, task: Any) -> list[dict[str, Any]]:
    """``task`` run on every partition (``mapInArrow``): the payloads; one that carries an error raises it here."""
    with warnings.catch_warnings():
        # mapInArrow checks the pandas version as pandas UDFs need it; these tasks take and give Arrow batches only
        warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
        rows = frame.mapInArrow(task, "payload binary").collect()
    parts = [pickle.loads(row["payload"]) for row in rows]
    for part in parts:
        if "error" in part:
            kind, message = part["error"]
            raise kind(message)
    return parts


def _runs(batches: Iterator[Any], chunk_rows: int) -> Iterator[tuple[int, int, int, Any]]:
    """(group, first key, last key, rows) of each run of rows in file order in a partition's batches.

    Batches are gathered into chunks of at least ``chunk_rows`` rows; a run ends where the file changes,
    the row index (or ``row_id``) does not increase, or the chunk ends. A run may skip rows (a DataFrame
    filtered in Spark): the rows are numbered among those present, as the local path numbers a filtered log.
    """
    pa = _arrow()
    buffer: list[Any] = []
    size = 0

    def flush() -> Iterator[tuple[int, int, int, Any]]:
        table = pa.Table.from_batches(buffer)
        if table.column(_KEY).null_count:
            raise InvalidParameterError("row_id must be given on every row, got a missing value")
        groups = table.column(_GROUP).to_numpy()
        keys = table.column(_KEY).to_numpy()
        rows = table.drop_columns([_GROUP, _KEY])
        step = np.diff(keys)
        breaks = (step <= 0) | (np.diff(groups) != 0)
        edges = [0, *(np.flatnonzero(breaks) + 1).tolist(), len(keys)]
        for start, stop in itertools.pairwise(edges):
            yield int(groups[start]), int(keys[start]), int(keys[stop - 1]), rows.slice(start, stop - start)

    for batch in batches:
        if batch.num_rows:
            buffer.append(batch)
            size += batch.num_rows
        if size >= chunk_rows:
            yield from flush()
            buffer, size = [], 0
    if buffer:
        yield from flush()


def _arrow() -> Any:
    import pyarrow

    return pyarrow


def _arrow_compute() -> Any:
    import pyarrow.compute

    return pyarrow.compute


def _payload(value: dict[str, Any]) -> Any:
    return _arrow().RecordBatch.from_pydict({"payload": [pickle.dumps(value, protocol=5)]})


def _failure(error: BanditkitError) -> Any:
    return _payload({"error": (type(error), str(error))})


def layout(frame: Any, row_id: str | None, drop_unrewarded: bool, experiment: str | None, chunk_rows: int) -> Plan:
    """The first pass: arm vocabulary, positions, and the runs of rows with their first row numbers."""
    pyspark = pyspark_sql()
    named = not isinstance(frame.schema["arm"].dataType, pyspark.types.IntegralType)
    if named and "probabilities" in frame.columns:
        raise InvalidParameterError(
            "a log in Spark with arm names and a 'probabilities' column cannot take the arm order from that "
            "column; evaluate it in memory or log integer arms"
        )
    wanted = [c for c in ("arm", "position", "experiment", "reward") if c in frame.columns] + [
        _GROUP,
        _KEY,
        PATH_COLUMN,
    ]
    by_row_id = row_id is not None

    def task(batches: Iterator[Any]) -> Iterator[Any]:
        try:
            yield _payload(layout_sums(batches))
        except BanditkitError as error:
            yield _failure(error)

    def layout_sums(batches: Iterator[Any]) -> dict[str, Any]:
        compute = _arrow_compute()
        pa = _arrow()
        labels: set[str] = set()
        largest = -1
        experiments: set[str] = set()
        segments = []
        for group, first, last, rows in _runs(batches, chunk_rows):
            keep = np.ones(rows.num_rows, dtype=bool)
            if drop_unrewarded:
                reward = rows.column("reward").cast(pa.float64())
                valid = compute.and_(compute.is_valid(reward), compute.invert(compute.is_nan(reward)))
                keep &= valid.to_numpy(zero_copy_only=False)
            if "experiment" in rows.column_names:
                values = np.asarray([str(v) for v in rows.column("experiment").to_pylist()], dtype=object)
                experiments.update(values[keep].tolist())
                if experiment is not None:
                    keep &= values == experiment
            arms = rows.column("arm").filter(pa.array(keep))
            if named:
                labels.update(str(v) for v in compute.unique(arms).to_pylist() if v is not None)
            elif len(arms):
                largest = max(largest, int(compute.max(arms).as_py() or 0))
            counts = np.zeros(0, dtype=np.int64)
            if "position" in rows.column_names and keep.any():
                values = rows.column("position").filter(pa.array(keep)).to_numpy()
                if values.dtype.kind in "iu" and values.min() >= 0:  # else the sums pass names the row
                    counts = np.bincount(values)
            segments.append((group, first, last, int(keep.sum()), counts, rows.column(PATH_COLUMN)[0].as_py()))
        return dict(labels=labels, largest=largest, experiments=experiments, segments=segments)

    parts = run_tasks(frame.select(*wanted), task)
    experiments = set().union(*(part["experiments"] for part in parts))
    if experiment is None and len(experiments) > 1:
        raise InvalidParameterError(f"log holds several experiments {sorted(experiments)}; pass experiment=NAME")
    if experiment is not None and experiment not in experiments:
        raise InvalidParameterError(f"experiment {experiment!r} is not in the log; it holds {sorted(experiments)}")
    paths: dict[int, str] = {}
    for part in parts:
        for group, *_, path in part["segments"]:
            if paths.setdefault(group, path) != path:  # two paths, one 64-bit hash: never seen, but not silent
                raise BanditkitError(f"files {paths[group]!r} and {path!r} hash alike; rename one to evaluate them")
    segments = sorted(
        (segment for part in parts for segment in part["segments"]), key=lambda s: (_file_order(paths[s[0]]), s[1])
    )
    width = max((len(s[4]) for s in segments), default=0)
    position_rows = np.zeros(width, dtype=np.int64)
    runs: dict[tuple[int, int], Run] = {}
    offset = 0
    for index, (group, first, _, kept, counts, path) in enumerate(segments):
        if index and segments[index - 1][0] == group and first <= segments[index - 1][2]:
            what = (
                f"values of {row_id!r} repeat"
                if by_row_id
                else f"the rows of file {_file_name(path)!r} are out of file order (a shuffle such as repartition "
                "mixed them: evaluate the DataFrame as read, or pass row_id)"
            )
            raise InvalidParameterError(f"the log's rows cannot be numbered: {what} (row {first})")
        runs[(group, first)] = Run(kept, offset, tuple(int(c) for c in position_rows))
        offset += kept
        position_rows[: len(counts)] += counts
    if offset == 0:
        raise InvalidParameterError("log has no rows to evaluate")
    labels = set().union(*(part["labels"] for part in parts))
    largest = max((part["largest"] for part in parts), default=-1)
    names = tuple(sorted(labels)) if named else tuple(str(i) for i in range(largest + 1))
    position_counts = tuple(int(c) for c in position_rows)
    return Plan(names, named, position_counts, offset, runs, paths, row_id, drop_unrewarded, experiment, chunk_rows)


def _chunks(plan: Plan, batches: Iterator[Any]) -> Iterator[tuple[str, Run, LoggedData]]:
    """Each run of a partition as a validated chunk with its place in the numbering; errors name the file."""
    for group, first, last, rows in _runs(batches, plan.chunk_rows):
        whole = last - first + 1 == rows.num_rows  # no row skipped: errors name the file's own rows
        if plan.by_row_id:
            where = f"rows with {plan.by_row_id} {first}..{last} (numbered from 0)"
        elif whole:
            where = f"log file {_file_name(plan.paths[group])!r}"
        else:
            where = f"log file {_file_name(plan.paths[group])!r}, rows {first}..{last} as filtered (numbered from 0)"
        run = plan.runs.get((group, first))
        if run is None:
            raise BanditkitError(
                f"{where}: Spark split the log differently between two passes over it; persist (cache) the "
                "DataFrame before evaluating it"
            )
        if run.kept == 0:
            continue
        try:
            chunk = load_log(
                rows,
                arms=plan.arm_names if plan.named_arms else None,
                drop_unrewarded=plan.drop_unrewarded,
                experiment=plan.experiment,
                first_row=first if whole and not plan.by_row_id else 0,
            )
        except BanditkitError as error:
            raise type(error)(f"{where}: {error}") from None
        if chunk.n_rows != run.kept:
            raise BanditkitError(f"{where}: {chunk.n_rows} rows to evaluate, but {run.kept} in the first pass")
        yield where, run, replace(chunk, arm_names=plan.arm_names)


def ridge(
    frame: Any, plan: Plan, target: Any, l2: float, n_folds: int, fold_key: int, sample_rows: int
) -> tuple[FloatArray, FloatArray]:
    """Per-fold ridge coefficients from per-(fold, arm) statistics summed over the partitions.

    Fitted on the log's first ``sample_rows`` rows (the rows after them add nothing), with one more
    group, fitted on the whole sample, for the rows after it when the sample is not the whole log.
    """
    n_groups = n_folds + (sample_rows < plan.n_rows)

    def task(batches: Iterator[Any]) -> Iterator[Any]:
        gram = moments = None
        try:
            for where, run, chunk in _chunks(plan, batches):
                rows = target_rows(target, chunk, where)
                n = max(0, min(chunk.n_rows, sample_rows - run.offset))
                folds = sample_folds(fold_key, run.offset, n, n_folds, sample_rows)
                features = model_features(chunk, plan.n_positions)[:n]
                chunk_gram, chunk_moments = ridge_statistics(
                    features, rows.arms[:n], chunk.rewards[:n], folds, rows.probabilities.shape[1], n_groups
                )
                gram = chunk_gram if gram is None else gram + chunk_gram
                moments = chunk_moments if moments is None else moments + chunk_moments
        except BanditkitError as error:
            yield _failure(error)
            return
        if gram is not None:
            yield _payload(dict(gram=gram, moments=moments))

    parts = run_tasks(frame, task)
    gram = sum(part["gram"] for part in parts)
    moments = sum(part["moments"] for part in parts)
    return fold_coefficients(np.asarray(gram), np.asarray(moments), l2)


def sums_task(
    plan: Plan,
    target: Any,
    names: list[str],
    coefficients: tuple[FloatArray, FloatArray] | None,
    keys: list[int],
    n_bootstrap: int,
    options: dict[str, Any],
) -> Any:
    """The last pass's task: each partition's estimator totals and bootstrap sums, whole log and per position."""

    def task(batches: Iterator[Any]) -> Iterator[Any]:
        summed = Sums.zero(len(names), n_bootstrap, plan.positions)
        unused = np.random.default_rng(0)  # replay's draws, the only estimator that takes it, are refused
        seen = False
        try:
            for where, run, chunk in _chunks(plan, batches):
                rows = target_rows(target, chunk, where)
                predictions = None
                if coefficients is not None:
                    folds = sample_folds(
                        options["fold_key"], run.offset, chunk.n_rows, options["n_folds"], options["model_rows"]
                    )
                    predictions = predict_folds(coefficients, model_features(chunk, plan.n_positions), folds)
                terms = [
                    estimator_terms(
                        name,
                        chunk,
                        rows.probabilities,
                        rows.arms,
                        predictions,
                        unused,
                        options["clip_weight"],
                        options["switch_weight"],
                    )
                    for name in names
                ]
                offsets = {p: run.position_offsets[p] if p < len(run.position_offsets) else 0 for p in plan.positions}
                summed.add(terms, chunk.positions, keys, run.offset, offsets)
                seen = True
        except BanditkitError as error:
            yield _failure(error)
            return
        if seen:
            yield _payload(dict(sums=summed))

    return task

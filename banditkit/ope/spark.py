"""Offline evaluation of a Spark DataFrame: the streamed estimates, summed where the rows are.

``banditkit.ope.spark.evaluate(frame_or_path, target, estimators)`` gives the report
:func:`banditkit.ope.evaluate` gives on the same rows (values, bootstrap and normal intervals,
diagnostics, per-position rows; equal to float rounding). Every estimate is a ratio of sums over
rows, so nothing is collected: each Spark partition runs the streamed path's own per-chunk code
(:mod:`banditkit.ope.streaming`: validation, the target's probabilities, the estimators' terms,
the ridge statistics, the keyed Poisson-bootstrap sums) in ``mapInArrow`` and returns its partial
sums as one row; the driver adds the rows and finishes the estimates. The target (an array, a
policy, a ``Bandit``) travels to the workers with the task and is asked there, by the same
functions as on one machine.

Row numbers. The bootstrap counts and the cross-fitting folds are hashes of the row's number in
the log, so Spark must number the rows as the local path does. A log read from Parquet (a path, or
a DataFrame from ``spark.read.parquet``) numbers its rows by file, in the local path's file order,
then by the row's index in its file (Spark's ``_metadata.row_index``), counting only the rows
evaluated (after ``drop_unrewarded`` and ``experiment``): the local path's order exactly. Any
other DataFrame names a ``row_id`` column of unique integers: its rows are numbered in that
column's order, as the local path numbers the same rows sorted by it.

Passes over the data, as in the streamed path: one that reads the ``arm``, ``position``,
``experiment`` and ``reward`` columns (the arm vocabulary, the rows evaluated per contiguous run of
rows, from which the driver gives each run its first row number), one for the ridge model's
sufficient statistics when DM or DR is asked for, and the one that sums the estimators. pyspark is
the ``banditkit[spark]`` extra, imported only here and only when called.
"""

from __future__ import annotations

import itertools
import os
import pickle
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from .._typing import FloatArray, RngLike
from .._validation import check_int, check_real
from ..errors import BanditkitError, InvalidParameterError
from . import estimators as est
from .bootstrap import draw_key
from .logs import LoggedData, load_log
from .per_row import MODEL_BASED, estimator_terms, model_features
from .report import Report
from .reward_model import RidgeRewardModel, fold_coefficients, predict_folds, ridge_statistics, row_folds
from .streaming import DEFAULT_CHUNK_ROWS, _add, _estimates
from .targets import resolve_target

#: Hidden columns the passes add: the row's file as a 64-bit hash of its path (0 under ``row_id``), the row's
#: index in it, and (read by the first pass only, as a string per row costs more to move than a row's numbers)
#: the file's path.
_GROUP, _KEY, _PATH = "__banditkit_group", "__banditkit_row", "__banditkit_path"
#: Master of the session made when none is given or active.
DEFAULT_MASTER = "local[*]"


@dataclass(frozen=True)
class _Run:
    """A run of consecutive log rows from the layout pass: where its rows start in the numbering."""

    kept: int
    offset: int
    position_offsets: tuple[int, ...]


@dataclass(frozen=True)
class _Plan:
    """What the layout pass learns, shipped to the workers with the later passes."""

    arm_names: tuple[str, ...]
    named_arms: bool
    position_rows: tuple[int, ...]
    n_rows: int
    runs: dict[tuple[int, int], _Run]
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


def session(master: str = DEFAULT_MASTER, **conf: str) -> Any:
    """A SparkSession (``getOrCreate``) on ``master``: no UI or progress bar, Python workers on this interpreter.

    Parameters
    ----------
    master : str
        ``spark.master``: ``local[2]``, ``local[*]``, ``spark://host:7077``, ``yarn``...
    **conf : str
        Further Spark settings, ``spark.`` names with ``_`` for ``.`` (``sql_shuffle_partitions="4"``).

    Examples
    --------
    >>> spark = session("local[1]", sql_shuffle_partitions="2")
    >>> spark.range(3).count(), spark.conf.get("spark.ui.enabled")
    (3, 'false')
    >>> spark.stop()
    """
    pyspark_sql = _pyspark()
    # Local workers run this interpreter and import this banditkit (a source checkout too); the environment
    # is read when the JVM starts. On a cluster, banditkit is installed on the executors.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    root = Path(__file__).resolve().parents[2]
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root.name not in ("site-packages", "dist-packages") and str(root) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(root), *paths])
    builder = pyspark_sql.SparkSession.builder.master(master).appName("banditkit")
    builder = builder.config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
    for name, value in conf.items():
        builder = builder.config("spark." + name.replace("_", "."), value)
    with warnings.catch_warnings():  # pyspark's pandas check: the evaluation moves Arrow batches, never pandas
        warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
        return builder.getOrCreate()


def evaluate(
    log: Any,
    target: Any,
    estimators: str | Sequence[str] | None = None,
    *,
    spark: Any = None,
    row_id: str | None = None,
    reward_model: RidgeRewardModel | None = None,
    n_folds: int = 5,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    clip_weight: float = 100.0,
    switch_weight: float = 20.0,
    rng: RngLike = 0,
    drop_unrewarded: bool = False,
    experiment: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Report:
    """Estimate the value of ``target`` from a log in Spark: :func:`banditkit.ope.evaluate`'s report.

    Parameters
    ----------
    log : a Spark DataFrame, or the path (or URI) of a Parquet file or folder that Spark reads
    target : Bandit, policy, deterministic-actions callable, or one distribution for every row, (1, K)
        or (1, K, L) per position: what a streamed log takes (see :mod:`banditkit.ope.streaming`)
    estimators : names from ``banditkit.ope.ESTIMATORS`` but replay; default all of them
    spark : SparkSession or a master URL (``local[2]``), for a path; default the active session, else
        ``session(DEFAULT_MASTER)``
    row_id : for a DataFrame not read from files: a column of unique integers that numbers the rows
    reward_model : RidgeRewardModel for DM/DR (default ``RidgeRewardModel()``)
    n_folds, n_bootstrap, confidence : cross-fitting folds, bootstrap resamples, interval level
    clip_weight, switch_weight : weight cap of clipped_ips and switch threshold of switch_dr
    rng : seed or numpy.random.Generator for the folds and the bootstrap (the same draws as locally)
    drop_unrewarded : drop rows whose reward is missing instead of failing
    experiment : keep the rows of this experiment when the log holds several
    chunk_rows : rows a worker validates and sums at a time (its memory follows it)

    Examples
    --------
    >>> import tempfile
    >>> import pyarrow as pa, pyarrow.parquet as pq
    >>> path = tempfile.mkdtemp() + "/log.parquet"
    >>> pq.write_table(pa.table({"arm": [0, 1, 0, 1], "reward": [1.0, 0.0, 1.0, 1.0], "propensity": [0.5] * 4}), path)
    >>> report = evaluate(path, np.array([[1.0, 0.0]]), ["ips", "snips"], spark="local[1]", n_bootstrap=0)
    >>> report["ips"].value, report["snips"].value, report.source
    (1.0, 1.0, 'spark: 4 rows from 1 Parquet file in 1 partition of a Spark DataFrame')
    """
    from .evaluation import ESTIMATORS, _warnings

    generator = est.as_rng(rng)
    n_bootstrap = check_int("n_bootstrap", n_bootstrap, low=0)
    confidence = check_real("confidence", confidence, low=0.0, high=1.0, low_open=True, high_open=True)
    chunk_rows = check_int("chunk_rows", chunk_rows, low=1)
    if isinstance(target, Mapping):
        raise InvalidParameterError("spark.evaluate evaluates one target at a time; pass each candidate in turn")
    if isinstance(target, np.ndarray) and target.ndim >= 2 and target.shape[0] > 1:
        raise InvalidParameterError(
            f"target probabilities must have 1 row (one distribution for every row) in Spark, got shape "
            f"{target.shape}: a per-row array would have to travel to every worker"
        )
    if estimators is None:
        names = [name for name in ESTIMATORS if name != "replay"]
    else:
        names = list(dict.fromkeys([estimators] if isinstance(estimators, str) else estimators))
        unknown = [name for name in names if name not in ESTIMATORS]
        if unknown:
            raise InvalidParameterError(f"estimator must be one of {list(ESTIMATORS)}, got {unknown[0]!r}")
    if "replay" in names:
        raise InvalidParameterError("replay needs the whole log in memory for its draws; in Spark use ips or snips")
    if reward_model is not None and not isinstance(reward_model, RidgeRewardModel):
        raise InvalidParameterError(
            "Spark fits DM/DR's reward model as a ridge regression per arm from summed sufficient statistics; "
            f"reward_model must be a RidgeRewardModel, got {type(reward_model).__name__}"
        )
    frame = _frame(log, spark, row_id)
    plan = _layout(frame, row_id, drop_unrewarded, experiment, chunk_rows)
    frame = frame.drop(_PATH)  # the plan holds the paths; the later passes move numbers only
    coefficients, fold_key, note = None, 0, None
    if MODEL_BASED & set(names):
        model = reward_model or RidgeRewardModel()
        n_folds = min(check_int("n_folds", n_folds, low=2), plan.n_rows)
        if n_folds < 2:
            raise InvalidParameterError(f"cross-fitting needs at least 2 logged rows, got {plan.n_rows}")
        fold_key = draw_key(generator)
        coefficients = _ridge(frame, plan, target, model.l2, n_folds, fold_key)
        note = (
            f"ridge per arm (l2={model.l2:g}), {n_folds}-fold cross-fitted from sufficient statistics summed "
            f"in Spark over all {plan.n_rows:,} rows (exact, as in memory)"
        )
    keys = [draw_key(generator) if n_bootstrap else 0 for _ in range(1 + len(plan.positions))]
    options = dict(clip_weight=clip_weight, switch_weight=switch_weight, n_folds=n_folds, fold_key=fold_key)
    parts = _map(frame, _sums_task(plan, target, names, coefficients, keys, n_bootstrap, options))
    totals: list[est.TermTotals | None] = [None] * len(names)
    sums = np.zeros((n_bootstrap, 2 * len(names)))
    position_totals: dict[int, list[est.TermTotals | None]] = {p: [None] * len(names) for p in plan.positions}
    position_sums = {p: np.zeros((n_bootstrap, 2 * len(names))) for p in plan.positions}
    for part in parts:
        totals = _plus(totals, part["totals"])
        sums += part["sums"]
        for p in plan.positions:
            position_totals[p] = _plus(position_totals[p], part["position_totals"][p])
            position_sums[p] += part["position_sums"][p]
    estimates = _estimates(totals, sums if n_bootstrap else None, confidence)
    by_position = {
        p: _estimates(position_totals[p], position_sums[p] if n_bootstrap else None, confidence) for p in plan.positions
    }
    if plan.by_row_id:
        read = f"ordered by {plan.by_row_id!r}"
    else:
        read = f"from {len(plan.paths)} Parquet file{'s' if len(plan.paths) != 1 else ''}"
    partitions = f"{len(parts)} partition{'s' if len(parts) != 1 else ''}"
    source = f"spark: {plan.n_rows:,} rows {read} in {partitions} of a Spark DataFrame"
    return Report(estimates, by_position, tuple(_warnings(estimates, plan.n_rows)), source, note)


def _pyspark() -> Any:
    try:
        import pyspark.sql as pyspark_sql
    except ImportError as error:
        raise BanditkitError("pyspark is needed to evaluate in Spark: pip install 'banditkit[spark]'") from error
    return pyspark_sql


def _frame(log: Any, spark: Any, row_id: str | None) -> Any:
    """The log as a DataFrame with the hidden row-numbering columns ``_GROUP``, ``_KEY`` and ``_PATH``."""
    pyspark_sql = _pyspark()
    functions = pyspark_sql.functions
    if isinstance(log, (str, Path)):
        text = str(log)
        if "://" not in text and not Path(text).exists():
            raise InvalidParameterError(f"log file {text!r} does not exist")
        if isinstance(spark, str) or spark is None:
            active = pyspark_sql.SparkSession.getActiveSession() if spark is None else None
            spark = active or session(spark or DEFAULT_MASTER)
        # recursiveFileLookup: the files' own columns, as pyarrow reads them (no columns from folder names)
        reader = spark.read.option("recursiveFileLookup", "true").option("pathGlobFilter", "*.parquet")
        log = reader.parquet(text)
    elif not isinstance(log, pyspark_sql.DataFrame):
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
        if not isinstance(kind, pyspark_sql.types.IntegralType):
            raise InvalidParameterError(f"row_id column {row_id!r} must hold integers, got {kind.simpleString()}")
        ordered = log.repartitionByRange(functions.col(row_id)).sortWithinPartitions(row_id)
        return ordered.select(
            "*",
            functions.lit(0).cast("long").alias(_GROUP),
            functions.col(row_id).cast("long").alias(_KEY),
            functions.lit("").alias(_PATH),
        )
    try:
        return log.select(
            "*",
            functions.xxhash64(functions.col("_metadata.file_path")).alias(_GROUP),
            functions.col("_metadata.row_index").alias(_KEY),
            functions.col("_metadata.file_path").alias(_PATH),
        )
    except pyspark_sql.utils.AnalysisException:
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


def _map(frame: Any, task: Any) -> list[dict[str, Any]]:
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


def _plus(totals: list[est.TermTotals | None], more: list[est.TermTotals | None]) -> list[est.TermTotals | None]:
    return [b if a is None else (a if b is None else a + b) for a, b in zip(totals, more, strict=True)]


def _runs(batches: Iterator[Any], chunk_rows: int, by_row_id: bool) -> Iterator[tuple[int, int, int, Any]]:
    """(group, first key, last key, rows) of each run of consecutive log rows in a partition's batches.

    Batches are gathered into chunks of at least ``chunk_rows`` rows; a run ends where the file changes,
    the row index does not step by one (or, under ``row_id``, does not increase) or the chunk ends.
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
        breaks = ((step <= 0) if by_row_id else (step != 1)) | (np.diff(groups) != 0)
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


def _layout(frame: Any, row_id: str | None, drop_unrewarded: bool, experiment: str | None, chunk_rows: int) -> _Plan:
    """The first pass: arm vocabulary, positions, and the runs of rows with their first row numbers."""
    pyspark_sql = _pyspark()
    named = not isinstance(frame.schema["arm"].dataType, pyspark_sql.types.IntegralType)
    if named and "probabilities" in frame.columns:
        raise InvalidParameterError(
            "a log in Spark with arm names and a 'probabilities' column cannot take the arm order from that "
            "column; evaluate it in memory or log integer arms"
        )
    wanted = [c for c in ("arm", "position", "experiment", "reward") if c in frame.columns] + [_GROUP, _KEY, _PATH]
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
        for group, first, last, rows in _runs(batches, chunk_rows, by_row_id):
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
            segments.append((group, first, last, int(keep.sum()), counts, rows.column(_PATH)[0].as_py()))
        return dict(labels=labels, largest=largest, experiments=experiments, segments=segments)

    parts = _map(frame.select(*wanted), task)
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
    runs: dict[tuple[int, int], _Run] = {}
    offset = 0
    for index, (group, first, _, kept, counts, path) in enumerate(segments):
        if index and segments[index - 1][0] == group and first <= segments[index - 1][2]:
            what = f"values of {row_id!r} repeat" if by_row_id else f"rows of file {_file_name(path)!r} repeat"
            raise InvalidParameterError(f"the log's rows cannot be numbered: {what} (row {first})")
        runs[(group, first)] = _Run(kept, offset, tuple(int(c) for c in position_rows))
        offset += kept
        position_rows[: len(counts)] += counts
    if offset == 0:
        raise InvalidParameterError("log has no rows to evaluate")
    labels = set().union(*(part["labels"] for part in parts))
    largest = max((part["largest"] for part in parts), default=-1)
    names = tuple(sorted(labels)) if named else tuple(str(i) for i in range(largest + 1))
    position_counts = tuple(int(c) for c in position_rows)
    return _Plan(names, named, position_counts, offset, runs, paths, row_id, drop_unrewarded, experiment, chunk_rows)


def _chunks(plan: _Plan, batches: Iterator[Any]) -> Iterator[tuple[str, _Run, LoggedData]]:
    """Each run of a partition as a validated chunk with its place in the numbering; errors name the file."""
    for group, first, last, rows in _runs(batches, plan.chunk_rows, plan.by_row_id is not None):
        if plan.by_row_id:
            where = f"rows with {plan.by_row_id} {first}..{last}"
        else:
            where = f"log file {_file_name(plan.paths[group])!r}"
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
                first_row=0 if plan.by_row_id else first,
            )
        except BanditkitError as error:
            raise type(error)(f"{where}: {error}") from None
        if chunk.n_rows != run.kept:
            raise BanditkitError(f"{where}: {chunk.n_rows} rows to evaluate, but {run.kept} in the first pass")
        yield where, run, replace(chunk, arm_names=plan.arm_names)


def _target_rows(target: Any, chunk: LoggedData, where: str) -> Any:
    try:
        return resolve_target(target, chunk)
    except BanditkitError as error:
        raise type(error)(f"{where}: {error}") from None


def _ridge(
    frame: Any, plan: _Plan, target: Any, l2: float, n_folds: int, fold_key: int
) -> tuple[FloatArray, FloatArray]:
    """Per-fold ridge coefficients from per-(fold, arm) statistics summed over the partitions."""

    def task(batches: Iterator[Any]) -> Iterator[Any]:
        gram = moments = None
        try:
            for where, run, chunk in _chunks(plan, batches):
                rows = _target_rows(target, chunk, where)
                folds = row_folds(fold_key, run.offset, chunk.n_rows, n_folds)
                features = model_features(chunk, plan.n_positions)
                chunk_gram, chunk_moments = ridge_statistics(
                    features, rows.arms, chunk.rewards, folds, rows.probabilities.shape[1], n_folds
                )
                gram = chunk_gram if gram is None else gram + chunk_gram
                moments = chunk_moments if moments is None else moments + chunk_moments
        except BanditkitError as error:
            yield _failure(error)
            return
        if gram is not None:
            yield _payload(dict(gram=gram, moments=moments))

    parts = _map(frame, task)
    gram = sum(part["gram"] for part in parts)
    moments = sum(part["moments"] for part in parts)
    return fold_coefficients(np.asarray(gram), np.asarray(moments), l2)


def _sums_task(
    plan: _Plan,
    target: Any,
    names: list[str],
    coefficients: tuple[FloatArray, FloatArray] | None,
    keys: list[int],
    n_bootstrap: int,
    options: dict[str, Any],
) -> Any:
    """The last pass's task: each partition's estimator totals and bootstrap sums, whole log and per position."""

    def task(batches: Iterator[Any]) -> Iterator[Any]:
        totals: list[est.TermTotals | None] = [None] * len(names)
        sums = np.zeros((n_bootstrap, 2 * len(names)))
        position_totals: dict[int, list[est.TermTotals | None]] = {p: [None] * len(names) for p in plan.positions}
        position_sums = {p: np.zeros((n_bootstrap, 2 * len(names))) for p in plan.positions}
        unused = np.random.default_rng(0)  # replay's draws, the only estimator that takes it, are refused
        seen = False
        try:
            for where, run, chunk in _chunks(plan, batches):
                rows = _target_rows(target, chunk, where)
                predictions = None
                if coefficients is not None:
                    folds = row_folds(options["fold_key"], run.offset, chunk.n_rows, options["n_folds"])
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
                _add(totals, sums, terms, keys[0], run.offset)
                for index, position in enumerate(plan.positions):
                    mask: np.ndarray = np.asarray(chunk.positions) == position
                    if mask.any():
                        subset = [t.subset(mask) for t in terms]
                        offset = run.position_offsets[position] if position < len(run.position_offsets) else 0
                        _add(position_totals[position], position_sums[position], subset, keys[1 + index], offset)
                seen = True
        except BanditkitError as error:
            yield _failure(error)
            return
        if seen:
            yield _payload(dict(totals=totals, sums=sums, position_totals=position_totals, position_sums=position_sums))

    return task


__all__ = ["evaluate", "session"]

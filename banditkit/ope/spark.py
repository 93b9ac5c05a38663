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
evaluated (after ``drop_unrewarded``, ``experiment`` and any filter applied in Spark): the local
path's order exactly. Any other DataFrame (or one whose rows a shuffle has mixed) names a ``row_id``
column of unique integers: its rows are numbered in that column's order, as the local path numbers
the same rows sorted by it. The passes are in :mod:`banditkit.ope._spark_passes`.

Passes over the data, as in the streamed path: one that reads the ``arm``, ``position``,
``experiment`` and ``reward`` columns (the arm vocabulary, the rows evaluated per contiguous run of
rows, from which the driver gives each run its first row number), one for the ridge model's
sufficient statistics when DM or DR is asked for, and the one that sums the estimators. pyspark is
the ``banditkit[spark]`` extra, imported only here and only when called.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._typing import RngLike
from .._validation import check_int, check_real
from ..errors import InvalidParameterError
from . import _spark_passes as passes
from . import estimators as est
from .bootstrap import draw_key
from .per_row import MODEL_BASED
from .report import Report
from .reward_model import RidgeRewardModel, fold_count, sample_note
from .streaming import DEFAULT_CHUNK_ROWS, Sums

#: Master of the session made when none is given or active.
DEFAULT_MASTER = "local[*]"


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
    pyspark_sql = passes.pyspark_sql()
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
    model_rows: int | None = None,
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
    model_rows : fit DM/DR's ridge on the log's first ``model_rows`` rows only, as
        :func:`banditkit.ope.evaluate` does (the same numbers); default all rows

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
    from .evaluation import _streamed_names, _warnings

    generator = est.as_rng(rng)
    n_bootstrap = check_int("n_bootstrap", n_bootstrap, low=0)
    confidence = check_real("confidence", confidence, low=0.0, high=1.0, low_open=True, high_open=True)
    chunk_rows = check_int("chunk_rows", chunk_rows, low=1)
    if model_rows is not None:
        model_rows = check_int("model_rows", model_rows, low=2)
    if isinstance(target, Mapping):
        raise InvalidParameterError("spark.evaluate evaluates one target at a time; pass each candidate in turn")
    if isinstance(target, np.ndarray) and target.ndim >= 2 and target.shape[0] > 1:
        raise InvalidParameterError(
            f"target probabilities must have 1 row (one distribution for every row) in Spark, got shape "
            f"{target.shape}: a per-row array would have to travel to every worker"
        )
    names = _streamed_names(estimators, "in Spark")
    if reward_model is not None and not isinstance(reward_model, RidgeRewardModel):
        raise InvalidParameterError(
            "Spark fits DM/DR's reward model as a ridge regression per arm from summed sufficient statistics; "
            f"reward_model must be a RidgeRewardModel, got {type(reward_model).__name__}"
        )
    if isinstance(log, (str, Path)):
        if "://" not in str(log) and not Path(log).exists():
            raise InvalidParameterError(f"log file {str(log)!r} does not exist")
        if spark is None or isinstance(spark, str):
            active = passes.pyspark_sql().SparkSession.getActiveSession() if spark is None else None
            spark = active or session(spark or DEFAULT_MASTER)
    frame = passes.prepare(log, spark, row_id)
    plan = passes.layout(frame, row_id, drop_unrewarded, experiment, chunk_rows)
    frame = frame.drop(passes.PATH_COLUMN)  # the plan holds the paths; the later passes move numbers only
    coefficients, fold_key, note = None, 0, None
    sample_rows = plan.n_rows if model_rows is None else min(model_rows, plan.n_rows)
    if MODEL_BASED & set(names):
        model = reward_model or RidgeRewardModel()
        n_folds = fold_count(n_folds, sample_rows, plan.n_rows)
        fold_key = draw_key(generator)
        coefficients = passes.ridge(frame, plan, target, model.l2, n_folds, fold_key, sample_rows)
        note = (
            f"ridge per arm (l2={model.l2:g}), {n_folds}-fold cross-fitted from sufficient statistics summed "
            f"in Spark over {sample_note(sample_rows, plan.n_rows)} (exact, as in memory)"
        )
    keys = [draw_key(generator) if n_bootstrap else 0 for _ in range(1 + len(plan.positions))]
    options = dict(
        clip_weight=clip_weight, switch_weight=switch_weight, n_folds=n_folds, fold_key=fold_key, model_rows=sample_rows
    )
    parts = passes.run_tasks(frame, passes.sums_task(plan, target, names, coefficients, keys, n_bootstrap, options))
    summed = Sums.zero(len(names), n_bootstrap, plan.positions)
    for part in parts:
        summed += part["sums"]
    estimates, by_position = summed.estimates(confidence)
    if plan.by_row_id:
        read = f"ordered by {plan.by_row_id!r}"
    else:
        read = f"from {len(plan.paths)} Parquet file{'s' if len(plan.paths) != 1 else ''}"
    partitions = f"{len(parts)} partition{'s' if len(parts) != 1 else ''}"
    source = f"spark: {plan.n_rows:,} rows {read} in {partitions} of a Spark DataFrame"
    return Report(estimates, by_position, tuple(_warnings(estimates, plan.n_rows)), source, note)


__all__ = ["evaluate", "session"]

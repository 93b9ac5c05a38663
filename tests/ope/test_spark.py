"""Evaluation in Spark (local[2], a real JVM): the in-memory report, from partial sums computed where the rows are.

pyspark is a test dependency (``banditkit[spark]`` in ``make test``); these tests fail, never skip, when it or
Java is missing. One SparkSession serves the module: files are cut into row groups of 250 rows and Spark's
splits kept small, so a file spreads over several partitions and a partition holds several files.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyspark
import pytest
from pyspark.sql import functions
from typer.testing import CliRunner

import banditkit as bk
from banditkit.cli import app
from banditkit.errors import InvalidParameterError, UnknownArmError
from banditkit.ope import spark as bk_spark

from .test_streaming import CASES, N_ARMS, assert_same, log_columns

ROW_GROUP = 250


@pytest.fixture(scope="module")
def spark():
    session = bk_spark.session(
        "local[2]",
        sql_shuffle_partitions="2",
        sql_files_maxPartitionBytes="16k",  # several splits per file: files here are 25-70 kB
        sql_files_openCostInBytes="4k",
        default_parallelism="2",
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def write_files(folder: Path, columns: dict[str, np.ndarray], bounds: list[int]) -> Path:
    """``date=D/part-0.parquet`` per slice of rows between ``bounds``, in row groups of ``ROW_GROUP`` rows."""
    edges = [0, *bounds, len(columns["arm"])]
    for index, (start, stop) in enumerate(itertools.pairwise(edges)):
        partition = folder / f"date=2026-01-{index + 1:02d}"
        partition.mkdir(parents=True)
        table = pa.table({k: v[start:stop] for k, v in columns.items()})
        pq.write_table(table, partition / "part-0.parquet", row_group_size=ROW_GROUP)
    return folder


def target_for(positions: int) -> np.ndarray:
    target = np.full((1, N_ARMS, positions), 1.0 / N_ARMS)
    target[0, :, 0] = [0.2, 0.2, 0.6]
    return target[:, :, 0] if positions == 1 else target


@pytest.mark.parametrize("case", list(CASES))
def test_spark_equals_in_memory_and_streamed(spark, tmp_path: Path, case: str) -> None:
    """Values, both intervals (seed fixed) and diagnostics, whole log and per position, as the local paths give."""
    options = CASES[case]
    columns = log_columns(3000, seed=1, positions=options["positions"], missing=options["missing"])
    folder = write_files(tmp_path / "log", columns, options["bounds"])
    target = target_for(options["positions"])
    in_memory = bk.ope.evaluate(folder, target, n_bootstrap=300, rng=7, drop_unrewarded=True)
    streamed = bk.ope.evaluate(folder, target, n_bootstrap=300, rng=7, drop_unrewarded=True, chunk_rows=97)
    in_spark = bk_spark.evaluate(folder, target, n_bootstrap=300, rng=7, drop_unrewarded=True, spark=spark)
    assert_same(in_spark, in_memory)
    assert_same(in_spark, streamed)
    files = len(options["bounds"]) + 1
    match = re.fullmatch(
        r"spark: ([\d,]+) rows from (\d+) Parquet files in (\d+) partitions of a Spark DataFrame", in_spark.source
    )
    assert match, in_spark.source
    assert match[1] == f"{in_memory['ips'].n_rows:,}" and int(match[2]) == files
    assert int(match[3]) > files, "the files were split over several partitions"
    assert "summed in Spark" in (in_spark.reward_model or "")
    assert not np.isnan(in_spark["dr"].low)  # intervals were compared, not two NaNs
    assert list(in_spark.by_position) == list(in_memory.by_position) == ([0, 1, 2] if case == "positions" else [])


def test_a_reward_model_on_a_stated_sample_as_locally(spark, tmp_path: Path) -> None:
    """model_rows: the ridge on the first rows only, the same numbers and note as in memory and streamed."""
    columns = log_columns(3000, seed=3, positions=3, missing=0.05)
    folder = write_files(tmp_path / "log", columns, [900, 2000])
    options: dict[str, Any] = dict(n_bootstrap=200, rng=5, drop_unrewarded=True, model_rows=1234)
    target = target_for(3)
    in_memory = bk.ope.evaluate(folder, target, **options)
    in_spark = bk_spark.evaluate(folder, target, spark=spark, **options)
    assert_same(in_spark, in_memory)
    assert_same(in_spark, bk.ope.evaluate(folder, target, chunk_rows=97, **options))
    assert f"the first 1,234 of {in_memory['dr'].n_rows:,} rows (model_rows" in (in_spark.reward_model or "")
    with pytest.raises(InvalidParameterError, match=r"model_rows must be in \[2, None\], got 0"):
        bk_spark.evaluate(folder, target, spark=spark, model_rows=0)


def test_a_contextual_bandit_is_asked_where_the_rows_are(spark, tmp_path: Path) -> None:
    """LinUCB's probabilities come from the same banditkit code in the workers; another seed moves the interval."""
    folder = write_files(tmp_path / "log", log_columns(2000, seed=2), [900])
    bandit = bk.Bandit(["0", "1", "2"], policy="linucb", n_features=2, seed=0)
    bandit.update_many(["2"] * 20 + ["0"] * 20, [1.0] * 20 + [0.0] * 20, contexts=np.ones((40, 2)))
    frame = spark.read.parquet(str(folder))  # a DataFrame read from Parquet: its folder column `date` is ignored
    in_memory = bk.ope.evaluate(folder, bandit, ["ips", "snips", "dr"], n_bootstrap=200, rng=3)
    in_spark = bk_spark.evaluate(frame, bandit, ["ips", "snips", "dr"], n_bootstrap=200, rng=3)
    assert_same(in_spark, in_memory)
    other = bk_spark.evaluate(frame, bandit, ["ips"], n_bootstrap=200, rng=4)
    assert other["ips"].value == pytest.approx(in_spark["ips"].value, rel=1e-12)
    assert other["ips"].low != in_spark["ips"].low


def test_a_dataframe_filtered_in_spark_and_one_shuffled(spark, tmp_path: Path) -> None:
    """Rows filtered out in Spark are not in the log; a shuffle loses the file order and is refused by name."""
    columns = log_columns(2000, seed=10, missing=0.05)
    folder = write_files(tmp_path / "log", columns, [800])
    keep = columns["x1"] > -0.5
    target = np.array([[0.2, 0.5, 0.3]])
    options: dict[str, Any] = dict(n_bootstrap=200, rng=2, drop_unrewarded=True)
    local = bk.ope.evaluate({k: v[keep] for k, v in columns.items()}, target, ["ips", "snips", "dr"], **options)
    frame = spark.read.parquet(str(folder)).filter(functions.col("x1") > -0.5)
    assert_same(bk_spark.evaluate(frame, target, ["ips", "snips", "dr"], **options), local)
    shuffled = spark.read.parquet(str(folder)).repartition(3)
    with pytest.raises(InvalidParameterError, match=r"out of file order \(a shuffle such as repartition"):
        bk_spark.evaluate(shuffled, target, ["ips"])


def test_a_dataframe_numbered_by_a_row_id_column(spark) -> None:
    """Rows in any order, with named arms: numbered by ``row_id`` they are the local log sorted by it."""
    columns = log_columns(1500, seed=3, missing=0.1)
    names = np.array(["red", "green", "blue"], dtype=object)
    rows: dict[str, Any] = {**columns, "arm": names[columns["arm"]], "id": np.arange(1500) * 3 + 10}
    shuffled = np.random.default_rng(0).permutation(1500)
    frame = spark.createDataFrame([{k: _plain(v[i]) for k, v in rows.items()} for i in shuffled]).repartition(3)
    target = np.array([[0.5, 0.2, 0.3]])  # arms in sorted order: blue, green, red
    local = bk.ope.evaluate(rows, target, ["ips", "snips", "dr"], n_bootstrap=200, rng=5, drop_unrewarded=True)
    in_spark = bk_spark.evaluate(
        frame, target, ["ips", "snips", "dr"], row_id="id", n_bootstrap=200, rng=5, drop_unrewarded=True
    )
    assert_same(in_spark, local)
    assert in_spark.source.startswith("spark: 1,3") and "ordered by 'id'" in in_spark.source
    with pytest.raises(InvalidParameterError, match=r"not read from Parquet files.*row_id"):
        bk_spark.evaluate(frame, target, ["ips"])
    repeated = frame.union(frame.limit(1))
    with pytest.raises(InvalidParameterError, match="values of 'id' repeat"):
        bk_spark.evaluate(repeated, target, ["ips"], row_id="id", drop_unrewarded=True)
    with pytest.raises(InvalidParameterError, match="row_id column 'x0' must hold integers"):
        bk_spark.evaluate(frame, target, ["ips"], row_id="x0")
    holed = frame.withColumn("id", functions.when(functions.col("id") == 10, None).otherwise(functions.col("id")))
    with pytest.raises(InvalidParameterError, match="row_id must be given on every row"):
        bk_spark.evaluate(holed, target, ["ips"], row_id="id", drop_unrewarded=True)


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value Spark's schema inference takes (NaN stays a float)."""
    return value.item() if hasattr(value, "item") else value


def test_a_bad_row_fails_with_its_file_and_row(spark, tmp_path: Path) -> None:
    columns = log_columns(1000, seed=4)
    columns["propensity"][400 + 123] = 0.0
    folder = write_files(tmp_path / "log", columns, [400])
    with pytest.raises(InvalidParameterError, match=r"log file '.*date=2026-01-02/part-0.parquet'.*at rows \[123\]"):
        bk_spark.evaluate(folder, np.array([[0.2, 0.3, 0.5]]), ["ips"], spark=spark)
    bandit = bk.Bandit(["0", "1"], policy="thompson", seed=0)  # the log also has arm "2"
    with pytest.raises(UnknownArmError, match=r"log file .*date=2026-01-0.*logged arm '2'"):
        bk_spark.evaluate(write_files(tmp_path / "ok", log_columns(600, seed=5), [300]), bandit, ["ips"])


def test_the_rows_of_one_experiment(spark, tmp_path: Path) -> None:
    """``experiment=`` keeps one experiment's rows, numbered among themselves as ``load_log(experiment=)`` does."""
    columns: dict[str, Any] = log_columns(1200, seed=9)
    columns["experiment"] = np.where(np.random.default_rng(1).random(1200) < 0.4, "hero", "other").astype(object)
    folder = write_files(tmp_path / "log", columns, [500])
    target = np.array([[0.3, 0.3, 0.4]])
    local = bk.ope.evaluate(bk.ope.load_log(folder, experiment="hero"), target, ["ips", "dr"], n_bootstrap=100)
    in_spark = bk_spark.evaluate(folder, target, ["ips", "dr"], n_bootstrap=100, experiment="hero")
    assert_same(in_spark, local)
    assert in_spark["ips"].n_rows == int((columns["experiment"] == "hero").sum())
    with pytest.raises(InvalidParameterError, match=r"several experiments \['hero', 'other'\]; pass experiment=NAME"):
        bk_spark.evaluate(folder, target, ["ips"])


def test_what_spark_does_not_evaluate(spark, tmp_path: Path) -> None:
    folder = write_files(tmp_path / "log", log_columns(400, seed=7), [200])
    target = np.array([[0.2, 0.3, 0.5]])
    with pytest.raises(InvalidParameterError, match="for its draws; in Spark use ips or snips"):
        bk_spark.evaluate(folder, target, ["replay", "replay"])
    with pytest.raises(InvalidParameterError, match="one target at a time"):
        bk_spark.evaluate(folder, {"a": target}, ["ips"])
    with pytest.raises(InvalidParameterError, match=r"must have 1 row .*got shape \(400, 3\)"):
        bk_spark.evaluate(folder, np.full((400, 3), 1 / 3), ["ips"])
    linear = pytest.importorskip("sklearn.linear_model")
    with pytest.raises(InvalidParameterError, match="must be a RidgeRewardModel, got LinearRegression"):
        bk_spark.evaluate(folder, target, ["dr"], reward_model=linear.LinearRegression())
    with pytest.raises(InvalidParameterError, match="does not exist"):
        bk_spark.evaluate(tmp_path / "nothing", target, ["ips"])
    with pytest.raises(InvalidParameterError, match="log has no 'propensity' column"):
        bk_spark.evaluate(spark.read.parquet(str(folder)).drop("propensity"), target, ["ips"])
    with pytest.raises(InvalidParameterError, match="estimator must be one of"):
        bk_spark.evaluate(folder, target, ["ipx"])


def test_the_cli_evaluates_with_engine_spark(spark, tmp_path: Path) -> None:
    """``--engine spark`` gives the JSON report of the local engine (in this process: the module's session)."""
    folder = write_files(tmp_path / "log", log_columns(1200, seed=8, missing=0.05), [500])
    np.save(tmp_path / "target.npy", np.array([[0.1, 0.3, 0.6]]))
    runner = CliRunner(env={"COLUMNS": "200"})
    reports = {}
    for engine in ("local", "spark"):
        out = tmp_path / f"{engine}.json"
        args = ["evaluate", str(folder), "-p", str(tmp_path / "target.npy"), "-e", "ips,snips,dr", "--seed", "2"]
        args += ["--bootstrap", "100", "--drop-unrewarded", "--engine", engine, "--spark-master", "local[2]"]
        result = runner.invoke(app, [*args, "--out", str(out)])
        assert result.exit_code == 0, result.output
        reports[engine] = json.loads(out.read_text())["estimates"]
    for local, in_spark in zip(reports["local"], reports["spark"], strict=True):
        assert in_spark["estimator"] == local["estimator"]
        for key in ("value", "low", "high", "normal_low", "normal_high", "ess"):
            assert in_spark[key] == pytest.approx(local[key], rel=1e-9), (local["estimator"], key)
    result = runner.invoke(app, ["evaluate", str(folder), "-p", "a=x.npy", "-p", "b=y.npy", "--engine", "spark"])
    assert result.exit_code == 2 and "one target at a time" in result.output
    result = runner.invoke(app, ["evaluate", str(folder), "-p", "ucb1", "--engine", "flink"])
    assert result.exit_code == 2 and "--engine must be 'local' or 'spark'" in result.output


def test_pyspark_is_the_one_under_test() -> None:
    """The extra's floor: Spark 3.5 added ``_metadata.row_index``, which numbers a file's rows."""
    major, minor = (int(part) for part in pyspark.__version__.split(".")[:2])
    assert (major, minor) >= (3, 5)

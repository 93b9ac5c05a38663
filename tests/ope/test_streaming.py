"""Streamed evaluation of Parquet logs: the in-memory estimates chunk by chunk, bounded memory, bad logs named."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import banditkit as bk
from banditkit.errors import InvalidParameterError
from banditkit.ope import evaluate, streaming

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

N_ARMS = 3


def log_columns(n_rows: int, seed: int = 0, positions: int = 1, missing: float = 0.0) -> dict[str, np.ndarray]:
    """A contextual log with a non-uniform logger; ``missing`` of the rewards are NaN (not yet rewarded)."""
    rng = np.random.default_rng(seed)
    contexts = rng.normal(size=(n_rows, 2))
    arms = rng.integers(0, N_ARMS, n_rows)
    reward = (rng.random(n_rows) < 0.2 + 0.2 * arms + 0.1 * (contexts[:, 0] > 0)).astype(float)
    reward[rng.random(n_rows) < missing] = np.nan
    columns = {
        "arm": arms,
        "reward": reward,
        "propensity": np.where(arms == 0, 0.5, 0.25),
        "x0": contexts[:, 0],
        "x1": contexts[:, 1],
    }
    if positions > 1:
        columns["position"] = rng.integers(0, positions, n_rows)
    return columns


def write_partitions(folder: Path, columns: dict[str, np.ndarray], bounds: list[int]) -> Path:
    """The archive's layout: one ``date=D/part-0.parquet`` per slice of rows between ``bounds``."""
    edges = [0, *bounds, len(columns["arm"])]
    for index, (start, stop) in enumerate(itertools.pairwise(edges)):
        partition = folder / f"date=2026-01-{index + 1:02d}"
        partition.mkdir(parents=True)
        pq.write_table(pa.table({k: v[start:stop] for k, v in columns.items()}), partition / "part-0.parquet")
    return folder


def assert_same(streamed: bk.ope.Report, in_memory: bk.ope.Report) -> None:
    """Same values, bootstrap and normal intervals and diagnostics, per estimator and per position."""
    groups = [(streamed.estimates, in_memory.estimates)]
    assert streamed.by_position.keys() == in_memory.by_position.keys()
    groups += [(streamed.by_position[p], in_memory.by_position[p]) for p in in_memory.by_position]
    for got, expected in groups:
        assert list(got) == list(expected)
        for name in expected:
            a, b = got[name].to_dict(), expected[name].to_dict()
            for key, value in b.items():
                if isinstance(value, float):
                    assert a[key] == pytest.approx(value, rel=1e-9, abs=1e-12), (name, key)
                else:
                    assert a[key] == value, (name, key)


CASES: dict[str, dict[str, Any]] = {
    "several partitions": dict(positions=1, missing=0.0, bounds=[700, 1500, 2100]),
    "missing rewards": dict(positions=1, missing=0.1, bounds=[1000]),
    "positions": dict(positions=3, missing=0.05, bounds=[333, 2000]),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("chunk_rows", [97, 4096])
def test_streamed_equals_in_memory(tmp_path: Path, case: str, chunk_rows: int) -> None:
    options = CASES[case]
    columns = log_columns(3000, seed=1, positions=options["positions"], missing=options["missing"])
    folder = write_partitions(tmp_path / "log", columns, options["bounds"])
    target = np.full((1, N_ARMS, options["positions"]), 1.0 / N_ARMS)
    target[0, :, 0] = [0.2, 0.2, 0.6]
    if options["positions"] == 1:
        target = target[:, :, 0]
    in_memory = evaluate(folder, target, n_bootstrap=300, rng=7, drop_unrewarded=True)
    streamed = evaluate(folder, target, n_bootstrap=300, rng=7, drop_unrewarded=True, chunk_rows=chunk_rows)
    assert_same(streamed, in_memory)
    assert in_memory.source == "in memory" and streamed.source.startswith("streamed: ")
    assert "streamed" in (streamed.reward_model or "") and "in memory" in (in_memory.reward_model or "")
    assert not np.isnan(streamed["dr"].low)  # intervals were compared, not two NaNs


def test_streamed_bandit_target_and_seed_dependence(tmp_path: Path) -> None:
    """A contextual Bandit is asked chunk by chunk; another seed moves the interval, not the value."""
    folder = write_partitions(tmp_path / "log", log_columns(2000, seed=2), [900])
    bandit = bk.Bandit(["0", "1", "2"], policy="linucb", n_features=2, seed=0)
    in_memory = evaluate(folder, bandit, ["ips", "snips", "dr"], n_bootstrap=200, rng=3)
    streamed = evaluate(folder, bandit, ["ips", "snips", "dr"], n_bootstrap=200, rng=3, chunk_rows=250)
    assert_same(streamed, in_memory)
    other = evaluate(folder, bandit, ["ips"], n_bootstrap=200, rng=4, chunk_rows=250)
    assert other["ips"].value == streamed["ips"].value and other["ips"].low != streamed["ips"].low


def test_a_single_parquet_file_streams_too(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table(log_columns(500, seed=3)), path)
    target = np.array([[0.0, 0.0, 1.0]])
    assert_same(
        evaluate(path, target, ["ips", "snips"], n_bootstrap=100, chunk_rows=64),
        evaluate(path, target, ["ips", "snips"], n_bootstrap=100),
    )


def bad(columns: dict[str, np.ndarray], name: str, row: int, value: object) -> dict[str, np.ndarray]:
    changed = {k: v.copy() for k, v in columns.items()}
    changed[name][row] = value
    return changed


BAD_LOGS = {
    "propensity 0": (lambda c: bad(c, "propensity", 123, 0.0), r"propensity must be in \(0, 1\].*at rows \[123\]"),
    "propensity above 1": (lambda c: bad(c, "propensity", 45, 1.5), r"propensity must be in \(0, 1\].*at rows \[45\]"),
    "negative arm": (lambda c: bad(c, "arm", 301, -2), r"arm indices must be >= 0.*at rows \[301\]"),
    "infinite context": (lambda c: bad(c, "x1", 7, np.inf), r"context must be finite.*at rows \[7\]"),
}


@pytest.mark.parametrize("case", list(BAD_LOGS))
def test_bad_rows_fail_with_the_file_and_its_row(tmp_path: Path, case: str) -> None:
    columns = log_columns(1000, seed=4)
    folder = write_partitions(tmp_path / "log", columns, [400])
    spoil, message = BAD_LOGS[case]
    second = folder / "date=2026-01-02" / "part-0.parquet"
    rows = {k: v[400:] for k, v in columns.items()}
    pq.write_table(pa.table(spoil(rows)), second)
    with pytest.raises(InvalidParameterError, match=message) as error:
        evaluate(folder, np.array([[0.2, 0.3, 0.5]]), ["ips"], chunk_rows=100)
    assert str(second) in str(error.value)


def test_unknown_arm_of_the_target_names_the_file(tmp_path: Path) -> None:
    folder = write_partitions(tmp_path / "log", log_columns(600, seed=5), [300])
    bandit = bk.Bandit(["0", "1"], policy="thompson", seed=0)  # the log also has arm "2"
    with pytest.raises(bk.errors.UnknownArmError, match=r"log file .*date=2026-01-01.*logged arm '2'"):
        evaluate(folder, bandit, ["ips"], chunk_rows=100)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t: t.set_column(1, "reward", pa.array([str(v) for v in t["reward"].to_pylist()])),
            "column 'reward' is",
        ),
        (lambda t: t.drop_columns(["x1"]), "has no 'x1' column"),
        (lambda t: t.append_column("x2", pa.array(np.zeros(t.num_rows))), r"has columns \['x2'\]"),
    ],
)
def test_mixed_schemas_across_partitions_name_the_file(tmp_path: Path, change, message: str) -> None:
    folder = write_partitions(tmp_path / "log", log_columns(600, seed=6), [300])
    second = folder / "date=2026-01-02" / "part-0.parquet"
    pq.write_table(change(pq.read_table(second)), second)
    with pytest.raises(InvalidParameterError, match=message) as error:
        evaluate(folder, np.array([[0.2, 0.3, 0.5]]), ["ips"], chunk_rows=100)
    assert str(second) in str(error.value)


def test_what_a_streamed_log_does_not_support(tmp_path: Path) -> None:
    folder = write_partitions(tmp_path / "log", log_columns(400, seed=7), [200])
    target = np.array([[0.2, 0.3, 0.5]])
    with pytest.raises(InvalidParameterError, match="for its draws; on a streamed log use ips or snips"):
        evaluate(folder, target, ["replay"], chunk_rows=100)
    with pytest.raises(InvalidParameterError, match="predicted_rewards"):
        evaluate(folder, target, ["dr"], predicted_rewards=np.zeros((400, 3)), chunk_rows=100)
    linear = pytest.importorskip("sklearn.linear_model")
    with pytest.raises(InvalidParameterError, match="LinearRegression has no partial_fit"):
        evaluate(folder, target, ["dr"], reward_model=linear.LinearRegression(), chunk_rows=100)
    with pytest.raises(InvalidParameterError, match="one target at a time"):
        evaluate(folder, {"a": target}, ["ips"], chunk_rows=100)
    with pytest.raises(InvalidParameterError, match=r"rows and 3 arms"):  # a per-row array cannot stream
        evaluate(folder, np.full((400, 3), 1 / 3), ["ips"], chunk_rows=100)
    with pytest.raises(InvalidParameterError, match="Parquet file or folder"):
        evaluate(log_columns(50), target, ["ips"], chunk_rows=100)


MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    import banditkit as bk
    path, chunk_rows = sys.argv[1], sys.argv[2]
    target = np.full((1, 3), 1 / 3)
    if chunk_rows == "memory":
        report = bk.ope.evaluate(path, target, ["ips", "snips"], n_bootstrap=0)
    else:
        report = bk.ope.evaluate(path, target, ["ips", "snips"], n_bootstrap=0, chunk_rows=int(chunk_rows))
    # VmHWM starts afresh at exec; ru_maxrss would keep the parent's resident set at the fork
    status = Path("/proc/self/status").read_text().splitlines()
    peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    print(json.dumps({"peak": peak, "rows": report["ips"].n_rows, "ips": report["ips"].value}))
    """
)


def peak_rss(path: Path, chunk_rows: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(path), chunk_rows],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="VmHWM is read from /proc (Linux)")
def test_streaming_peak_rss_stays_below_what_an_in_memory_load_needs(tmp_path: Path) -> None:
    """3M rows in 6 files: the streamed evaluation stays under 500 MB; the in-memory load needs more.

    Measured on 2M rows: 0.26 GB streamed (0.09 GB of it the interpreter and imports) against 0.58 GB in
    memory; more rows raise only the latter. The bound leaves room for the allocator's retained pages.
    The 20M- and 100M-row figures are in docs/benchmarks.md.
    """
    rng = np.random.default_rng(8)
    folder = tmp_path / "log"
    for index in range(6):
        rows = 500_000
        arms = rng.integers(0, 3, rows)
        table = pa.table(
            {
                "arm": arms,
                "reward": (rng.random(rows) < 0.5).astype(float),
                "propensity": np.full(rows, 1 / 3),
                **{f"x{j}": rng.normal(size=rows) for j in range(5)},
            }
        )
        (folder / f"date={index}").mkdir(parents=True)
        pq.write_table(table, folder / f"date={index}" / "part-0.parquet")
    in_memory = peak_rss(folder, "memory")  # first: a fresh checkout compiles numba kernels (and caches them)
    streamed = peak_rss(folder, "65536")
    assert streamed["rows"] == in_memory["rows"] == 3_000_000
    assert streamed["ips"] == pytest.approx(in_memory["ips"], rel=1e-12)
    bound = 500 * 2**20
    assert streamed["peak"] < bound < in_memory["peak"], (streamed["peak"] / 2**20, in_memory["peak"] / 2**20)


def test_a_large_parquet_log_streams_by_itself_when_the_request_can(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(streaming, "STREAM_ROWS", 300)  # "large" for this test: more than 300 rows
    folder = write_partitions(tmp_path / "log", log_columns(400, seed=9), [200])
    target = np.array([[0.2, 0.3, 0.5]])
    assert evaluate(folder, target, ["ips", "dr"], n_bootstrap=0).source.startswith("streamed: 400 rows")
    # requests that cannot stream read the log in memory, as before
    assert evaluate(folder, np.full((400, 3), 1 / 3), ["ips"], n_bootstrap=0).source == "in memory"
    assert isinstance(evaluate(folder, {"a": target, "b": target[:, ::-1]}, ["ips"], n_bootstrap=0), bk.ope.Comparison)
    monkeypatch.setattr(streaming, "STREAM_ROWS", 400)
    assert evaluate(folder, target, ["ips"], n_bootstrap=0).source == "in memory"


def test_prefetching_runs_one_chunk_ahead_and_raises_in_order() -> None:
    """The next item is made only once the previous one is asked for; an error comes after the items before it."""
    events: list[tuple[str, int]] = []

    def source():
        for i in range(5):
            events.append(("made", i))
            yield i
        raise InvalidParameterError("log file 'x.parquet': bad row 5")

    items = streaming.prefetched(source())
    received = []
    with pytest.raises(InvalidParameterError, match="bad row 5"):
        for i in itertools.count():
            events.append(("asked", i))
            received.append(next(items))
    assert received == [0, 1, 2, 3, 4]
    for j in range(1, 5):  # at most two alive: item j is made after item j - 1 was asked for
        assert events.index(("asked", j - 1)) < events.index(("made", j))


def test_a_consumer_that_stops_early_stops_the_reading_thread() -> None:
    closed = []

    def endless():
        try:
            yield from itertools.count()
        finally:
            closed.append(True)

    items = streaming.prefetched(endless())
    assert [next(items), next(items)] == [0, 1]
    items.close()
    assert closed == [True]
    assert not any(thread.name == "banditkit-prefetch" for thread in __import__("threading").enumerate())


def test_the_layout_from_row_group_statistics_equals_the_one_read_from_the_columns(tmp_path: Path) -> None:
    """Integer arms, whole log: the vocabulary and row count come from metadata; without statistics, from reading."""
    columns = log_columns(1500, seed=8)
    columns["arm"][columns["arm"] == 2] = 1  # the largest arm is 1 in every file
    from_statistics, from_columns = tmp_path / "stats.parquet", tmp_path / "plain.parquet"
    pq.write_table(pa.table(columns), from_statistics, row_group_size=400)
    pq.write_table(pa.table(columns), from_columns, row_group_size=400, write_statistics=False)
    quick, read = streaming.scan_layout(from_statistics, False), streaming.scan_layout(from_columns, False)
    assert quick.reward_values is None and read.reward_values == (0.0, 1.0)
    assert (quick.arm_names, quick.n_rows) == (read.arm_names, read.n_rows) == (("0", "1"), 1500)
    assert streaming.distinct_rewards(quick) == read.reward_values
    target = np.array([[0.3, 0.7]])
    assert_same(
        evaluate(from_statistics, target, ["ips", "dr"], n_bootstrap=100, chunk_rows=128),
        evaluate(from_columns, target, ["ips", "dr"], n_bootstrap=100, chunk_rows=128),
    )

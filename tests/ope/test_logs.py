"""Reading and validating logs: every source, the decision service's export, and a table of bad logs."""

from __future__ import annotations

import csv
import importlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditkit.errors import InvalidParameterError
from banditkit.ope import evaluate, load_log

from .conftest import make_problem, service_rows

GOOD = {
    "arm": np.array([0, 1, 2, 1]),
    "reward": np.array([1.0, 0.0, 0.5, 1.0]),
    "propensity": np.array([0.5, 0.25, 0.25, 0.25]),
    "context": np.array(["[0.1, 2]", "[0.3, 1]", "[0, 0]", "[1, 1]"], dtype=object),
}


def write_csv(path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_mapping_of_arrays():
    log = load_log(GOOD)
    assert log.n_rows == 4 and log.arm_names == ("0", "1", "2")
    assert log.contexts.tolist() == [[0.1, 2.0], [0.3, 1.0], [0.0, 0.0], [1.0, 1.0]]
    assert log.positions is None and log.behaviour_probabilities is None


def test_numbered_context_columns_and_positions():
    log = load_log(
        {
            "arm": [1, 0],
            "reward": [1, 0],
            "propensity": [0.5, 0.5],
            "x1": [3.0, 4.0],
            "x0": [1.0, 2.0],
            "x10": [5.0, 6.0],
            "position": [0, 2],
        }
    )
    assert log.contexts.tolist() == [[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]]
    assert log.positions.tolist() == [0, 2] and log.n_positions == 3


def test_named_arms_with_a_declared_vocabulary():
    log = load_log({"arm": ["b", "a"], "reward": [1.0, 0.0], "propensity": [0.5, 0.5]}, arms=["a", "b", "c"])
    assert log.arms.tolist() == [1, 0] and log.arm_names == ("a", "b", "c")


def test_pyarrow_table_csv_and_parquet_give_the_same_log(tmp_path):
    pa = importlib.import_module("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "arm": ["x", "y", "x"],
            "reward": [1.0, 0.0, 1.0],
            "propensity": [0.5, 0.5, 0.5],
            "context": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
        }
    )
    pq.write_table(table, tmp_path / "log.parquet")
    write_csv(
        tmp_path / "log.csv",
        [
            {"arm": a, "reward": r, "propensity": 0.5, "context": json.dumps(c)}
            for a, r, c in zip(["x", "y", "x"], [1.0, 0.0, 1.0], [[1, 2], [3, 4], [5, 6]], strict=True)
        ],
    )
    logs = [load_log(table), load_log(tmp_path / "log.parquet"), load_log(str(tmp_path / "log.csv"))]
    for log in logs:
        assert log.arms.tolist() == [0, 1, 0] and log.arm_names == ("x", "y")
        assert log.contexts.tolist() == [[1, 2], [3, 4], [5, 6]]


class DuckFrame:
    """The part of the pandas / polars DataFrame surface the reader relies on."""

    def __init__(self, data: dict):
        self.data = data
        self.columns = list(data)

    def __getitem__(self, name):
        return DuckSeries(self.data[name])


class DuckSeries:
    def __init__(self, values):
        self.values = values
        self.dtype = np.asarray(values).dtype

    def to_numpy(self):
        return np.asarray(self.values)


def test_dataframe_like_objects_are_read_without_importing_pandas():
    log = load_log(DuckFrame({"arm": [0, 1], "reward": [1.0, 0.0], "propensity": [0.5, 0.5]}))
    assert log.n_rows == 2


def test_pandas_dataframe_when_installed():
    pd = importlib.import_module("pandas")
    frame = pd.DataFrame(
        {"arm": ["a", "b"], "reward": [1.0, 0.0], "propensity": [0.5, 0.5], "context": [[1.0, 0.0], [0.0, 1.0]]}
    )
    assert load_log(frame).contexts.tolist() == [[1.0, 0.0], [0.0, 1.0]]


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_the_decision_service_export_evaluates_without_conversion(tmp_path, suffix):
    rng = np.random.default_rng(11)
    problem = make_problem(rng, n=600)
    rows = service_rows(problem, rng)
    rows[5]["reward"] = None  # a decision still waiting for its reward
    path = tmp_path / f"log.{suffix}"
    if suffix == "csv":
        write_csv(path, rows)
    else:
        pa = importlib.import_module("pyarrow")
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(InvalidParameterError, match=r"reward must be finite, got nan at rows \[5\].*drop_unrewarded"):
        load_log(path)
    log = load_log(path, drop_unrewarded=True)
    assert log.n_rows == 599 and log.arm_names == ("red", "green", "blue", "gold")
    assert log.contexts.shape == (599, 3)
    np.testing.assert_allclose(log.behaviour_probabilities, np.delete(problem.behaviour, 5, axis=0))
    report = evaluate(
        path, np.delete(problem.target, 5, axis=0), ["ips", "snips", "dr"], n_bootstrap=100, drop_unrewarded=True
    )
    assert abs(report["dr"].value - problem.true_value) < 4 * report["dr"].std_error


@pytest.mark.parametrize("empty", ["null", "[]", ""])
def test_a_non_contextual_export_has_no_context(tmp_path, empty):
    rows = [
        {
            "decision_id": f"d{i}",
            "context": empty,
            "arm": "ab"[i % 2],
            "propensity": 0.5,
            "probabilities": '{"a": 0.5, "b": 0.5}',
            "reward": i % 3 == 0,
        }
        for i in range(6)
    ]
    for row in rows:
        row["reward"] = float(row["reward"])
    write_csv(tmp_path / "log.csv", rows)
    log = load_log(tmp_path / "log.csv")
    assert log.contexts is None and log.arm_names == ("a", "b")
    rows[2]["context"] = "[1.0]"
    write_csv(tmp_path / "mixed.csv", rows)
    with pytest.raises(InvalidParameterError, match=r"context is missing at rows \[0, 1, 3, 4, 5\]"):
        load_log(tmp_path / "mixed.csv")


def test_experiment_column_with_several_experiments():
    data = {"experiment": ["a", "b", "a"], "arm": [0, 1, 1], "reward": [1.0, 0.0, 0.0], "propensity": [0.5] * 3}
    with pytest.raises(InvalidParameterError, match=r"several experiments \['a', 'b'\]"):
        load_log(data)
    assert load_log(data, experiment="a").n_rows == 2


def bad(**changes):
    data = {name: values.copy() for name, values in GOOD.items()}
    data.update(changes)
    return data


BAD_LOGS = [
    (
        "zero propensity",
        bad(propensity=np.array([0.5, 0.0, 0.25, 0.25])),
        "propensity must be in (0, 1] (missing, 0 or > 1 cannot be evaluated), got 0.0 at rows [1] (1 row)",
    ),
    ("missing propensity", bad(propensity=np.array([0.5, np.nan, 0.25, np.nan])), "got nan at rows [1, 3] (2 rows)"),
    ("propensity above 1", bad(propensity=np.array([0.5, 0.25, 1.5, 0.25])), "got 1.5 at rows [2] (1 row)"),
    (
        "NaN reward",
        bad(reward=np.array([1.0, np.nan, 0.0, 0.0])),
        "reward must be finite, got nan at rows [1] (1 row); pass drop_unrewarded=True",
    ),
    ("infinite reward", bad(reward=np.array([1.0, 0.0, np.inf, 0.0])), "reward must be finite, got inf at rows [2]"),
    (
        "text reward",
        bad(reward=np.array(["1", "yes", "0", "1"], dtype=object)),
        "reward must be a number, got 'yes' at rows [1] (1 row)",
    ),
    (
        "unknown arm",
        {**bad(arm=np.array(["a", "b", "zz", "a"], dtype=object)), "arms": ["a", "b"]},
        "arm 'zz' is not one of the arms ['a', 'b'] at rows [2] (1 row)",
    ),
    ("negative arm index", bad(arm=np.array([0, -1, 1, 1])), "arm indices must be >= 0, got -1 at rows [1]"),
    (
        "context length",
        bad(context=np.array(["[0, 1]", "[1]", "[0, 0]", "[1, 2, 3]"], dtype=object)),
        "context must have 2 features on every row, got 1 at rows [1, 3] (2 rows)",
    ),
    (
        "context NaN",
        bad(context=np.array(["[0, 1]", "[1, NaN]", "[0, 0]", "[1, 2]"], dtype=object)),
        "context must be finite, got nan in feature 1 at rows [1] (1 row)",
    ),
    (
        "malformed context",
        bad(context=np.array(["[0, 1]", "[1,", "[0, 0]", "[1, 2]"], dtype=object)),
        "context must be JSON lists of numbers",
    ),
    (
        "mismatched lengths",
        bad(reward=np.array([1.0, 0.0, 1.0])),
        "log columns must have the same length, got {'arm': 4, 'reward': 3, 'propensity': 4, 'context': 4}",
    ),
    (
        "no propensity column",
        {k: v for k, v in GOOD.items() if k != "propensity"},
        "log has no 'propensity' column; columns are ['arm', 'context', 'reward']",
    ),
    (
        "propensity disagrees with probabilities",
        bad(
            probabilities=np.array(
                ['{"0": 0.5, "1": 0.25, "2": 0.25}'] * 3 + ['{"0": 0.5, "1": 0.5, "2": 0}'], dtype=object
            )
        ),
        "propensity must equal probabilities[arm], got 0.25 vs 0.5 at rows [3] (1 row)",
    ),
    ("negative position", bad(position=np.array([0, 1, -1, 0])), "position must be >= 0, got -1 at rows [2]"),
]


@pytest.mark.parametrize(("case", "data", "message"), BAD_LOGS, ids=[case for case, _, _ in BAD_LOGS])
def test_bad_logs_name_the_column_and_rows(case, data, message):
    data = dict(data)
    arms = data.pop("arms", None)
    with pytest.raises(InvalidParameterError) as error:
        load_log(data, arms=arms)
    assert message in str(error.value)


def test_contexts_whose_sum_overflows_are_still_finite():
    """The finiteness check sums the contexts first; finite values that sum to infinity are accepted, x columns too."""
    huge = np.full(4, 1e308)
    log = load_log({"arm": [0, 1, 0, 1], "reward": [1.0] * 4, "propensity": [0.5] * 4, "x0": huge, "x1": huge})
    assert log.contexts is not None and log.contexts.tolist() == [[1e308, 1e308]] * 4
    with pytest.raises(InvalidParameterError, match=r"context must be finite, got inf in feature 1 at rows \[2\]"):
        load_log(
            {
                "arm": [0, 1, 0, 1],
                "reward": [1.0] * 4,
                "propensity": [0.5] * 4,
                "x0": huge,
                "x1": np.array([1e308, 1e308, np.inf, 1e308]),
            }
        )


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(InvalidParameterError, match="does not exist"):
        load_log(tmp_path / "nope.csv")
    (tmp_path / "log.xlsx").write_text("")
    with pytest.raises(InvalidParameterError, match=r"must end in \.csv or \.parquet"):
        load_log(tmp_path / "log.xlsx")


def test_csv_without_pyarrow_uses_the_standard_library(tmp_path, monkeypatch):
    import sys

    write_csv(
        tmp_path / "log.csv",
        [
            {"arm": "a", "reward": "1", "propensity": "0.5", "x0": "0.25"},
            {"arm": "b", "reward": "", "propensity": "0.5", "x0": "1e-3"},
        ],
    )
    monkeypatch.setitem(sys.modules, "pyarrow.csv", None)  # import now raises ImportError
    log = load_log(tmp_path / "log.csv", drop_unrewarded=True)
    assert log.n_rows == 1 and log.arm_names == ("a",) and log.contexts.tolist() == [[0.25]]


@pytest.mark.parametrize("reader", ["pyarrow", "standard library"])
def test_cells_escaped_for_spreadsheets_are_read_as_logged(tmp_path, monkeypatch, reader):
    """The decision log export writes ``'=1+1`` for ``=1+1`` (and ``''=q`` for ``'=q``); both readers undo it,
    and leave every other text, numbers and JSON as they are."""
    import sys

    arms = ["=1+1", "-10%", "'=q", "'plain", "a-b"]
    write_csv(
        tmp_path / "log.csv",
        [
            {"arm": cell, "reward": "-1.0", "propensity": "0.5", "probabilities": json.dumps({arm: 0.5, "other": 0.5})}
            for arm, cell in zip(arms, ["'=1+1", "'-10%", "''=q", "'plain", "a-b"], strict=True)
        ],
    )
    if reader == "standard library":
        monkeypatch.setitem(sys.modules, "pyarrow.csv", None)  # import now raises ImportError
    log = load_log(tmp_path / "log.csv")
    assert [log.arm_names[index] for index in log.arms] == arms
    assert log.rewards.tolist() == [-1.0] * len(arms)


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_any_valid_log_survives_a_csv_round_trip(tmp_path_factory, data):
    n = data.draw(st.integers(1, 30))
    arms = data.draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n))
    rewards = data.draw(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=n, max_size=n))
    propensities = data.draw(st.lists(st.floats(1e-9, 1.0, exclude_min=False), min_size=n, max_size=n))
    contexts = data.draw(
        st.lists(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=2), min_size=n, max_size=n)
    )
    path = tmp_path_factory.mktemp("log") / "log.csv"
    write_csv(
        path,
        [
            {"arm": a, "reward": repr(r), "propensity": repr(p), "context": json.dumps(c)}
            for a, r, p, c in zip(arms, rewards, propensities, contexts, strict=True)
        ],
    )
    log = load_log(path, arms=["a", "b", "c"])
    assert [log.arm_names[i] for i in log.arms] == arms
    assert log.rewards.tolist() == rewards and log.propensities.tolist() == propensities
    assert log.contexts.tolist() == contexts


def test_a_folder_of_parquet_partitions_reads_as_one_log(tmp_path):
    """The archive's layout: experiment=E/date=D/part-*.parquet, read in path order; hidden and temp files
    (a write in progress, a _SUCCESS marker) are not rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = {
        "experiment=hero/date=2026-01-01/part-1-0.parquet": [0, 1],
        "experiment=hero/date=2026-01-02/part-5-0.parquet": [2],
        "experiment=hero/date=2026-01-02/part-9-0.parquet": [3],
    }
    for name, rows in parts.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({key: values[rows] for key, values in GOOD.items()}), tmp_path / name)
    (tmp_path / "experiment=hero/date=2026-01-02/.part-9-0.parquet").write_bytes(b"partial")
    pq.write_table(
        pa.table({key: values[:1] for key, values in GOOD.items()}), tmp_path / "experiment=hero/_staging.parquet"
    )
    log, reference = load_log(tmp_path), load_log(GOOD)
    np.testing.assert_array_equal(log.arms, reference.arms)
    np.testing.assert_array_equal(log.rewards, reference.rewards)
    np.testing.assert_array_equal(log.contexts, reference.contexts)
    assert load_log(tmp_path / "experiment=hero" / "date=2026-01-02").n_rows == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidParameterError, match=r"holds no \.parquet files"):
        load_log(tmp_path / "empty")

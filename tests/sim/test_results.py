"""Results: the summary table, exports that round-trip, the plot, the log-spaced grid."""

from __future__ import annotations

import json

import numpy as np
import pytest

from banditkit.errors import InvalidParameterError
from banditkit.sim import Bernoulli, Gaussian, SimulationResult, Table, run
from banditkit.sim.results import GRID_POINTS, recording_steps

from .reference_policies import FixedArm


@pytest.fixture(scope="module")
def result() -> SimulationResult:
    return run(
        {"TS": "thompson", "worst": FixedArm(0)}, Bernoulli([0.2, 0.5, 0.45]), horizon=300, replications=8, seed=3
    )


def test_summary_has_one_row_per_policy_with_the_final_numbers(result):
    summary = result.summary()
    assert summary.columns == ["policy", "regret_mean", "regret_low", "regret_high", "reward_mean"]
    assert summary["policy"].tolist() == ["TS", "worst"]
    assert summary["regret_mean"][1] == pytest.approx(0.3 * 300)
    np.testing.assert_allclose(summary["regret_mean"], result.final_regret.mean(axis=1))
    assert "TS" in repr(summary) and "regret_mean" in repr(summary)
    rows = list(summary.rows())
    assert rows[1]["policy"] == "worst" and isinstance(rows[1]["regret_mean"], float)


def test_json_round_trip_is_exact(result, tmp_path):
    text = result.to_json(tmp_path / "result.json")
    assert json.loads((tmp_path / "result.json").read_text()) == json.loads(text)
    again = SimulationResult.from_json(text)
    for field in result.__dataclass_fields__:
        mine, theirs = getattr(result, field), getattr(again, field)
        if isinstance(mine, np.ndarray):
            np.testing.assert_array_equal(mine, theirs)
        else:
            assert mine == theirs, field


def test_from_json_reads_the_file_to_json_wrote(result, tmp_path):
    path = tmp_path / "result.json"
    result.to_json(path)
    for source in (path, str(path), path.read_text()):
        np.testing.assert_array_equal(SimulationResult.from_json(source).regret_mean, result.regret_mean)
    with pytest.raises(FileNotFoundError):
        SimulationResult.from_json(str(tmp_path / "missing.json"))


def test_nan_bounds_of_a_single_replication_survive_json():
    single = run({"TS": "thompson"}, Bernoulli([0.2, 0.5]), horizon=5, replications=1)
    assert json.loads(single.to_json())["regret_low"][0][0] is None
    assert np.isnan(SimulationResult.from_json(single.to_json()).regret_low).all()


def test_parquet_holds_the_curves(result, tmp_path):
    parquet = pytest.importorskip("pyarrow.parquet")
    result.to_parquet(tmp_path / "curves.parquet")
    table = parquet.read_table(tmp_path / "curves.parquet").to_pydict()
    assert len(table["step"]) == 2 * 300
    assert table["policy"][0] == "TS" and table["policy"][-1] == "worst"
    np.testing.assert_allclose(table["regret_mean"][300:], result.regret("worst"))


def test_plot_writes_a_png_with_the_lai_robbins_bound(result, tmp_path):
    pytest.importorskip("matplotlib")
    figure = result.plot(tmp_path / "regret.png")
    assert (tmp_path / "regret.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert labels[:2] == ["TS", "worst"] and labels[2].startswith("Lai-Robbins rate")
    gaussian = run({"g": "gaussian_thompson"}, Gaussian([0.0, 1.0]), horizon=20, replications=2)
    assert not any("Lai-Robbins" in line.get_label() for line in gaussian.plot().axes[0].get_lines())


def test_long_horizons_are_recorded_on_a_log_spaced_grid():
    grid = recording_steps(100_000)
    assert grid[0] == 1 and grid[-1] == 100_000 and grid.size <= GRID_POINTS
    assert np.all(np.diff(grid) > 0)
    long = run({"worst": FixedArm(0)}, Bernoulli([0.4, 0.5]), horizon=20_000, replications=2)
    np.testing.assert_allclose(long.regret("worst"), 0.1 * long.steps)
    assert long.regret_at("worst", 20_000) == pytest.approx(2000.0)


def test_log_slope_recovers_a_known_rate():
    steps = recording_steps(50_000)
    curve = 7.5 * np.log(steps) + 3.0
    result = SimulationResult(
        ["p"],
        [{}],
        {"kind": "x"},
        50_000,
        2,
        0,
        steps,
        curve[None],
        curve[None],
        curve[None],
        np.zeros((1, 2)),
        np.zeros((1, 2)),
        np.ones((1, 1)),
        np.ones(1),
    )
    assert result.log_slope("p", 5_000) == pytest.approx(7.5)
    with pytest.raises(InvalidParameterError, match="no policy 'q'"):
        result.regret("q")
    with pytest.raises(InvalidParameterError, match="step must be in"):
        result.regret_at("p", 0)


def test_table_checks_lengths_and_converts_lazily():
    with pytest.raises(InvalidParameterError, match="equal lengths"):
        Table({"a": [1, 2], "b": [1]})
    table = Table({"policy": ["x"], "value": [1.5]})
    assert table.to_dict() == {"policy": ["x"], "value": [1.5]}
    with pytest.raises(KeyError, match="no column 'v'"):
        table["v"]
    assert table.to_arrow().column("value").to_pylist() == [1.5]

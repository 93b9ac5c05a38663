"""DM/DR's reward model fitted on a stated sample (``model_rows``): sample splitting, in memory and streamed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from banditkit.errors import InvalidParameterError, InvalidTypeError
from banditkit.ope import CrossedRidgeRewardModel, RidgeRewardModel, cross_fit_predictions, evaluate

from .test_streaming import N_ARMS, assert_same, log_columns, write_partitions

pytest.importorskip("pyarrow")


def sample_problem(n_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n_rows, 2))
    arms = rng.integers(0, N_ARMS, n_rows)
    rewards = features[:, 0] * (arms - 1) + rng.normal(scale=0.1, size=n_rows)
    return features, arms, rewards


@pytest.mark.parametrize("model", [RidgeRewardModel(l2=0.5), CrossedRidgeRewardModel(l2=0.5)])
def test_rows_after_the_sample_get_the_model_fitted_on_all_of_it(model: Any) -> None:
    """Inside the sample: cross-fitting on the sample alone; after it: the model fitted on the whole sample."""
    features, arms, rewards = sample_problem(500, seed=0)
    predicted = cross_fit_predictions(model, features, arms, rewards, N_ARMS, np.random.default_rng(3), model_rows=200)
    inside = cross_fit_predictions(model, features[:200], arms[:200], rewards[:200], N_ARMS, np.random.default_rng(3))
    whole: Any
    if isinstance(model, RidgeRewardModel):
        whole = RidgeRewardModel(l2=0.5).fit(features[:200], arms[:200], rewards[:200], N_ARMS)
    else:
        whole = CrossedRidgeRewardModel(l2=0.5).fit(features[:200], arms[:200], rewards[:200], None)
    np.testing.assert_allclose(predicted[:200], inside, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(predicted[200:], whole.predict(features[200:]), rtol=1e-9, atol=1e-12)


def test_any_estimator_is_trained_on_the_sample_only() -> None:
    """A scikit-learn regressor per arm: rows after the sample never train it, and are predicted by all folds'."""
    linear = pytest.importorskip("sklearn.linear_model")
    features, arms, rewards = sample_problem(400, seed=1)
    spoiled = rewards.copy()
    spoiled[150:] = 1e6  # rewards after the sample must not move any prediction
    options: dict[str, Any] = dict(model_rows=150, n_folds=3)
    predicted = cross_fit_predictions(
        linear.LinearRegression(), features, arms, spoiled, N_ARMS, np.random.default_rng(0), **options
    )
    inside = cross_fit_predictions(
        linear.LinearRegression(), features[:150], arms[:150], rewards[:150], N_ARMS, np.random.default_rng(0), 3
    )
    np.testing.assert_allclose(predicted[:150], inside, rtol=1e-9, atol=1e-12)
    for arm in range(N_ARMS):
        rows = arms[:150] == arm
        fitted = linear.LinearRegression().fit(features[:150][rows], rewards[:150][rows])
        np.testing.assert_allclose(predicted[150:, arm], fitted.predict(features[150:]), rtol=1e-9, atol=1e-12)


CASES: dict[str, dict[str, Any]] = {
    "sample ends inside a chunk of the second file": dict(positions=1, missing=0.0, model_rows=1234),
    "positions and missing rewards": dict(positions=3, missing=0.05, model_rows=700),
    "sample shorter than a chunk": dict(positions=1, missing=0.1, model_rows=50),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("chunk_rows", [97, 4096])
def test_streamed_equals_in_memory_with_a_model_sample(tmp_path: Path, case: str, chunk_rows: int) -> None:
    options = CASES[case]
    columns = log_columns(3000, seed=11, positions=options["positions"], missing=options["missing"])
    folder = write_partitions(tmp_path / "log", columns, [900, 2000])
    target = np.array([[0.2, 0.2, 0.6]])
    if options["positions"] > 1:
        target = np.repeat(target[:, :, None], options["positions"], axis=2)
    kwargs: dict[str, Any] = dict(n_bootstrap=200, rng=5, drop_unrewarded=True, model_rows=options["model_rows"])
    in_memory = evaluate(folder, target, ["ips", "dm", "dr", "switch_dr"], **kwargs)
    streamed = evaluate(folder, target, ["ips", "dm", "dr", "switch_dr"], chunk_rows=chunk_rows, **kwargs)
    assert_same(streamed, in_memory)
    assert not np.isnan(streamed["dr"].low)  # intervals were compared, not two NaNs
    n_rows = in_memory["dr"].n_rows
    stated = f"the first {options['model_rows']:,} of {n_rows:,} rows (model_rows"
    assert stated in (in_memory.reward_model or "") and stated in (streamed.reward_model or "")
    assert "in memory" in (in_memory.reward_model or "") and "streamed" in (streamed.reward_model or "")
    whole = evaluate(folder, target, ["dr"], n_bootstrap=0, rng=5, drop_unrewarded=True)
    assert streamed["dr"].value != whole["dr"].value  # the sample changed the model


def test_streamed_crossed_ridge_with_item_features_and_a_sample(tmp_path: Path) -> None:
    folder = write_partitions(tmp_path / "log", log_columns(2000, seed=12), [800])
    items = np.array([[0.0, 1.0], [1.0, 0.5], [0.3, 0.0]])
    options: dict[str, Any] = dict(
        reward_model=CrossedRidgeRewardModel(), action_features=items, n_bootstrap=100, rng=1
    )
    target = np.array([[0.5, 0.25, 0.25]])
    in_memory = evaluate(folder, target, ["dm", "dr"], model_rows=1000, **options)
    assert_same(evaluate(folder, target, ["dm", "dr"], model_rows=1000, chunk_rows=300, **options), in_memory)


def test_a_sample_as_large_as_the_log_is_the_whole_log(tmp_path: Path) -> None:
    folder = write_partitions(tmp_path / "log", log_columns(800, seed=13), [300])
    target = np.array([[0.2, 0.2, 0.6]])
    whole = evaluate(folder, target, ["dr"], n_bootstrap=100, chunk_rows=128)
    sampled = evaluate(folder, target, ["dr"], n_bootstrap=100, chunk_rows=128, model_rows=10_000)
    assert sampled["dr"].to_dict() == whole["dr"].to_dict()
    assert sampled.reward_model == whole.reward_model and "all 800 rows" in (whole.reward_model or "")


BAD_MODEL_ROWS: dict[str, tuple[Any, type[Exception], str]] = {
    "one row": (1, InvalidParameterError, r"model_rows must be in \[2, None\], got 1"),
    "negative": (-5, InvalidParameterError, r"model_rows must be in \[2, None\], got -5"),
    "a float": (1000.0, InvalidTypeError, r"model_rows must be an integer, got float 1000.0"),
    "a bool": (True, InvalidTypeError, r"model_rows must be an integer, got bool True"),
}


@pytest.mark.parametrize("case", list(BAD_MODEL_ROWS))
def test_bad_model_rows_are_named(tmp_path: Path, case: str) -> None:
    value, error, message = BAD_MODEL_ROWS[case]
    folder = write_partitions(tmp_path / "log", log_columns(300, seed=14), [100])
    target = np.array([[0.2, 0.2, 0.6]])
    for chunk_rows in (None, 64):
        with pytest.raises(error, match=message):
            evaluate(folder, target, ["dr"], model_rows=value, chunk_rows=chunk_rows)


def test_model_rows_with_given_predictions_is_refused() -> None:
    log = log_columns(100, seed=15)
    with pytest.raises(InvalidParameterError, match=r"model_rows chooses the rows .* predicted_rewards"):
        evaluate(log, np.array([[0.2, 0.2, 0.6]]), ["dr"], predicted_rewards=np.zeros((100, 3)), model_rows=50)

"""Reward models: closed-form ridge against a direct solve, cross-fitting, scikit-learn estimators."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditkit.errors import InvalidParameterError, InvalidTypeError
from banditkit.ope import RidgeRewardModel, cross_fit_predictions
from banditkit.ope.bootstrap import draw_key
from banditkit.ope.reward_model import row_folds


def test_ridge_matches_a_direct_solve_per_arm():
    rng = np.random.default_rng(0)
    features, arms = rng.normal(size=(300, 4)), rng.integers(0, 3, 300)
    rewards = features @ rng.normal(size=4) + arms + rng.normal(size=300)
    model = RidgeRewardModel(l2=2.0).fit(features, arms, rewards, 3)
    for arm in range(3):
        rows = arms == arm
        design = np.column_stack([np.ones(rows.sum()), features[rows]])
        weights = np.linalg.solve(design.T @ design + 2.0 * np.eye(5), design.T @ (rewards[rows] - rewards.mean()))
        np.testing.assert_allclose(model.coefficients_[arm], weights, rtol=1e-10)


def test_an_arm_without_rows_predicts_the_training_mean():
    features, arms, rewards = np.zeros((4, 1)), np.array([0, 0, 1, 1]), np.array([1.0, 1.0, 0.0, 0.0])
    model = RidgeRewardModel().fit(features, arms, rewards, 3)
    assert model.predict(np.zeros((1, 1)))[0, 2] == pytest.approx(0.5)


def test_cross_fitting_predicts_each_row_from_the_other_folds():
    """A huge reward on one row must not leak into that row's own prediction."""
    rng = np.random.default_rng(1)
    features, arms = rng.normal(size=(200, 2)), rng.integers(0, 2, 200)
    rewards = rng.normal(size=200)
    spiked = rewards.copy()
    spiked[17] = 1e6
    base = cross_fit_predictions(RidgeRewardModel(), features, arms, rewards, 2, np.random.default_rng(3))
    moved = cross_fit_predictions(RidgeRewardModel(), features, arms, spiked, 2, np.random.default_rng(3))
    assert np.allclose(moved[17], base[17])  # row 17 never sees its own reward
    assert np.abs(moved - base).max() > 1000  # the rows of the other folds do


def test_cross_fit_ridge_equals_refitting_on_the_other_folds():
    rng = np.random.default_rng(2)
    features, arms = rng.normal(size=(120, 3)), rng.integers(0, 3, 120)
    rewards = rng.normal(size=120)
    predictions = cross_fit_predictions(
        RidgeRewardModel(l2=0.5), features, arms, rewards, 3, np.random.default_rng(4), n_folds=4
    )
    folds = row_folds(draw_key(np.random.default_rng(4)), 0, 120, 4)  # the folds cross-fitting drew
    for fold in range(4):
        train = folds != fold
        model = RidgeRewardModel(l2=0.5).fit(features[train], arms[train], rewards[train], 3)
        np.testing.assert_allclose(predictions[folds == fold], model.predict(features[folds == fold]), rtol=1e-9)


def test_scikit_learn_regressor_and_classifier():
    sklearn = importlib.import_module("sklearn")
    from sklearn.linear_model import LinearRegression, LogisticRegression

    rng = np.random.default_rng(5)
    features, arms = rng.normal(size=(400, 2)), rng.integers(0, 2, 400)
    clicks = (rng.random(400) < 1 / (1 + np.exp(-features[:, 0] * (2 * arms - 1)))).astype(float)
    regression = cross_fit_predictions(LinearRegression(), features, arms, clicks, 2, np.random.default_rng(0))
    classifier = cross_fit_predictions(LogisticRegression(), features, arms, clicks, 2, np.random.default_rng(0))
    assert regression.shape == classifier.shape == (400, 2)
    assert classifier.min() >= 0 and classifier.max() <= 1
    # Arm 1 clicks when feature 0 is high, arm 0 when it is low: the classifier ranks rows accordingly.
    high = features[:, 0] > 1
    assert classifier[high, 1].mean() > classifier[high, 0].mean() + 0.3
    assert sklearn is not None


def test_an_arm_with_one_reward_value_predicts_that_constant():
    importlib.import_module("sklearn")
    from sklearn.linear_model import LogisticRegression

    features, arms = np.arange(40.0)[:, None], np.array([0, 1] * 20)
    rewards = np.where(arms == 0, 1.0, 0.0)
    predictions = cross_fit_predictions(LogisticRegression(), features, arms, rewards, 2, np.random.default_rng(0))
    assert predictions[:, 0].tolist() == [1.0] * 40 and predictions[:, 1].tolist() == [0.0] * 40


def test_bad_models_and_sizes():
    with pytest.raises(
        InvalidTypeError, match="reward_model must be a RidgeRewardModel, a CrossedRidgeRewardModel or an estimator"
    ):
        cross_fit_predictions(object(), np.zeros((4, 1)), np.zeros(4, int), np.zeros(4), 1, np.random.default_rng(0))
    with pytest.raises(InvalidParameterError, match="at least 2 logged rows"):
        cross_fit_predictions(
            RidgeRewardModel(), np.zeros((1, 1)), np.zeros(1, int), np.zeros(1), 1, np.random.default_rng(0)
        )
    with pytest.raises(InvalidParameterError, match="l2 must be in"):
        RidgeRewardModel(l2=0.0)


@given(n_rows=st.integers(1, 200), n_folds=st.integers(2, 9), cut=st.integers(0, 200), key=st.integers(0, 2**64 - 1))
@settings(max_examples=40, deadline=None)
def test_row_folds_are_balanced_and_chunks_reproduce_them(n_rows: int, n_folds: int, cut: int, key: int) -> None:
    folds = row_folds(key, 0, n_rows, n_folds)
    counts = np.bincount(folds, minlength=n_folds)
    assert folds.min() >= 0 and folds.max() < n_folds and counts.max() - counts.min() <= 1
    cut = min(cut, n_rows)
    assert np.array_equal(
        np.concatenate([row_folds(key, 0, cut, n_folds), row_folds(key, cut, n_rows - cut, n_folds)]), folds
    )

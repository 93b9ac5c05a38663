"""Reward models on action features: the crossed map, crossed ridge, any estimator, cross-fitting that holds out."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from banditkit.errors import InvalidParameterError, InvalidTypeError
from banditkit.ope import CrossedRidgeRewardModel, RidgeRewardModel, cross_fit_predictions, crossed_features, evaluate
from banditkit.ope.bootstrap import draw_key
from banditkit.ope.reward_model import row_folds

pytest.importorskip("sklearn")
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression, SGDClassifier, SGDRegressor
from sklearn.neighbors import KNeighborsRegressor

N_ARMS, N_ITEM = 6, 3


def problem(n_rows: int = 600, seed: int = 0) -> dict[str, np.ndarray]:
    """Contexts, arms, item features and rewards driven by a context x item interaction (the crossed map's term)."""
    rng = np.random.default_rng(seed)
    contexts = rng.normal(size=(n_rows, 2))
    items = rng.normal(size=(N_ARMS, N_ITEM))
    arms = rng.integers(0, N_ARMS, n_rows)
    signal = 0.5 + 0.3 * np.tanh(contexts @ np.array([[1.0, 0.0, -1.0], [0.0, 1.0, 0.5]]) @ items.T)  # (n, K)
    clicks = (rng.random(n_rows) < signal[np.arange(n_rows), arms]).astype(np.float64)
    return {"contexts": contexts, "items": items, "arms": arms, "clicks": clicks, "signal": signal}


class Memoriser:
    """Predicts the reward of a feature row it was trained on, and -1 for any row it never saw."""

    def fit(self, features, rewards):
        self.memory = {row.tobytes(): reward for row, reward in zip(features, rewards, strict=True)}
        return self

    def predict(self, features):
        return np.array([self.memory.get(row.tobytes(), -1.0) for row in features])


class NaNModel:
    def fit(self, features, rewards):
        return self

    def predict(self, features):
        out = np.zeros(features.shape[0])
        out[features.shape[0] // 2] = np.nan
        return out


def test_crossed_features_is_the_documented_map():
    rng = np.random.default_rng(1)
    contexts, items, arms = rng.normal(size=(7, 3)), rng.normal(size=(4, 2)), rng.integers(0, 4, 7)
    phi = crossed_features(contexts, arms, items, 4)
    for i in range(7):
        expected = np.concatenate(
            [contexts[i], np.eye(4)[arms[i]], items[arms[i]], np.outer(contexts[i], items[arms[i]]).ravel()]
        )
        np.testing.assert_array_equal(phi[i], expected)
    assert crossed_features(contexts, arms, None, 4).shape == (7, 3 + 4)  # no action features: [x, onehot(a)]


def test_crossed_ridge_matches_a_direct_solve_and_predicts_every_arm():
    data = problem()
    x, arms, clicks, items = data["contexts"], data["arms"], data["clicks"], data["items"]
    model = CrossedRidgeRewardModel(l2=2.0).fit(x, arms, clicks, items)
    design = np.column_stack([np.ones(len(arms)), crossed_features(x, arms, items, N_ARMS)])
    mean = clicks.mean()
    weights = np.linalg.solve(design.T @ design + 2.0 * np.eye(design.shape[1]), design.T @ (clicks - mean))
    np.testing.assert_allclose(model.coefficients_, weights, rtol=1e-9, atol=1e-12)
    predicted = model.predict(x[:5])  # factored prediction against the explicit design, arm by arm
    for arm in range(N_ARMS):
        rows = np.column_stack([np.ones(5), crossed_features(x[:5], np.full(5, arm), items, N_ARMS)])
        np.testing.assert_allclose(predicted[:, arm], rows @ weights + mean, rtol=1e-9)


def test_crossed_ridge_cross_fitting_equals_refitting_on_the_other_folds():
    data = problem(seed=2)
    x, arms, clicks, items = data["contexts"], data["arms"], data["clicks"], data["items"]
    predictions = cross_fit_predictions(
        CrossedRidgeRewardModel(l2=0.5), x, arms, clicks, N_ARMS, np.random.default_rng(4), 4, action_features=items
    )
    folds = row_folds(draw_key(np.random.default_rng(4)), 0, len(arms), 4)
    for fold in range(4):
        train = folds != fold
        model = CrossedRidgeRewardModel(l2=0.5).fit(x[train], arms[train], clicks[train], items)
        np.testing.assert_allclose(predictions[folds == fold], model.predict(x[folds == fold]), rtol=1e-9)


def test_crossed_ridge_learns_the_interaction_a_per_arm_model_gets_less_of():
    data = problem(n_rows=3000, seed=3)
    args = (data["contexts"], data["arms"], data["clicks"], N_ARMS, np.random.default_rng(0))
    crossed = cross_fit_predictions(CrossedRidgeRewardModel(), *args, action_features=data["items"])
    truth = data["signal"]
    assert np.corrcoef(crossed.ravel(), truth.ravel())[0, 1] > 0.8


@pytest.fixture(autouse=True)
def one_thread():
    """HistGradientBoosting's OpenMP threads crawl on a shared 2-core machine; one thread is steady."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1):
        yield


@pytest.mark.parametrize(
    ("model", "with_items"),
    [
        (LinearRegression(), True),
        (LinearRegression(), False),
        (LogisticRegression(), True),
        (LogisticRegression(), False),
        (HistGradientBoostingRegressor(max_iter=20, random_state=0), True),
    ],
    ids=["linear-crossed", "linear-per_arm", "logistic-crossed", "logistic-per_arm", "hist_gradient_boosting-crossed"],
)
def test_any_scikit_learn_regressor_or_classifier(model, with_items):
    data = problem(n_rows=1500, seed=4)
    items = data["items"] if with_items else None
    predictions = cross_fit_predictions(
        model, data["contexts"], data["arms"], data["clicks"], N_ARMS, np.random.default_rng(0), action_features=items
    )
    assert predictions.shape == (1500, N_ARMS) and np.isfinite(predictions).all()
    if isinstance(model, LogisticRegression):  # predict_proba: an expected click in [0, 1]
        assert predictions.min() >= 0 and predictions.max() <= 1
    assert np.corrcoef(predictions.ravel(), data["signal"].ravel())[0, 1] > 0.3  # it learned something


@pytest.mark.parametrize("with_items", [True, False], ids=["crossed", "per_arm"])
def test_cross_fitting_holds_out_a_memoriser_never_recalls_its_own_row(with_items):
    data = problem(n_rows=400, seed=5)
    x, arms, clicks = data["contexts"], data["arms"], data["clicks"]
    items = data["items"] if with_items else None
    rewards = np.random.default_rng(9).random(400)  # a distinct reward per row
    predictions = cross_fit_predictions(
        Memoriser(), x, arms, rewards, N_ARMS, np.random.default_rng(0), 5, action_features=items
    )
    logged = predictions[np.arange(400), arms]
    assert (logged == -1.0).all()  # no model ever saw its own row...
    features = x if items is None else crossed_features(x, arms, items, N_ARMS)
    in_sample = Memoriser().fit(features, rewards).predict(features)
    assert np.array_equal(in_sample, rewards)  # ...which it would have recalled exactly
    assert clicks.shape == (400,)


def test_cross_fitting_holds_out_nearest_neighbour():
    data = problem(n_rows=400, seed=6)
    x, arms, items = data["contexts"], data["arms"], data["items"]
    rewards = np.random.default_rng(10).random(400)
    predictions = cross_fit_predictions(
        KNeighborsRegressor(n_neighbors=1), x, arms, rewards, N_ARMS, np.random.default_rng(1), 5, action_features=items
    )
    logged = predictions[np.arange(400), arms]
    folds = row_folds(draw_key(np.random.default_rng(1)), 0, 400, 5)
    assert not np.isin(logged, rewards[folds == 0][:0]).any()
    for fold in range(5):  # every held-out prediction is the reward of a row of another fold
        held = folds == fold
        assert np.isin(logged[held], rewards[~held]).all()
        assert not np.isin(logged[held], rewards[held]).any()


def test_results_are_identical_with_a_fixed_seed():
    data = problem(n_rows=800, seed=7)
    log = {
        "arm": data["arms"],
        "reward": data["clicks"],
        "propensity": np.full(800, 1 / N_ARMS),
        "x0": data["contexts"][:, 0],
        "x1": data["contexts"][:, 1],
    }
    target = np.full((1, N_ARMS), 1 / N_ARMS)
    for model in (CrossedRidgeRewardModel(), HistGradientBoostingRegressor(max_iter=10, random_state=0)):
        first, second = (
            evaluate(
                log, target, ["dm", "dr"], reward_model=model, action_features=data["items"], n_bootstrap=50, rng=3
            )
            for _ in range(2)
        )
        for name in ("dm", "dr"):
            assert (first[name].value, first[name].low, first[name].high) == (
                second[name].value,
                second[name].low,
                second[name].high,
            )
        assert "crossed" in first.reward_model or "HistGradientBoostingRegressor for all arms" in first.reward_model
    other = evaluate(log, target, ["dm"], reward_model=model, action_features=data["items"], n_bootstrap=0, rng=4)
    assert other["dm"].value != first["dm"].value  # another seed, other folds


def test_evaluate_with_action_features_and_the_crossed_model_in_the_target_order():
    data = problem(n_rows=500, seed=8)
    names = [f"item{k}" for k in range(N_ARMS)]
    log = {
        "arm": np.array(names)[data["arms"]],
        "reward": data["clicks"],
        "propensity": np.full(500, 1 / N_ARMS),
        "x0": data["contexts"][:, 0],
        "x1": data["contexts"][:, 1],
    }
    target = np.full((1, N_ARMS), 1 / N_ARMS)
    options = dict(reward_model=CrossedRidgeRewardModel(), n_bootstrap=0, rng=0)
    report = evaluate(log, target, ["dm"], action_features=data["items"], **options)
    assert report.reward_model.startswith("crossed ridge for all arms (l2=1, 3 action features), 5-fold")
    direct = cross_fit_predictions(
        CrossedRidgeRewardModel(),
        data["contexts"],
        data["arms"],
        data["clicks"],
        N_ARMS,
        np.random.default_rng(0),
        action_features=data["items"],
    )
    assert report["dm"].value == pytest.approx(direct.mean(), rel=1e-12)  # uniform target: the mean prediction
    per_arm = evaluate(log, target, ["dm"], n_bootstrap=0, rng=0)
    assert per_arm.reward_model.startswith("ridge per arm") and per_arm["dm"].value != report["dm"].value
    # A target whose arms come in another order gets the items' rows in its order, by name.
    bandit = __import__("banditkit").Bandit(names[::-1], policy="thompson")
    reordered = evaluate(log, bandit, ["dm"], action_features=data["items"], **options)
    assert reordered["dm"].value == pytest.approx(report["dm"].value, rel=1e-9)
    both = evaluate(log, {"a": target, "b": np.eye(N_ARMS)[[0]]}, ["dm"], action_features=data["items"], **options)
    assert both["a"]["dm"].value == report["dm"].value


def test_action_features_need_a_model_that_uses_them():
    data = problem(n_rows=100, seed=11)
    log = {"arm": data["arms"], "reward": data["clicks"], "propensity": np.full(100, 1 / N_ARMS)}
    for model, named in ((None, "the default reward model"), (RidgeRewardModel(), "RidgeRewardModel")):
        with pytest.raises(
            InvalidParameterError, match=f"action_features need a reward model that uses them, and {named}"
        ):
            evaluate(log, np.full((1, N_ARMS), 1 / N_ARMS), ["dr"], reward_model=model, action_features=data["items"])


def test_bad_models_and_action_features_are_named():
    data = problem(n_rows=100, seed=9)
    args = (data["contexts"], data["arms"], data["clicks"], N_ARMS, np.random.default_rng(0))
    for bad in (object(), "ridge", type("FitOnly", (), {"fit": lambda self, x, y: self})()):
        with pytest.raises(TypeError, match="reward_model must be") as error:
            cross_fit_predictions(bad, *args)
        assert isinstance(error.value, InvalidTypeError)
    log = {"arm": data["arms"], "reward": data["clicks"], "propensity": np.full(100, 1 / N_ARMS)}
    with pytest.raises(TypeError, match=r"reward_model must be .*\(F\), which has no fit"):
        evaluate(log, np.full((1, N_ARMS), 1 / N_ARMS), ["dr"], reward_model=type("F", (), {"fit": None})())
    for items in (None, data["items"]):
        with pytest.raises(InvalidParameterError, match="reward_model NaNModel predicted a non-finite reward"):
            cross_fit_predictions(NaNModel(), *args, action_features=items)
    with pytest.raises(InvalidParameterError, match=r"action_features must have shape \(K, m\) with a row per arm"):
        cross_fit_predictions(CrossedRidgeRewardModel(), *args, action_features=np.zeros((N_ARMS - 1, 2)))
    items = data["items"].copy()
    items[2, 1] = np.inf
    with pytest.raises(InvalidParameterError, match="action_features must be finite, got inf at arm 2, column 1"):
        evaluate(log, np.full((1, N_ARMS), 1 / N_ARMS), ["dm"], reward_model=LinearRegression(), action_features=items)


def test_duck_typed_models_never_import_scikit_learn():
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        import banditkit.ope as ope

        class Mean:
            def fit(self, x, y):
                self.mean = float(np.mean(y))
                return self

            def predict(self, x):
                return np.full(x.shape[0], self.mean)

        rng = np.random.default_rng(0)
        arms, rewards = rng.integers(0, 3, 60), rng.random(60)
        items = rng.normal(size=(3, 2))
        for z in (None, items):
            ope.cross_fit_predictions(Mean(), rng.normal(size=(60, 2)), arms, rewards, 3, rng, action_features=z)
        ope.cross_fit_predictions(ope.CrossedRidgeRewardModel(), None, arms, rewards, 3, rng, action_features=items)
        assert "sklearn" not in sys.modules, "scikit-learn was imported"
        print("ok")
        """
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_streamed_crossed_ridge_is_exact_and_partial_fit_models_stream(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    data = problem(n_rows=900, seed=10)
    table = pa.table(
        {
            "arm": data["arms"],
            "reward": data["clicks"],
            "propensity": np.full(900, 1 / N_ARMS),
            "x0": data["contexts"][:, 0],
            "x1": data["contexts"][:, 1],
        }
    )
    path = tmp_path / "log.parquet"
    pq.write_table(table, path)
    target = np.full((1, N_ARMS), 1 / N_ARMS)
    options = dict(reward_model=CrossedRidgeRewardModel(), action_features=data["items"], n_bootstrap=100, rng=2)
    streamed = evaluate(path, target, ["dm", "dr"], chunk_rows=250, **options)
    in_memory = evaluate(path, target, ["dm", "dr"], **options)
    for name in ("dm", "dr"):
        np.testing.assert_allclose(streamed[name].value, in_memory[name].value, rtol=1e-9)
    assert "crossed ridge" in streamed.reward_model and "exact, as in memory" in streamed.reward_model
    for model in (SGDRegressor(random_state=0), SGDClassifier(loss="log_loss", random_state=0)):
        for items in (data["items"], None):
            report = evaluate(
                path, target, ["dm"], reward_model=model, action_features=items, chunk_rows=250, n_bootstrap=0
            )
            assert np.isfinite(report["dm"].value) and "by partial_fit in one pass" in report.reward_model
    assert 0 <= report["dm"].value <= 1  # the classifier's expected click


def test_every_arm_is_predicted_the_same_in_small_blocks():
    from banditkit.ope.reward_model import predict_every_arm

    data = problem(n_rows=300, seed=12)
    x, items = data["contexts"], data["items"]
    fitted = LinearRegression().fit(crossed_features(x, data["arms"], items, N_ARMS), data["clicks"])
    whole = predict_every_arm(fitted, x, items)
    np.testing.assert_allclose(predict_every_arm(fitted, x, items, block_pairs=7), whole, rtol=1e-12)
    for arm in range(N_ARMS):  # each column is the model on that arm's crossed features
        expected = fitted.predict(crossed_features(x, np.full(300, arm), items, N_ARMS))
        np.testing.assert_allclose(whole[:, arm], expected, rtol=1e-12)

"""Targets: a Bandit, a bare policy, deterministic actions, explicit (n, K) and (n, K, L) arrays."""

from __future__ import annotations

import numpy as np
import pytest

import banditkit as bk
from banditkit.errors import InvalidParameterError, UnknownArmError
from banditkit.ope import evaluate, load_log
from banditkit.ope.targets import resolve_target


def named_log():
    return load_log(
        {"arm": ["blue", "red", "blue", "green"], "reward": [1.0, 0.0, 1.0, 0.0], "propensity": [0.25, 0.5, 0.25, 0.25]}
    )


def test_bandit_target_is_mapped_by_arm_name():
    bandit = bk.Bandit(["red", "green", "blue"], policy="epsilon_greedy", seed=1)
    bandit.update_many(["blue"] * 20 + ["red"] * 20, [1.0] * 20 + [0.0] * 20)
    log = named_log()  # arm_names sorted: blue, green, red
    rows = resolve_target(bandit, log)
    assert rows.arm_names == ("red", "green", "blue")
    assert rows.arms.tolist() == [2, 0, 2, 1]
    expected = bandit.probabilities_many(n=4)
    np.testing.assert_allclose(rows.probabilities, expected)
    report = evaluate(log, bandit, ["ips"], n_bootstrap=0)
    weights = expected[0, [2, 0, 2, 1]] / np.array([0.25, 0.5, 0.25, 0.25])
    assert report["ips"].value == pytest.approx(np.mean(weights * [1.0, 0.0, 1.0, 0.0]))


def test_bandit_without_a_logged_arm_is_an_error():
    bandit = bk.Bandit(["red", "green"], seed=0)
    with pytest.raises(UnknownArmError, match="logged arm 'blue' is not an arm of the target bandit"):
        resolve_target(bandit, named_log())


def test_policy_target_uses_its_prior_state():
    log = load_log({"arm": [0, 1, 2], "reward": [1.0, 0.0, 1.0], "propensity": [1 / 3] * 3})
    rows = resolve_target(bk.make_policy("ucb1"), log)
    np.testing.assert_allclose(rows.probabilities.sum(axis=1), 1.0)
    assert rows.probabilities.shape == (3, 3)


def test_deterministic_actions_and_callables():
    log = load_log({"arm": [0, 1, 1], "reward": [1.0, 0.0, 1.0], "propensity": [0.5] * 3, "x0": [0.0, 1.0, 2.0]})
    by_array = resolve_target(np.array([0, 1, 0]), log)
    by_callable = resolve_target(lambda contexts, n: (contexts[:, 0] > 0.5).astype(int), log)
    assert by_array.probabilities.tolist() == [[1, 0], [0, 1], [1, 0]]
    assert by_callable.probabilities.tolist() == [[1, 0], [0, 1], [0, 1]]
    report = evaluate(log, np.array([0, 1, 0]), ["replay", "ips"], n_bootstrap=0)
    assert report["replay"].value == 0.5 and report["ips"].value == pytest.approx((2 + 0 + 0) / 3)


def test_position_based_target_is_read_at_each_rows_position():
    log = load_log(
        {"arm": [0, 1, 1, 0], "reward": [1.0, 1.0, 0.0, 0.0], "propensity": [0.5] * 4, "position": [0, 0, 1, 1]}
    )
    per_position = np.array([[[0.9, 0.2], [0.1, 0.8]]])  # (1, K=2, L=2): column l is position l
    rows = resolve_target(per_position, log)
    assert rows.probabilities.tolist() == [[0.9, 0.1], [0.9, 0.1], [0.2, 0.8], [0.2, 0.8]]
    report = evaluate(log, per_position, ["ips"], n_bootstrap=50)
    assert report["ips"].value == pytest.approx((1.8 + 0.2) / 4)
    assert report.by_position[0]["ips"].value == pytest.approx((1.8 + 0.2) / 2)
    assert report.by_position[1]["ips"].value == 0.0
    assert [row["position"] for row in report.rows()] == ["all", 0, 1]


TARGET_ERRORS = [
    (np.array([[0.5, 0.6]]), "target probabilities must sum to 1 over arms, got 1.1 at row 0"),
    (np.array([[1.5, -0.5]]), "target probabilities must be finite and >= 0"),
    (np.ones((2, 3)) / 3, "target probabilities must have 3 (or 1) rows and 2 arms, got shape (2, 3)"),
    (np.array([0, 1]), "deterministic target actions must have shape (3,), got (2,)"),
    (np.array([0, 1, 7]), "deterministic target actions must be arm indices in [0, 2), got 7"),
    (np.ones((1, 2, 2)) / 2, "target probabilities must have shape (n, K), got (1, 2, 2)"),
]


@pytest.mark.parametrize(("target", "message"), TARGET_ERRORS)
def test_bad_targets(target, message):
    log = load_log({"arm": [0, 1, 1], "reward": [1.0, 0.0, 1.0], "propensity": [0.5] * 3})
    with pytest.raises(InvalidParameterError) as error:
        resolve_target(target, log)
    assert message in str(error.value)


def test_position_log_needs_a_per_position_target():
    log = load_log({"arm": [0, 1], "reward": [1.0, 0.0], "propensity": [0.5] * 2, "position": [0, 1]})
    with pytest.raises(InvalidParameterError, match=r"give the target per position, shape \(n, K, 2\)"):
        resolve_target(np.array([[0.5, 0.5]]), log)
    with pytest.raises(InvalidParameterError, match="chooses one arm per decision"):
        resolve_target(bk.Bandit(["0", "1"], seed=0), log)


def test_replay_refuses_a_non_uniform_log():
    log = load_log({"arm": [0, 1], "reward": [1.0, 0.0], "propensity": [0.5, 0.25]})
    with pytest.raises(InvalidParameterError, match="replay needs a log from a uniform-random policy"):
        evaluate(log, np.array([[0.5, 0.5]]), ["replay"])
    assert "replay" not in evaluate(log, np.array([[0.5, 0.5]]), n_bootstrap=0)


def test_contextual_bandit_target_on_the_service_export(tmp_path):
    from .conftest import make_problem, service_rows
    from .test_logs import write_csv

    rng = np.random.default_rng(12)
    problem = make_problem(rng, n=500)
    write_csv(tmp_path / "log.csv", service_rows(problem, rng))
    bandit = bk.Bandit(["gold", "blue", "green", "red"], policy="linucb", n_features=3, seed=0)
    bandit.update_many(rng.integers(0, 4, 200), rng.random(200), contexts=rng.normal(size=(200, 3)))
    log = load_log(tmp_path / "log.csv")
    rows = resolve_target(bandit, log)
    np.testing.assert_allclose(rows.probabilities, bandit.probabilities_many(contexts=log.contexts))
    assert [rows.arm_names[i] for i in rows.arms] == [log.arm_names[i] for i in log.arms]
    report = evaluate(log, bandit, ["snips", "dr"], n_bootstrap=100)
    assert report["dr"].low <= report["dr"].high


def test_contextual_target_needs_a_context():
    bandit = bk.Bandit(["a", "b"], policy="linucb", n_features=2, seed=0)
    log = load_log({"arm": ["a", "b"], "reward": [1.0, 0.0], "propensity": [0.5, 0.5]})
    with pytest.raises(InvalidParameterError, match="target bandit is contextual but the log has no context"):
        resolve_target(bandit, log)

"""Environments: validation, reward laws, schedules, and per-replication streams."""
# The invalid-input table passes wrong types on purpose: the runtime checks must refuse them.
# mypy: disable-error-code="arg-type, list-item"

from __future__ import annotations

import numpy as np
import pytest

from banditkit.errors import InvalidParameterError, InvalidTypeError
from banditkit.sim import (
    Adversarial,
    Bernoulli,
    Delayed,
    Gaussian,
    LinearContextual,
    LogisticContextual,
    NonStationary,
    environment_seed,
    random_coefficients,
)
from banditkit.sim.environments import bernoulli_kl


def rngs(count: int, seed: int = 0) -> list[np.random.Generator]:
    return [np.random.default_rng(environment_seed(seed, r)) for r in range(count)]


INVALID = [
    (
        lambda: Bernoulli([0.2, 1.5]),
        InvalidParameterError,
        "means must be finite and in [0.0, 1.0], got 1.5 at position 1",
    ),
    (lambda: Bernoulli([]), InvalidParameterError, "means must be a non-empty 1-d array"),
    (lambda: Bernoulli([0.1, float("nan")]), InvalidParameterError, "got nan at position 1"),
    (lambda: Bernoulli(["a"]), InvalidTypeError, "means must be numbers"),
    (lambda: Gaussian([0.0, 1.0], sigma=0.0), InvalidParameterError, "sigma must be in (0.0, inf]"),
    (lambda: Gaussian([0.0, 1.0], sigma=[1.0]), InvalidParameterError, "sigma must have one value per arm (2)"),
    (lambda: NonStationary([[0.1, 0.2]], times=[5]), InvalidParameterError, "times must start at 0"),
    (lambda: NonStationary([[0.1], [0.2]], times=[0]), InvalidParameterError, "one step per row of means (2)"),
    (lambda: NonStationary([[0.1], [0.2]], times=[0, 10], drift="yes"), InvalidTypeError, "drift must be"),
    (lambda: Adversarial([[1.0, 0.0]], repeat=0), InvalidParameterError, "repeat must be in [1"),
    (lambda: LinearContextual([[1.0, 0.0]], noise_sigma=-1.0), InvalidParameterError, "noise_sigma must be in"),
    (lambda: LogisticContextual([1.0, 0.0]), InvalidParameterError, "coefficients must be a non-empty 2-d array"),
    (lambda: Delayed(Bernoulli([0.5]), delay=1, batch=3), InvalidParameterError, "exactly one of"),
    (lambda: Delayed(Bernoulli([0.5])), InvalidParameterError, "exactly one of"),
    (lambda: Delayed(Bernoulli([0.5]), delay=-1), InvalidParameterError, "delay must be in [0"),
    (lambda: Delayed(Bernoulli([0.5]), mean_delay=0.0), InvalidParameterError, "mean_delay must be in (0.0"),
]


@pytest.mark.parametrize("build, error, message", INVALID)
def test_invalid_parameters_are_named(build, error, message):
    with pytest.raises(error) as caught:
        build()
    assert message in str(caught.value)


def test_bernoulli_rewards_follow_the_means_with_one_shared_uniform():
    env = Bernoulli([0.1, 0.5, 0.9])
    chunk = env.draw(rngs(400), 0, 250)
    rewards = np.stack(
        [
            env.rewards(chunk, s, np.full(400, arm), env.expected_rewards(chunk, s))
            for s in range(250)
            for arm in range(3)
        ]
    ).reshape(250, 3, 400)
    # Common random numbers: a better arm pays whenever a worse one does.
    assert np.all(rewards[:, 0] <= rewards[:, 1]) and np.all(rewards[:, 1] <= rewards[:, 2])
    # 100,000 draws per arm: the standard error is at most 0.0016; 5 sigma is 0.008.
    np.testing.assert_allclose(rewards.mean(axis=(0, 2)), [0.1, 0.5, 0.9], atol=0.008)


def test_gaussian_rewards_have_the_stated_mean_and_noise():
    env = Gaussian([0.0, 2.0], sigma=[1.0, 0.5])
    chunk = env.draw(rngs(200), 0, 500)
    rewards = np.stack(
        [env.rewards(chunk, s, np.ones(200, dtype=int), env.expected_rewards(chunk, s)) for s in range(500)]
    )
    assert abs(rewards.mean() - 2.0) < 5 * 0.5 / np.sqrt(rewards.size)
    assert abs(rewards.std() - 0.5) < 0.01


def test_lai_robbins_constant_matches_the_formula():
    means = np.array([0.5, 0.4, 0.45])
    expected = 0.1 / bernoulli_kl(0.4, 0.5) + 0.05 / bernoulli_kl(0.45, 0.5)
    assert Bernoulli(means).lower_bound_constant() == pytest.approx(float(expected), rel=1e-12)
    assert bernoulli_kl(np.array([0.4]), 0.5)[0] == pytest.approx(0.4 * np.log(0.8) + 0.6 * np.log(1.2))
    assert Bernoulli([0.3, 0.3]).lower_bound_constant() == 0.0
    assert Bernoulli([1.0, 0.2]).lower_bound_constant() is None
    assert Gaussian([0.0, 1.0]).lower_bound_constant() is None


def test_replication_streams_do_not_depend_on_how_many_replications_run():
    env = LinearContextual(random_coefficients(3, 2, seed=4))
    few, many = env.draw(rngs(2), 0, 30), env.draw(rngs(5), 0, 30)
    for key in few.arrays:
        np.testing.assert_array_equal(few.arrays[key], many.arrays[key][:, :2])


def test_non_stationary_abrupt_schedule_switches_at_change_points():
    env = NonStationary([[0.9, 0.1], [0.2, 0.8], [0.5, 0.6]], times=[0, 10, 20])
    steps = np.array([0, 9, 10, 19, 20, 1000])
    np.testing.assert_array_equal(env.means_at(steps)[:, 0], [0.9, 0.9, 0.2, 0.2, 0.5, 0.5])
    chunk = env.draw(rngs(1), 8, 4)
    assert env.expected_rewards(chunk, 2).tolist() == [[0.2, 0.8]]


def test_adversarial_table_repeats_rows_and_measures_against_the_best_fixed_arm():
    env = Adversarial([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], repeat=2)
    chunk = env.draw(rngs(3), 0, 6)
    expected = env.expected_rewards(chunk, 2)
    assert expected.tolist() == [[0.0, 1.0]]
    assert env.reference_rewards(env.expected_rewards(chunk, 0)).tolist() == [0.0]
    env.check_horizon(6)
    with pytest.raises(InvalidParameterError, match=r"horizon must equal the adversarial table's length \(6"):
        env.check_horizon(7)


def test_logistic_probabilities_stay_finite_for_huge_scores():
    env = LogisticContextual([[1e6, 0.0], [-1e6, 0.0]])
    chunk = env.draw(rngs(4), 0, 3)
    expected = env.expected_rewards(chunk, 0)
    assert np.all(np.isfinite(expected)) and np.all((expected >= 0) & (expected <= 1))
    assert env.contexts(chunk, 0).shape == (4, 2)


def test_geometric_delays_have_the_requested_mean():
    env = Delayed(Bernoulli([0.5, 0.5]), mean_delay=4.0)
    chunk = env.draw(rngs(100), 0, 1000)
    delays = chunk.arrays["delay"]
    assert delays.min() >= 0
    # Geometric with mean 4 has sd sqrt(20); 100,000 draws give a standard error of 0.014.
    assert abs(delays.mean() - 4.0) < 0.07


def test_describe_round_trips_through_the_constructor():
    env = NonStationary([[0.9, 0.1], [0.1, 0.9]], times=[0, 100], drift=True)
    description = env.describe()
    assert description.pop("kind") == "non_stationary"
    assert NonStationary(**description).describe() == env.describe()

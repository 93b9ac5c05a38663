"""Per-position distribution of a Thompson ranker: exact quadrature against closed forms and Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest

from banditkit.errors import InvalidParameterError
from banditkit.ope import thompson_ranking_distribution
from banditkit.policies._maxprob import BetaPosteriors, max_probabilities


def test_two_uniform_items_split_evenly():
    result = thompson_ranking_distribution([1.0, 1.0], [1.0, 1.0], 2)
    np.testing.assert_allclose(result.probabilities, 0.5, atol=1e-12)
    assert result.method == "exact" and not result.standard_error.any()


def test_closed_form_for_three_items():
    # theta ~ Beta(2,1), U(0,1), Beta(1,2): P(first is top) = 3/5, P(third is top) = 1/10, by integration.
    result = thompson_ranking_distribution([2.0, 1.0, 1.0], [1.0, 1.0, 2.0], 3)
    np.testing.assert_allclose(result.probabilities[:, 0], [0.6, 0.3, 0.1], atol=1e-9)
    np.testing.assert_allclose(result.probabilities[:, 2], [0.1, 0.3, 0.6], atol=1e-9)  # by symmetry
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-9)  # L = K: a permutation


def test_first_position_equals_the_single_choice_propensity():
    rng = np.random.default_rng(0)
    alpha, beta = rng.uniform(1, 60, 12), rng.uniform(1, 900, 12)
    ranked = thompson_ranking_distribution(alpha, beta, 3).probabilities[:, 0]
    single = max_probabilities(BetaPosteriors(alpha[None], beta[None]), np.ones((1, 12), bool))[0]
    np.testing.assert_allclose(ranked, single, atol=1e-8)


@pytest.mark.slow
def test_exact_agrees_with_monte_carlo_on_the_zozotown_prior(obd_dir):
    import json

    prior = json.loads((obd_dir / "bts_prior_all.json").read_text())
    exact = thompson_ranking_distribution(prior["alpha"], prior["beta"], 3)
    monte_carlo = thompson_ranking_distribution(
        prior["alpha"], prior["beta"], 3, method="monte_carlo", rng=np.random.default_rng(5), n_draws=100_000
    )
    # 240 probabilities; 4.5 standard errors keeps the family-wise false alarm rate below 0.2%.
    tolerance = 4.5 * np.maximum(monte_carlo.standard_error, 1 / 100_000)
    assert np.all(np.abs(exact.probabilities - monte_carlo.probabilities) <= tolerance)
    np.testing.assert_allclose(exact.probabilities.sum(axis=0), 1.0, atol=1e-12)
    assert monte_carlo.n_draws == 100_000 and exact.for_rows(5).shape == (5, 80, 3)


def test_monte_carlo_is_seeded():
    first = thompson_ranking_distribution(
        [3, 2, 1], [1, 2, 3], 2, method="monte_carlo", rng=np.random.default_rng(1), n_draws=1000
    )
    again = thompson_ranking_distribution(
        [3, 2, 1], [1, 2, 3], 2, method="monte_carlo", rng=np.random.default_rng(1), n_draws=1000
    )
    assert np.array_equal(first.probabilities, again.probabilities)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([1.0, 0.0], [1.0, 1.0], 1), "alpha must be finite and > 0"),
        (([1.0, 1.0], [1.0], 1), "alpha and beta must be 1-d of one length"),
        (([1.0, 1.0], [1.0, 1.0], 3), "n_positions must be in [1, 2], got 3"),
    ],
)
def test_bad_parameters(args, message):
    with pytest.raises(InvalidParameterError) as error:
        thompson_ranking_distribution(*args)
    assert message in str(error.value)


def test_monte_carlo_needs_a_generator():
    with pytest.raises(InvalidParameterError, match=r"needs rng=numpy\.random\.Generator"):
        thompson_ranking_distribution([1, 1], [1, 1], 1, method="monte_carlo")

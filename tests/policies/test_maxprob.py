"""P(arm is the posterior max) by quadrature, checked against scipy's adaptive quadrature in x and in each arm's
probability scale."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special
from scipy import stats as distributions

import banditkit as bk
from banditkit.policies._maxprob import BetaPosteriors, StudentPosteriors, max_probabilities

BETA_CASES = {
    "flat-equal": ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]),
    "moderate": ([2.0, 5.0, 3.0, 1.0], [3.0, 2.0, 8.0, 1.0]),
    "peaked-close": ([1e5, 1.0005e5, 1.001e5], [1e5, 1e5, 1e5]),
    "peaked-and-flat": ([1e5 + 300, 1e5, 5.0], [1e5, 1e5 + 300, 5.0]),
    "peaked-far-apart": ([2e5, 1e5, 3e4], [1e5, 2e5, 3e4]),
    "one-dominant": ([900.0, 100.0, 2.0], [100.0, 900.0, 2.0]),
    "jeffreys": ([0.5, 0.5, 3.0], [0.5, 2.0, 1.5]),
    "jeffreys-against-exact": ([0.5, 1.0, 2.0], [0.5, 3.0, 1.0]),
}

STUDENT_CASES = {
    "heavy-tails": ([0.0, 0.1, -0.2], [1.0, 0.5, 2.0], [2.02, 5.0, 10.0]),
    "equal": ([0.3, 0.3, 0.3, 0.3], [1.0, 1.0, 1.0, 1.0], [4.0, 4.0, 4.0, 4.0]),
    "peaked-close": ([5.0, 5.001, 4.999], [1e-3, 1e-3, 2e-3], [2e5, 2e5, 1e5]),
    "huge-locations": ([1e12, 1e12 + 3e5], [1e5, 2e5], [50.0, 8.0]),
    # Outer quantiles 1e11 (Cauchy) and 1e23 (half a degree of freedom) scales away: before the panel widths'
    # floor followed the arm's own core, one panel spanned the core and the probabilities were off by 0.06.
    "cauchy": ([0.0, 1.0, 0.4], [1.0, 1.0, 3.0], [1.0, 1.0, 1.0]),
}


class ReferenceBeta:
    """Beta(a, b) density and CDF for the reference integral, support [0, 1]."""

    def __init__(self, a: float, b: float):
        self.a, self.b = a, b
        self.log_norm = special.betaln(a, b)
        self.low, self.high = 0.0, 1.0
        self.points = [float(distributions.beta.ppf(q, a, b)) for q in (1e-6, 0.01, 0.25, 0.5, 0.75, 0.99)]

    def pdf(self, x: float) -> float:
        if x <= 0.0 or x >= 1.0:
            return 0.0
        return math.exp((self.a - 1) * math.log(x) + (self.b - 1) * math.log1p(-x) - self.log_norm)

    def cdf(self, x: float) -> float:
        return float(special.betainc(self.a, self.b, x))


class ReferenceStudent:
    """Location-scale Student-t density and CDF for the reference integral."""

    def __init__(self, loc: float, scale: float, dof: float):
        self.frozen = distributions.t(dof, loc=loc, scale=scale)
        self.loc, self.scale, self.dof = loc, scale, dof
        self.log_norm = (
            special.gammaln((dof + 1) / 2) - special.gammaln(dof / 2) - 0.5 * math.log(dof * math.pi) - math.log(scale)
        )
        self.low, self.high = float(self.frozen.ppf(1e-14)), float(self.frozen.isf(1e-14))
        self.points = [float(self.frozen.ppf(q)) for q in (1e-6, 0.01, 0.25, 0.5, 0.75, 0.99, 1 - 1e-6)]

    def pdf(self, x: float) -> float:
        z = (x - self.loc) / self.scale
        return math.exp(self.log_norm - (self.dof + 1) / 2 * math.log1p(z * z / self.dof))

    def cdf(self, x: float) -> float:
        return float(special.stdtr(self.dof, (x - self.loc) / self.scale))


def quad_max_probabilities(arms, allowed) -> np.ndarray:
    """q_k = integral f_k(x) prod_{j != k} F_j(x) dx over allowed arms, by scipy.integrate.quad."""
    result = np.zeros(len(arms))
    for k in np.flatnonzero(allowed):
        others = [arms[j] for j in np.flatnonzero(allowed) if j != k]
        low, high = arms[k].low, arms[k].high
        breaks = sorted({point for arm in arms for point in arm.points if low < point < high})

        def integrand(x, k=k, others=others):
            value = arms[k].pdf(x)
            for other in others:
                value *= other.cdf(x)
            return value

        value, _ = integrate.quad(integrand, low, high, points=breaks, limit=500, epsabs=1e-13, epsrel=1e-11)
        result[k] = value
    return result


_U_BREAKS = [1e-12, 1e-9, 1e-6, 1e-3, 0.1]


def _in_probability_scale(others_below) -> float:
    """q_k = integral over u of P(every other draw <= arm k's u-quantile): bounded and monotone in u.

    ``others_below(u, upper)`` is that probability at the u-quantile, or at the (1 - u)-quantile when
    ``upper``, so both halves are integrated from their own tail.
    """
    return sum(
        integrate.quad(others_below, 0.0, 0.5, args=(upper,), points=_U_BREAKS, limit=200, epsabs=1e-13, epsrel=1e-10)[
            0
        ]
        for upper in (False, True)
    )


def beta_probability_scale(alpha: np.ndarray, beta: np.ndarray, k: int) -> float:
    """q_k for Beta posteriors; the upper half from 1 - x of the mirror Beta(beta, alpha), keeping mass next to 1."""
    others = np.arange(alpha.size) != k

    def others_below(u, upper):
        if upper:
            distance_to_one = special.betaincinv(beta[k], alpha[k], u)
            return np.prod(1.0 - special.betainc(beta[others], alpha[others], distance_to_one))
        return np.prod(special.betainc(alpha[others], beta[others], special.betaincinv(alpha[k], beta[k], u)))

    return _in_probability_scale(others_below)


def student_probability_scale(loc: np.ndarray, scale: np.ndarray, dof: np.ndarray, k: int) -> float:
    """q_k for location-scale Student-t posteriors."""
    others = np.arange(loc.size) != k

    def others_below(u, upper):
        x = loc[k] + (-1.0 if upper else 1.0) * scale[k] * special.stdtrit(dof[k], u)
        return np.prod(special.stdtr(dof[others], (x - loc[others]) / scale[others]))

    return _in_probability_scale(others_below)


def _masks(n_arms: int) -> list[np.ndarray]:
    masks = [np.ones(n_arms, dtype=bool)]
    dropped_first = np.ones(n_arms, dtype=bool)
    dropped_first[0] = False
    masks.append(dropped_first)
    only_last = np.zeros(n_arms, dtype=bool)
    only_last[-1] = True
    masks.append(only_last)
    return masks


@pytest.mark.parametrize("case", sorted(BETA_CASES))
def test_beta_max_probabilities_match_adaptive_quadrature(case):
    alpha, beta = (np.array(values) for values in BETA_CASES[case])
    arms = [ReferenceBeta(a, b) for a, b in zip(alpha, beta, strict=True)]
    for mask in _masks(len(alpha)):
        computed = max_probabilities(BetaPosteriors(alpha[None], beta[None]), mask[None])[0]
        np.testing.assert_allclose(computed, quad_max_probabilities(arms, mask), rtol=0, atol=1e-6)
        assert computed.sum() == pytest.approx(1.0, abs=1e-12)
        assert (computed[~mask] == 0).all()


FAR_BELOW_ONE_CASES = {
    "mixed": ([0.2, 0.5, 0.3], [0.3, 0.5, 4.0]),
    "tenth": ([0.1, 2.0, 1.0], [0.1, 2.0, 1.0]),
}


def test_identical_jeffreys_posteriors_are_not_nan():
    """Beta(0.5, 0.5) quantiles round to 0 and 1; the infinite density there must not give NaN."""
    mask = np.ones((1, 3), dtype=bool)
    np.testing.assert_allclose(
        max_probabilities(BetaPosteriors(np.full((1, 3), 0.5), np.full((1, 3), 0.5)), mask)[0],
        [1 / 3] * 3,
        rtol=0,
        atol=1e-9,
    )
    bandit = bk.Bandit(["a", "b"], policy=bk.ThompsonSampling(prior_alpha=0.5, prior_beta=0.5), seed=0)
    assert bandit.select().propensity == pytest.approx(0.5, abs=1e-9)
    bandit.update("a", 1.0)
    assert np.isfinite(list(bandit.probabilities().values())).all()


@pytest.mark.parametrize("case", sorted(FAR_BELOW_ONE_CASES))
def test_beta_parameters_far_below_one(case):
    alpha, beta = (np.array(values) for values in FAR_BELOW_ONE_CASES[case])
    mask = np.ones(3, dtype=bool)
    computed = max_probabilities(BetaPosteriors(alpha[None], beta[None]), mask[None])[0]
    # Reference with the algebraic endpoint weight x^(a-1) (1-x)^(b-1) handled exactly by QUADPACK.
    reference = []
    for k in range(3):

        def others(x, k=k):
            return np.prod([special.betainc(alpha[j], beta[j], x) for j in range(3) if j != k]) / special.beta(
                alpha[k], beta[k]
            )

        reference.append(
            integrate.quad(others, 0.0, 1.0, weight="alg", wvar=(alpha[k] - 1, beta[k] - 1), limit=500, epsabs=1e-14)[0]
        )
    np.testing.assert_allclose(computed, reference, rtol=0, atol=1e-6)


SMALL_PARAMETER_CASES = {
    **FAR_BELOW_ONE_CASES,
    "next-to-one": ([1.0, 2.0, 5.0], [0.3, 0.2, 0.5]),
    "twentieth": ([0.05, 1.0, 0.5], [0.05, 1.0, 0.5]),
    # Beta(1, 0.1) holds 2.5% of its mass within 1e-16 of 1, where x itself rounds to 1.
    "mass-next-to-one": ([1.0, 3.0, 0.5, 2.0], [0.1, 0.5, 0.5, 0.15]),
    "peaked-beside-small": ([200.0, 0.1, 1.0], [100.0, 0.1, 1.0]),
}


@pytest.mark.parametrize("case", sorted(SMALL_PARAMETER_CASES))
def test_small_beta_parameters_match_the_probability_scale_integral(case):
    alpha, beta = (np.array(values) for values in SMALL_PARAMETER_CASES[case])
    computed = max_probabilities(BetaPosteriors(alpha[None], beta[None]), np.ones((1, alpha.size), bool))[0]
    reference = [beta_probability_scale(alpha, beta, k) for k in range(alpha.size)]
    np.testing.assert_allclose(computed, reference, rtol=0, atol=1e-9)


def _most_median_and_least_probable(probabilities: np.ndarray) -> list[int]:
    order = np.argsort(probabilities)
    return [int(order[-1]), int(order[order.size // 2]), int(order[0])]


def test_a_thousand_distinct_beta_posteriors():
    """Overlapping posteriors of 0 to 50 fractional pulls: the max is far sharper than any arm."""
    rng = np.random.default_rng(0)
    pulls, rate = rng.uniform(0.0, 50.0, 1000), rng.uniform(0.2, 0.7, 1000)
    alpha, beta = 1.0 + pulls * rate, 1.0 + pulls * (1.0 - rate)
    computed = max_probabilities(BetaPosteriors(alpha[None], beta[None]), np.ones((1, 1000), bool))[0]
    assert computed.sum() == pytest.approx(1.0, abs=1e-12)
    for k in _most_median_and_least_probable(computed):
        assert computed[k] == pytest.approx(beta_probability_scale(alpha, beta, k), abs=1e-10)


@pytest.mark.parametrize("shift, scale", [(1.0, 1.0), (0.01, 1.0), (30.0, 0.5)])
def test_two_cauchy_posteriors_give_the_closed_form(shift, scale):
    """X1 - X0 of two Cauchy draws of scale c is Cauchy of scale 2c: P(X1 > X0) = 1/2 + arctan(shift / 2c) / pi."""
    posteriors = StudentPosteriors(np.array([[0.0, shift]]), np.full((1, 2), scale), np.ones((1, 2)))
    computed = max_probabilities(posteriors, np.ones((1, 2), bool))[0]
    assert computed[1] == pytest.approx(0.5 + np.arctan(shift / (2 * scale)) / np.pi, abs=1e-9)


def test_half_a_degree_of_freedom_matches_quadrature_over_the_whole_line():
    """Tails so heavy that a finite reference range loses 2% of the mass: quad over (-inf, inf) keeps it."""
    from scipy import integrate, stats

    loc, scale, dof = np.array([0.0, 1.0]), np.array([1.0, 2.0]), np.array([0.5, 0.5])
    computed = max_probabilities(StudentPosteriors(loc[None], scale[None], dof[None]), np.ones((1, 2), bool))[0]
    arm1 = integrate.quad(
        lambda x: stats.t.pdf(x, dof[1], loc[1], scale[1]) * stats.t.cdf(x, dof[0], loc[0], scale[0]),
        -np.inf,
        np.inf,
        limit=500,
        epsabs=1e-12,
    )[0]
    assert computed[1] == pytest.approx(arm1, abs=1e-6)


def test_a_thousand_distinct_student_posteriors():
    """Scales across a factor of 4.5 and 2.5 to 30 degrees of freedom: heavy tails beside light ones."""
    rng = np.random.default_rng(1)
    loc, scale, dof = rng.normal(0.0, 0.3, 1000), np.exp(rng.uniform(-1.0, 0.5, 1000)), rng.uniform(2.5, 30.0, 1000)
    computed = max_probabilities(StudentPosteriors(loc[None], scale[None], dof[None]), np.ones((1, 1000), bool))[0]
    assert computed.sum() == pytest.approx(1.0, abs=1e-12)
    for k in _most_median_and_least_probable(computed):
        assert computed[k] == pytest.approx(student_probability_scale(loc, scale, dof, k), abs=1e-10)


@pytest.mark.parametrize("case", sorted(STUDENT_CASES))
def test_student_max_probabilities_match_adaptive_quadrature(case):
    loc, scale, dof = (np.array(values) for values in STUDENT_CASES[case])
    arms = [ReferenceStudent(*parameters) for parameters in zip(loc, scale, dof, strict=True)]
    for mask in _masks(len(loc)):
        computed = max_probabilities(StudentPosteriors(loc[None], scale[None], dof[None]), mask[None])[0]
        np.testing.assert_allclose(computed, quad_max_probabilities(arms, mask), rtol=0, atol=1e-6)
        assert computed.sum() == pytest.approx(1.0, abs=1e-12)
        assert (computed[~mask] == 0).all()


@pytest.mark.parametrize("alpha, beta", [(1.0, 1.0), (1e5, 1e5), (0.5, 0.5), (40.0, 7.0)])
def test_identical_posteriors_give_a_uniform_distribution(alpha, beta):
    n_arms = 5
    posteriors = BetaPosteriors(np.full((1, n_arms), alpha), np.full((1, n_arms), beta))
    mask = np.array([[True, True, False, True, True]])
    np.testing.assert_allclose(max_probabilities(posteriors, mask)[0], [0.25, 0.25, 0.0, 0.25, 0.25], rtol=0, atol=1e-9)


def test_one_allowed_arm_has_probability_one():
    posteriors = BetaPosteriors(np.array([[3.0, 1e5, 2.0]]), np.array([[4.0, 1.0, 9.0]]))
    for arm in range(3):
        mask = np.zeros((1, 3), dtype=bool)
        mask[0, arm] = True
        expected = np.zeros(3)
        expected[arm] = 1.0
        np.testing.assert_array_equal(max_probabilities(posteriors, mask)[0], expected)


def test_rows_are_independent_in_a_batch():
    """A batch of rows gives each row the value it gets alone (the simulator's state-per-row form)."""
    alpha = np.array([[2.0, 5.0, 3.0], [1e5, 1.0005e5, 1.0], [1.0, 1.0, 1.0]])
    beta = np.array([[3.0, 2.0, 8.0], [1e5, 1e5, 1.0], [1.0, 1.0, 1.0]])
    mask = np.array([[True, True, True], [True, True, False], [False, True, True]])
    together = max_probabilities(BetaPosteriors(alpha, beta), mask)
    for row in range(3):
        alone = max_probabilities(BetaPosteriors(alpha[row : row + 1], beta[row : row + 1]), mask[row : row + 1])
        np.testing.assert_allclose(together[row], alone[0], rtol=0, atol=1e-15)


def test_a_row_without_allowed_arms_stays_zero():
    posteriors = BetaPosteriors(np.array([[2.0, 3.0], [2.0, 3.0]]), np.array([[5.0, 3.0], [5.0, 3.0]]))
    probabilities = max_probabilities(posteriors, np.array([[True, True], [False, False]]))
    assert (probabilities[1] == 0).all() and probabilities[0].sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("location", [1e9, 1e12])
def test_gaussian_propensities_do_not_depend_on_where_the_posteriors_sit(monkeypatch, location):
    """Posteriors 100 float spacings wide at 1e12 give the propensities of the same posteriors near 0."""
    policy = bk.GaussianThompsonSampling()
    offsets = (location + np.array([[0.0, 0.01, -0.01, 0.004]])) - location  # what float64 keeps at 1e12
    scale, dof, mask = np.full((1, 4), 0.01), np.full((1, 4), 10.0), np.ones((1, 4), dtype=bool)

    def at(base):
        monkeypatch.setattr(policy, "posterior", lambda state: StudentPosteriors(base + offsets, scale, dof))
        return policy.probabilities(None, mask)

    np.testing.assert_allclose(at(location), at(0.0), rtol=0, atol=1e-9)
    assert at(location).sum() == pytest.approx(1.0, abs=1e-12)

"""Propensities of the linear policies: exact integration for LinTS, tie-aware argmax for LinUCB."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from banditkit.policies._gaussian_argmax import gaussian_argmax_probabilities
from banditkit.policies.linear import LinTS, LinUCB


def reference(means, sds):
    """P(arm k is the max) by adaptive quadrature with tight tolerances, one arm at a time."""
    means, sds = means.tolist(), sds.tolist()
    out = []
    for k in range(len(means)):

        def integrand(t, k=k):
            value = math.exp(-0.5 * ((t - means[k]) / sds[k]) ** 2) / (sds[k] * math.sqrt(2 * math.pi))
            for j in range(len(means)):
                if j != k:
                    value *= 0.5 * math.erfc((means[j] - t) / (sds[j] * math.sqrt(2)))
            return value

        low, high = means[k] - 12 * sds[k], means[k] + 12 * sds[k]
        breaks = sorted(
            p for m, sd in zip(means, sds, strict=True) for p in (m - 8 * sd, m, m + 8 * sd) if low < p < high
        )
        out.append(integrate.quad(integrand, low, high, points=breaks, epsabs=1e-13, epsrel=1e-12, limit=500)[0])
    return np.array(out)


def test_gaussian_argmax_matches_adaptive_quadrature_to_1e_8():
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(40):
        n_arms = int(rng.integers(2, 8))
        means = rng.normal(size=n_arms) * rng.choice([0.01, 1.0, 10.0])
        sds = np.exp(rng.normal(0.0, 2.0, n_arms))  # spreads over several orders of magnitude
        ours = gaussian_argmax_probabilities(means[None], sds[None], np.ones((1, n_arms), bool))[0]
        worst = max(worst, np.abs(ours - reference(means, sds)).max())
    assert worst < 1e-8


def test_rows_with_few_contenders_match_the_reference():
    """Arms far below another arm's floor are skipped; rows of 1, 2 and 4 contenders in one batch."""
    means = np.array([[5.0, 0.0, -10.0, 1.0], [0.2, 0.0, -40.0, -50.0], [0.1, 0.0, 0.3, -0.2]])
    sds = np.array([[0.1, 0.5, 1.0, 0.2], [0.3, 0.2, 1.0, 2.0], [1.0, 0.5, 0.7, 0.4]])
    ours = gaussian_argmax_probabilities(means, sds, np.ones((3, 4), bool))
    assert ours[0].tolist() == [1.0, 0.0, 0.0, 0.0]
    for row in range(3):
        np.testing.assert_allclose(ours[row], reference(means[row], sds[row]), atol=1e-8)


def test_point_masses_mix_with_continuous_arms_in_closed_form():
    # Arm 0 is a point mass at 0.3, arm 1 is N(0, 0.5^2), arm 2 is masked out.
    means, sds = np.array([[0.3, 0.0, 5.0]]), np.array([[0.0, 0.5, 1.0]])
    p = gaussian_argmax_probabilities(means, sds, np.array([[True, True, False]]))
    p0 = stats.norm.cdf(0.3 / 0.5)
    np.testing.assert_allclose(p, [[p0, 1 - p0, 0.0]], atol=1e-9)
    # Two tied point masses and no spread at all: the tie is shared.
    p = gaussian_argmax_probabilities(np.array([[1.0, 1.0, 0.0]]), np.zeros((1, 3)), np.ones((1, 3), bool))
    assert p.tolist() == [[0.5, 0.5, 0.0]]


@pytest.mark.slow
def test_lints_sampling_frequencies_match_its_probabilities(jit_mode):
    """Chi-square goodness of fit of 8,000 draws against the integrated probabilities (alpha = 0.001)."""
    policy = LinTS(v=0.5)
    rng = np.random.default_rng(1)
    contexts = rng.normal(size=(60, 3))
    state = policy.update(
        policy.init_state(4, n_features=3), rng.integers(0, 4, 60), contexts @ [0.2, -0.1, 0.3], context=contexts
    )
    x = np.array([[0.4, 0.1, -0.6]])
    expected = policy.probabilities(state, np.ones((1, 4), bool), x)[0]
    draws = 8_000
    counts = np.bincount([policy.sample(state, rng, np.ones((1, 4), bool), x)[0] for _ in range(draws)], minlength=4)
    _, p_value = stats.chisquare(counts, expected * draws)
    assert p_value > 0.001, (counts, expected)


def test_lints_batched_sampling_frequencies_match_its_probabilities():
    policy = LinTS(v=1.0)
    state = policy.init_state(3, n_features=2)
    state = policy.update(state, [0, 1, 2, 0], [1.0, 0.5, 0.2, 0.8], context=[[1, 0], [0, 1], [1, 1], [1, 0.5]])
    x = np.tile([[0.7, 0.2]], (30_000, 1))
    arms = policy.sample(state, np.random.default_rng(2), np.ones((30_000, 3), bool), x)
    expected = policy.probabilities(state, np.ones((1, 3), bool), x[:1])[0]
    assert stats.chisquare(np.bincount(arms, minlength=3), expected * 30_000).pvalue > 0.001


@pytest.mark.parametrize("policy", [LinUCB(alpha=1.0), LinTS(v=1.0)], ids=["linucb", "lints"])
def test_identical_arms_split_evenly_and_masks_are_respected(policy, jit_mode):
    state = policy.init_state(3, n_features=2)
    for arm in (0, 1):  # arms 0 and 1 see exactly the same data
        state = policy.update(state, [arm], [1.0], context=[[1.0, 0.5]])
    x = np.array([[1.0, 0.5]])
    p = policy.probabilities(state, np.ones((1, 3), bool), x)[0]
    assert p[0] == p[1]
    mask = np.array([[True, False, True]])
    masked = policy.probabilities(state, mask, x)[0]
    assert masked[1] == 0.0 and masked.sum() == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(3)
    picks = [int(policy.sample(state, rng, mask, x)[0]) for _ in range(400)]
    assert 1 not in picks


def test_linucb_ties_are_exact_and_sampled_uniformly(jit_mode):
    policy = LinUCB(alpha=0.3)
    state = policy.init_state(3, n_features=2)
    state = policy.update(state, [0, 1], [2.0, 2.0], context=[[1.0, 0.0], [1.0, 0.0]])
    x = np.array([[1.0, 0.0]])
    assert policy.probabilities(state, np.ones((1, 3), bool), x).tolist() == [[0.5, 0.5, 0.0]]
    rng = np.random.default_rng(4)
    counts = np.bincount([policy.sample(state, rng, np.ones((1, 3), bool), x)[0] for _ in range(2000)], minlength=3)
    assert counts[2] == 0 and stats.binomtest(int(counts[0]), 2000).pvalue > 0.001


def test_compiled_one_row_quadrature_matches_the_numpy_path():
    from banditkit.policies._gaussian_argmax import POINT_MASS_SD
    from banditkit.policies._ridge import linear_kernels

    compiled = linear_kernels()
    if compiled is None:
        pytest.fail("numba is not installed: the compiled path cannot be tested (install banditkit[fast])")
    rng = np.random.default_rng(5)
    for _ in range(200):
        n_arms = int(rng.integers(1, 12))
        means = rng.normal(size=n_arms) * rng.choice([0.01, 1.0, 10.0])
        sds = np.exp(rng.normal(0.0, 2.0, n_arms))
        sds[rng.random(n_arms) < 0.2] = 0.0  # some point masses
        if rng.random() < 0.2:
            means = np.round(means)  # and some exact ties
        mask = rng.random(n_arms) < 0.85
        mask[0] = True
        numpy_path = gaussian_argmax_probabilities(means[None], sds[None], mask[None])[0]
        np.testing.assert_allclose(
            compiled.gaussian_argmax_row(means, sds, mask, POINT_MASS_SD), numpy_path, atol=1e-13
        )

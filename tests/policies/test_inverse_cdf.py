"""The one inverse-CDF draw at its edges, and every form of it (arrays, one row, compiled) agreeing point by point."""

from __future__ import annotations

import numpy as np
import pytest

from banditkit.assign import assign
from banditkit.policies import _jit
from banditkit.policies.base import categorical, inverse_cdf, inverse_cdf_row, last_positive

BELOW_ONE = np.nextafter(1.0, 0.0)

#: Ten times 0.1 sums to 0.9999999999999999 in floats: points in [that, 1) lie past the total.
TENTHS = [0.1] * 10

#: (name, probabilities); zero-probability arms at the start, in the middle and at the end.
CASES = [
    ("one arm", [1.0]),
    ("two arms", [0.25, 0.75]),
    ("zero first", [0.0, 0.4, 0.6]),
    ("zero in the middle", [0.3, 0.0, 0.0, 0.7]),
    ("zero last", [0.5, 0.5, 0.0]),
    ("zeros everywhere", [0.0, 0.2, 0.0, 0.8, 0.0, 0.0]),
    ("sum rounds below 1", TENTHS),
    ("sum below 1, zero last", [*TENTHS, 0.0, 0.0]),
    ("sum below 1, zero first", [0.0, *TENTHS]),
    ("sum rounds above 1", [1 / 3, 1 / 3, 1 / 3 + 1e-16]),
]


def design_walk(probabilities: list[float], point: float) -> int:
    """The rule in DESIGN's words: the first arm whose running sum exceeds the point, else the last arm with mass."""
    total = 0.0
    for arm, probability in enumerate(probabilities):
        total += probability
        if point < total:
            return arm
    return max(arm for arm, probability in enumerate(probabilities) if probability > 0)


def edge_points(probabilities: list[float]) -> np.ndarray:
    """0, just below 1, and every running sum with its neighbouring floats on either side."""
    sums = np.cumsum(probabilities)
    near = np.concatenate([sums, np.nextafter(sums, 0.0), np.nextafter(sums, 2.0)])
    points = np.concatenate([[0.0, BELOW_ONE, 0.5], near])
    return np.unique(points[(points >= 0.0) & (points < 1.0)])


def compiled_inverse_cdf():
    compiled = _jit.load()
    if compiled is None:
        pytest.fail("numba is not installed: the compiled draw cannot be tested (install banditkit[fast])")
    return compiled.inverse_cdf


@pytest.mark.parametrize("name, probabilities", CASES, ids=[name for name, _ in CASES])
def test_every_form_follows_the_design_walk_at_the_edges(name, probabilities):
    vector = np.array(probabilities)
    points = edge_points(probabilities)
    expected = [design_walk(probabilities, point) for point in points]
    n = points.shape[0]
    per_row = inverse_cdf(np.tile(vector, (n, 1)), points)  # one distribution per row
    shared = inverse_cdf(np.broadcast_to(vector, (n, vector.shape[0])), points)  # a broadcast view
    single = inverse_cdf(vector[None], points)  # one row for every point
    scalar = [int(inverse_cdf(vector, point)) for point in points]  # (K,) and a float
    cumulative, last = np.cumsum(vector).tolist(), int(last_positive(vector))
    by_row = [inverse_cdf_row(cumulative, last, float(point)) for point in points]
    kernel = compiled_inverse_cdf()
    by_kernel = [kernel(vector, float(point)) for point in points]
    for form in (
        per_row.tolist(),
        shared.tolist(),
        single.tolist(),
        scalar,
        by_row,
        by_kernel,
        assign(np.tile(vector, (n, 1)), points).tolist(),
    ):
        assert form == expected
    assert all(vector[arm] > 0 for arm in expected), "an arm of zero probability was chosen"


def test_zero_takes_the_first_arm_with_mass():
    assert inverse_cdf(np.array([[0.0, 0.0, 0.3, 0.7]]), np.array([0.0])).tolist() == [2]
    assert inverse_cdf(np.array([[0.6, 0.4]]), np.array([0.0])).tolist() == [0]


def test_a_point_on_a_running_sum_takes_the_next_arm():
    """Arm k covers [sum of the arms before it, its own running sum): the right end is open."""
    probabilities = np.array([[0.25, 0.25, 0.5]])
    assert inverse_cdf(probabilities, np.array([0.25, 0.5, np.nextafter(0.25, 0.0)])).tolist() == [1, 2, 0]


def test_points_past_a_total_below_one_take_the_last_arm_with_mass():
    probabilities = np.array([*TENTHS, 0.0])
    total = float(np.cumsum(probabilities)[-1])
    assert total < 1.0
    points = np.array([total, np.nextafter(total, 1.0), BELOW_ONE])
    np.testing.assert_array_equal(inverse_cdf(np.tile(probabilities, (3, 1)), points), [9, 9, 9])
    np.testing.assert_array_equal(inverse_cdf(probabilities[None], points), [9, 9, 9])
    assert compiled_inverse_cdf()(probabilities, BELOW_ONE) == 9


def test_one_arm_always_gets_arm_zero():
    points = np.array([0.0, 0.3, BELOW_ONE])
    np.testing.assert_array_equal(inverse_cdf(np.ones((3, 1)), points), [0, 0, 0])
    assert compiled_inverse_cdf()(np.ones(1), BELOW_ONE) == 0


def test_rows_keep_their_own_distribution():
    probabilities = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    np.testing.assert_array_equal(inverse_cdf(probabilities, np.array([0.9, 0.1, 0.5])), [0, 2, 1])


def test_categorical_draws_one_uniform_per_row_at_the_inverse_cdf():
    probabilities = np.array([[0.2, 0.0, 0.8], [0.0, 0.5, 0.5], [0.1, 0.1, 0.8]])
    drawn = categorical(probabilities, np.random.default_rng(3))
    points = np.random.default_rng(3).random(3)
    np.testing.assert_array_equal(drawn, inverse_cdf(probabilities, points))

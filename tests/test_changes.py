"""The reward-shift detector: false alarms on stationary streams and delay on a step, within stated bounds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditkit.changes import ShiftDetector
from banditkit.errors import BanditkitError

DETECTOR = ShiftDetector(shift=0.1, arl=10_000, warmup=100)


@pytest.mark.parametrize("rate", [0.05, 0.3, 0.5, 0.9])
def test_stationary_streams_alarm_within_the_stated_rate(rate):
    """400 streams of 2,000 rewards: the bound is n / arl = 0.19 per stream after the warmup.

    Measured well below it (about 0.01): the fraction alarmed must not exceed the bound, and the number of
    alarmed streams is checked against a binomial tail at level 1e-6 around it.
    """
    rng = np.random.default_rng(int(rate * 1000))
    rewards = (rng.random((400, 2_000)) < rate).astype(float)
    _, alarms = DETECTOR.update(DETECTOR.init_state(400), rewards)
    bound = (2_000 - DETECTOR.warmup) / DETECTOR.arl
    alarmed = alarms.any(axis=1).mean()
    assert alarmed <= bound
    assert alarmed <= 0.05  # the running baseline: measured 0.00-0.02 over these rates


@pytest.mark.parametrize(("before", "after"), [(0.2, 0.3), (0.5, 0.35), (0.05, 0.15)])
def test_a_step_of_the_rate_is_detected_within_the_stated_delay(before, after):
    """A step at reward 1,000: median delay within 1.5 x h / E[llr] (Lorden's first-order delay), 90% caught."""
    rng = np.random.default_rng(7)
    n, step, length = 300, 1_000, 3_000
    rewards = np.concatenate([rng.random((n, step)) < before, rng.random((n, length - step)) < after], axis=1).astype(
        float
    )
    _, alarms = DETECTOR.update(DETECTOR.init_state(n), rewards)
    early = alarms[:, :step].any(axis=1)
    late = alarms[:, step:]
    caught = late.any(axis=1) & ~early
    delays = late.argmax(axis=1)[caught]
    expected = DETECTOR.expected_delay(before, after)
    assert early.mean() <= step / DETECTOR.arl
    assert caught.mean() >= 0.9
    assert np.median(delays) <= 1.5 * expected
    assert np.median(delays) >= 0.5 * expected  # not an alarm that fires on anything


def test_feeding_in_pieces_equals_feeding_at_once():
    rng = np.random.default_rng(3)
    rewards = np.concatenate([rng.random((5, 600)) < 0.2, rng.random((5, 600)) < 0.7], axis=1).astype(float)
    whole_state, whole = DETECTOR.update(DETECTOR.init_state(5), rewards)
    state, parts = DETECTOR.init_state(5), []
    for start in range(0, 1_200, 170):
        state, alarms = DETECTOR.update(state, rewards[:, start : start + 170])
        parts.append(alarms)
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole)
    np.testing.assert_allclose(state.up, whole_state.up)
    np.testing.assert_array_equal(state.count, whole_state.count)


def test_nan_is_no_reward_and_streams_are_independent():
    rng = np.random.default_rng(5)
    stream = np.concatenate([rng.random(500) < 0.1, rng.random(500) < 0.6]).astype(float)
    padded = np.full((2, 2_000), np.nan)
    padded[0, ::2] = stream
    padded[1, :1_000] = 0.5
    _, alarms = DETECTOR.update(DETECTOR.init_state(2), padded)
    _, alone = DETECTOR.update(DETECTOR.init_state(1), stream[None, :])
    np.testing.assert_array_equal(np.flatnonzero(alarms[0]), 2 * np.flatnonzero(alone[0]))
    assert not alarms[1].any()


def test_golden_alarm_steps():
    """Seeded golden values: the steps at which a 0.1 -> 0.5 -> 0.1 stream alarms."""
    rng = np.random.default_rng(11)
    stream = np.concatenate([rng.random(400) < 0.1, rng.random(400) < 0.5, rng.random(400) < 0.1]).astype(float)
    _, alarms = ShiftDetector(shift=0.2, arl=1_000, warmup=50).update(ShiftDetector().init_state(1), stream[None])
    assert np.flatnonzero(alarms[0]).tolist() == [434, 831]


def test_one_stream_of_equal_rewards_never_alarms():
    _, alarms = DETECTOR.update(DETECTOR.init_state(1), np.full((1, 5_000), 0.4))
    assert not alarms.any()


def test_take_carries_streams_over_and_starts_new_ones():
    state, _ = DETECTOR.update(DETECTOR.init_state(2), np.array([[1.0, 1.0], [0.0, np.nan]]))
    taken = state.take(np.array([1, -1, 0]))
    assert taken.count.tolist() == [1, 0, 2]
    assert taken.total.tolist() == [0.0, 0.0, 2.0]


@given(st.lists(st.floats(0, 1) | st.just(float("nan")), min_size=1, max_size=60))
@settings(max_examples=50, deadline=None)
def test_statistics_stay_non_negative_and_counts_match(values):
    state, alarms = DETECTOR.update(DETECTOR.init_state(1), np.array([values]))
    assert state.up[0] >= 0 and state.down[0] >= 0
    assert state.count[0] <= sum(v == v for v in values)
    assert alarms.shape == (1, len(values))


@pytest.mark.parametrize(
    ("arguments", "field"),
    [({"shift": 0.0}, "shift"), ({"shift": 0.6}, "shift"), ({"arl": 1.0}, "arl"), ({"warmup": 0}, "warmup")],
)
def test_bad_parameters_name_the_field(arguments, field):
    with pytest.raises(BanditkitError) as caught:
        ShiftDetector(**arguments)
    assert caught.value.field == field


@pytest.mark.parametrize("rewards", [[[1.5]], [[-0.1]], [[0.5], [0.5]]])
def test_bad_rewards_are_refused(rewards):
    with pytest.raises(BanditkitError, match="rewards"):
        DETECTOR.update(DETECTOR.init_state(1), rewards)

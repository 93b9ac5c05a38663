"""Deterministic per-unit assignment: DESIGN's SHA1 formula, stability, honest propensities."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import banditkit as bk
from banditkit.assign import assign, unit_uniform

# Significance of the chi-square test below: a correct implementation fails it w.p. 0.001.
ALPHA = 1e-3
ROOT = Path(__file__).resolve().parents[1]


def design_arm(name: str, unit: str, probabilities: dict[str, float]) -> str:
    """DESIGN section 2, written out: SHA1 of "name:unit", first 8 bytes big-endian / 2^64, walk the CDF."""
    u = int.from_bytes(hashlib.sha1(f"{name}:{unit}".encode()).digest()[:8], "big") / 2**64
    cumulative = 0.0
    for arm, probability in probabilities.items():
        cumulative += probability
        if u < cumulative:
            return arm
    return next(arm for arm in reversed(probabilities) if probabilities[arm] > 0)


def learned_bandit(name: str = "hero-banner", policy="softmax") -> bk.Bandit:
    bandit = bk.Bandit(["red", "green", "blue", "grey"], policy=policy, seed=3, name=name)
    bandit.update_many(["red", "green", "blue", "grey"] * 5, [0.2, 0.5, 0.4, 0.1] * 5)
    return bandit


def test_unit_uniform_is_the_design_formula():
    digest = hashlib.sha1(b"default:user-42").digest()
    assert unit_uniform("default", "user-42") == int.from_bytes(digest[:8], "big") / 2**64
    assert unit_uniform("default", "user-42") == pytest.approx(0.845561, abs=5e-7)
    assert (
        unit_uniform("exp", "ünïcode")
        == int.from_bytes(hashlib.sha1("exp:ünïcode".encode()).digest()[:8], "big") / 2**64
    )


@pytest.mark.parametrize("policy", ["softmax", "thompson", "exp3"])
def test_select_with_a_unit_follows_the_design_formula(policy):
    bandit = learned_bandit(policy=policy)
    probabilities = bandit.probabilities()
    before = json.dumps(bandit.rng.bit_generator.state)
    for i in range(300):
        unit = f"user-{i}"
        decision = bandit.select(unit=unit)
        assert decision.arm == design_arm("hero-banner", unit, probabilities)
        assert decision.unit == unit
        assert decision.propensity == pytest.approx(probabilities[decision.arm], abs=1e-15)
    assert json.dumps(bandit.rng.bit_generator.state) == before, "assignment must not draw from the generator"


def test_batch_assignment_equals_single_assignment():
    bandit = learned_bandit()
    units = [f"visitor-{i}" for i in range(500)]
    batch = bandit.select_many(units=units)
    assert list(batch.arms) == [bandit.select(unit=unit).arm for unit in units]
    np.testing.assert_allclose(batch.propensities, batch.probabilities[np.arange(500), batch.arm_indices])
    assert batch.units == units


def test_same_unit_same_arm_across_a_json_round_trip():
    bandit = learned_bandit()
    restored = bk.Bandit.from_json(bandit.to_json())
    units = [f"user-{i}" for i in range(200)]
    assert [restored.select(unit=u).arm for u in units] == [bandit.select(unit=u).arm for u in units]


def test_same_unit_same_arm_in_another_process(tmp_path):
    bandit = learned_bandit()
    units = [f"user-{i}" for i in range(200)]
    (tmp_path / "bandit.json").write_text(bandit.to_json())
    script = (
        "import json, sys, banditkit as bk\n"
        "bandit = bk.Bandit.from_json(open(sys.argv[1]).read())\n"
        "units = [f'user-{i}' for i in range(200)]\n"
        "print(json.dumps([bandit.select(unit=u).arm for u in units]))\n"
    )
    environment = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED="12345", BANDITKIT_DISABLE_JIT="1")
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "bandit.json")],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(result.stdout) == [bandit.select(unit=u).arm for u in units]


def test_units_spread_over_arms_in_proportion_to_the_probabilities():
    bandit = learned_bandit()
    probabilities = np.array(list(bandit.probabilities().values()))
    batch = bandit.select_many(units=[f"member-{i}" for i in range(20_000)])
    counts = np.bincount(batch.arm_indices, minlength=4)
    assert stats.chisquare(counts, 20_000 * probabilities).pvalue > ALPHA, (counts, probabilities)


def test_experiments_assign_independently():
    """Two experiments with 50/50 arms agree on about half the units (here 0.5 +- 5 standard errors)."""
    first = bk.Bandit(["a", "b"], policy="thompson", name="checkout-button")
    second = bk.Bandit(["a", "b"], policy="thompson", name="search-ranking")
    units = [f"user-{i}" for i in range(2500)]
    agreement = np.mean([first.select(unit=u).arm == second.select(unit=u).arm for u in units])
    assert abs(agreement - 0.5) < 5 * 0.5 / np.sqrt(2500)


def test_assignment_never_lands_on_a_disabled_or_disallowed_arm():
    bandit = learned_bandit()
    bandit.disable_arm("green")
    for i in range(300):
        assert bandit.select(unit=f"u{i}").arm != "green"
        assert bandit.select(unit=f"u{i}", allowed=["red", "grey"]).arm in {"red", "grey"}


def test_a_unit_moves_only_when_the_probabilities_cross_its_point():
    u = np.array([0.05, 0.35, 0.45, 0.55, 0.95])
    before = assign(np.array([[0.4, 0.6]]), u)
    after = assign(np.array([[0.5, 0.5]]), u)
    np.testing.assert_array_equal(before, [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(after, [0, 0, 0, 1, 1])  # only u in [0.4, 0.5) moved


def test_rounding_never_assigns_a_zero_probability_arm():
    third = 1 / 3
    probabilities = np.array([[third, third, third, 0.0], [0.0, 1.0, 0.0, 0.0]])
    u = np.array([1 - 2**-53, 0.0])
    np.testing.assert_array_equal(assign(probabilities, u), [2, 1])

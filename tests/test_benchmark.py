"""``banditkit bench`` times a first decision in a fresh interpreter against the numba cache it is given."""

from __future__ import annotations

import math

import pytest

from banditkit import benchmark


@pytest.mark.slow
def test_a_first_decision_is_timed_in_a_fresh_interpreter(tmp_path):
    first, loading = benchmark.first_decision_seconds(tmp_path)
    assert math.isfinite(first) and first > 0
    assert math.isfinite(loading) and loading > 0
    # The second figure is the compiled path's, from this (cold) cache: its kernel was compiled into it.
    assert any(path.name.startswith("_jit_kernels.bernoulli_thompson_choice-") for path in tmp_path.rglob("*.nbi"))

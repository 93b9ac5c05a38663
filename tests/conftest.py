"""Shared fixtures: every registered policy, and a switch between the compiled and numpy paths."""

from __future__ import annotations

import pytest

from banditkit.policies import _jit


@pytest.fixture(params=[True, False], ids=["jit", "numpy"])
def jit_mode(request):
    """Run a test once with the compiled one-row kernels and once on the pure numpy path."""
    if request.param and _jit.load() is None:
        pytest.fail("numba is not installed: the compiled path cannot be tested (install banditkit[fast])")
    _jit.set_enabled(request.param)
    yield request.param
    _jit.set_enabled(True)

"""Fixtures for the policy tests: every registered non-contextual policy, and the path switch."""

from __future__ import annotations

import pytest
from policy_cases import NON_CONTEXTUAL, SPECS, spec_id

from banditkit.policies import _jit, make_policy


@pytest.fixture(params=NON_CONTEXTUAL)
def policy_name(request) -> str:
    """Registry name of each non-contextual policy, default hyperparameters."""
    return request.param


@pytest.fixture(params=SPECS, ids=spec_id)
def policy_spec(request) -> dict:
    """Each non-contextual policy with its defaults and with the variants in ``policy_cases.VARIANTS``."""
    return request.param


@pytest.fixture
def policy(policy_spec):
    return make_policy(policy_spec)


@pytest.fixture
def both_paths():
    """Restore the compiled path after a test that switches between the two paths itself."""
    yield
    _jit.set_enabled(True)

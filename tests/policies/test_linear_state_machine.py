"""A LinUCB state run beside a naive reference (lists of rows per arm), invariants after every step."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from banditkit.policies.linear import LinUCB

N_FEATURES = 3
finite = st.floats(-100, 100, allow_nan=False, allow_infinity=False)
contexts = st.lists(finite, min_size=N_FEATURES, max_size=N_FEATURES)


class LinearStateMachine(RuleBasedStateMachine):
    """Rules: one-row and batch updates, adding and removing arms, a JSON round trip of the state."""

    @initialize(n_arms=st.integers(1, 4), l2=st.sampled_from([0.1, 1.0, 10.0]))
    def start(self, n_arms, l2):
        self.policy = LinUCB(l2=l2)
        self.state = self.policy.init_state(n_arms, n_features=N_FEATURES)
        self.rows: list[list[tuple[np.ndarray, float]]] = [[] for _ in range(n_arms)]

    @rule(data=st.data(), context=contexts, reward=finite)
    def update_one(self, data, context, reward):
        arm = data.draw(st.integers(0, len(self.rows) - 1))
        self.state = self.policy.update(self.state, [arm], [reward], context=[context])
        self.rows[arm].append((np.array(context), reward))

    @rule(data=st.data(), batch=st.lists(st.tuples(contexts, finite), min_size=2, max_size=8))
    def update_many(self, data, batch):
        arms = data.draw(st.lists(st.integers(0, len(self.rows) - 1), min_size=len(batch), max_size=len(batch)))
        self.state = self.policy.update(self.state, arms, [r for _, r in batch], context=[c for c, _ in batch])
        for arm, (context, reward) in zip(arms, batch, strict=True):
            self.rows[arm].append((np.array(context), reward))

    @rule()
    def add_arm(self):
        self.state = self.policy.add_arms(self.state, 1)
        self.rows.append([])

    @precondition(lambda self: len(self.rows) > 1)
    @rule(data=st.data())
    def remove_arm(self, data):
        arm = data.draw(st.integers(0, len(self.rows) - 1))
        self.state = self.policy.remove_arm(self.state, arm)
        del self.rows[arm]

    @rule()
    def json_round_trip(self):
        text = json.dumps({key: [value.dtype.str, value.tolist()] for key, value in self.state.items()})
        restored = {key: np.array(data, dtype=np.dtype(dtype)) for key, (dtype, data) in json.loads(text).items()}
        for key, value in self.state.items():
            np.testing.assert_array_equal(restored[key], value)
        self.state = restored

    @invariant()
    def matches_the_reference(self):
        eye = self.policy.l2 * np.eye(N_FEATURES)
        for arm, rows in enumerate(self.rows):
            A = eye + sum((np.outer(x, x) for x, _ in rows), np.zeros((N_FEATURES, N_FEATURES)))
            b = sum((r * x for x, r in rows), np.zeros(N_FEATURES))
            np.testing.assert_allclose(self.state["A"][0, arm], A, rtol=1e-12, atol=1e-9)
            np.testing.assert_allclose(self.state["b"][0, arm], b, rtol=1e-12, atol=1e-9)
            # The caches agree with a fresh solve, relative to the conditioning of A.
            scale = np.linalg.cond(A) * 1e-12
            np.testing.assert_allclose(self.state["A_inv"][0, arm] @ A, np.eye(N_FEATURES), atol=max(scale, 1e-9))
            np.testing.assert_allclose(A @ self.state["theta"][0, arm], b, atol=max(scale * np.abs(b).max(), 1e-7))


LinearStateMachine.TestCase.settings = settings(max_examples=15, stateful_step_count=15, deadline=None)
TestLinearStateMachine = LinearStateMachine.TestCase

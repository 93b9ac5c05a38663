"""Delayed feedback: arrival rules and the regrouping of arrivals into update passes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from banditkit.sim import Bernoulli, Delayed, environment_seed
from banditkit.sim.feedback import Feedback, Observations, update_passes


def observations(rows, tag, replications=5):
    rows = None if rows is None else np.asarray(rows, dtype=np.intp)
    size = replications if rows is None else rows.size
    return Observations(rows, np.full(size, tag), np.arange(size, dtype=float) + 10 * tag)


def replay(env, replications, horizon):
    """Drive a feedback queue with ``env``'s arrival steps as the runner does; return, per step, the arrivals by
    replication."""
    chunk = env.draw([np.random.default_rng(environment_seed(0, r)) for r in range(replications)], 0, horizon)
    feedback = Feedback(replications)
    arrivals = []
    for time in range(horizon):
        seen = [[] for _ in range(replications)]
        for batch in feedback.due(time):
            rows = range(replications) if batch.rows is None else batch.rows
            assert len(set(rows)) == len(rows), "a pass holds each replication at most once"
            for row, sent in zip(rows, batch.arms, strict=True):
                seen[row].append(int(sent))
        arrivals.append(seen)
        # The "arm" carries the decision time so that arrivals can be traced back.
        feedback.add(
            env.arrival_steps(time, chunk, time),
            Observations(None, np.full(replications, time), np.zeros(replications)),
        )
    return arrivals, chunk


def test_immediate_feedback_arrives_before_the_next_decision():
    arrivals, _ = replay(Bernoulli([0.5, 0.5]), replications=2, horizon=6)
    for time, seen in enumerate(arrivals):
        assert seen == [[time - 1]] * 2 if time >= 1 else seen == [[], []]
    feedback = Feedback(5)
    batch = observations(None, 1)
    feedback.add(Bernoulli([0.5]).arrival_steps(0, None, 0), batch)
    assert feedback.due(0) == [] and feedback.due(1) == [batch] and feedback.due(2) == []


def test_fixed_delay_holds_each_reward_back_exactly_d_steps():
    arrivals, _ = replay(Delayed(Bernoulli([0.5, 0.5]), delay=3), replications=2, horizon=12)
    for time, seen in enumerate(arrivals):
        assert seen == [[time - 4]] * 2 if time >= 4 else seen == [[], []]


def test_batches_arrive_together_in_decision_order():
    arrivals, _ = replay(Delayed(Bernoulli([0.5, 0.5]), batch=4), replications=3, horizon=13)
    for time, seen in enumerate(arrivals):
        expected = list(range(time - 4, time)) if time > 0 and time % 4 == 0 else []
        assert seen == [expected] * 3


def test_geometric_delays_deliver_each_reward_once_at_its_drawn_step():
    horizon = 60
    arrivals, chunk = replay(Delayed(Bernoulli([0.5, 0.5]), mean_delay=2.0), replications=5, horizon=horizon)
    for replication in range(5):
        delivered = {sent: time for time, seen in enumerate(arrivals) for sent in seen[replication]}
        delays = chunk.arrays["delay"][:, replication]
        due = {sent: sent + 1 + int(delays[sent]) for sent in range(horizon) if sent + 1 + delays[sent] < horizon}
        assert delivered == due


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.lists(st.integers(0, 4), min_size=1, max_size=6, unique=True)), min_size=1, max_size=5
    )
)
def test_passes_keep_every_observation_once_in_arrival_order(groups):
    replications = 5
    batches = [observations(rows, tag) for tag, rows in enumerate(groups)]
    passes = update_passes(batches, replications)
    received = {r: [] for r in range(replications)}
    for batch in passes:
        rows = np.arange(replications) if batch.rows is None else batch.rows
        assert np.unique(rows).size == rows.size
        for row, arm, reward in zip(rows, batch.arms, batch.rewards, strict=True):
            received[int(row)].append((int(arm), float(reward)))
    sent = {r: [] for r in range(replications)}
    for batch in batches:
        rows = np.arange(replications) if batch.rows is None else batch.rows
        for row, arm, reward in zip(rows, batch.arms, batch.rewards, strict=True):
            sent[int(row)].append((int(arm), float(reward)))
    assert received == sent

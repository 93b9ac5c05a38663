"""The client's parts without a server: backoff and Retry-After, the circuit breaker, the batch sender's
keep-and-resend, and the one-row and many-row draws agreeing (what makes local decisions the server's)."""

from __future__ import annotations

import email.utils
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditkit.assign import assign_one, assign_rows, cumulative
from banditkit.client import BatchSender, CircuitBreaker, Retry, ServiceError, Unavailable, new_decision_id


def test_backoff_doubles_up_to_its_cap_and_retry_after_wins():
    retry = Retry(backoff_s=0.1, max_backoff_s=0.5, max_retry_after_s=3.0)
    assert [retry.delay(a, None) for a in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    assert retry.delay(3, "1") == 1.0
    assert retry.delay(0, "3600") == 3.0  # capped
    assert retry.delay(0, "-4") == 0.0
    in_two_seconds = email.utils.formatdate(time.time() + 2, usegmt=True)
    assert 0.5 < retry.delay(0, in_two_seconds) <= 2.0


def test_the_breaker_opens_after_failures_and_lets_one_through_after_reset():
    breaker = CircuitBreaker(failures=2, reset_s=0.05)
    breaker.failure()
    assert breaker.allow() and not breaker.open  # one failure: still closed
    breaker.failure()
    assert breaker.open and not breaker.allow()
    time.sleep(0.06)
    assert breaker.allow()  # half-open: a call may try
    assert breaker.success() and not breaker.open  # closed by a success: the service is back
    assert not breaker.success()


def test_a_batch_that_cannot_be_sent_is_kept_and_sent_once_later():
    sent: list[list[int]] = []
    down = True

    def send(key: str, rows: list[int]) -> None:
        if down:
            raise Unavailable("down")
        sent.append(rows)

    sender = BatchSender(send, max_size=1500, interval_s=3600)
    for i in range(1200):
        sender.add("hero", i)
    assert not sender.flush() and sender.pending == 1200 and not sent
    down = False
    assert sender.flush() and sender.pending == 0
    assert [len(rows) for rows in sent] == [1000, 200]  # the service's batch limit
    assert [row for rows in sent for row in rows] == list(range(1200))  # in order, each once
    sender.close()


def test_a_refused_batch_is_dropped_not_retried(caplog):
    calls = []

    def send(key: str, rows: list[int]) -> None:
        calls.append(rows)
        raise ServiceError(422, "bad row")

    sender = BatchSender(send, max_size=10, interval_s=3600)
    sender.add("hero", 1)
    assert sender.flush() and sender.pending == 0
    assert sender.flush() and len(calls) == 1
    assert "refused" in caplog.text
    sender.close()


def test_the_sender_thread_flushes_by_size():
    sent: list[list[int]] = []
    sender = BatchSender(lambda key, rows: sent.append(rows), max_size=3, interval_s=3600)
    for i in range(3):
        sender.add("hero", i)
    deadline = time.monotonic() + 5
    while not sent and time.monotonic() < deadline:
        time.sleep(0.005)
    assert sent == [[0, 1, 2]]
    sender.close()


def test_client_made_ids_start_with_their_time_in_milliseconds():
    now = 1_764_820_000.123
    decision_id = new_decision_id(now)
    assert len(decision_id) == 32 and int(decision_id[:12], 16) == 1_764_820_000_123
    assert new_decision_id(now) != decision_id


probabilities = st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12).filter(lambda p: sum(p) > 0)


@settings(max_examples=200, deadline=None)
@given(weights=probabilities, units=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=20))
def test_one_row_and_many_row_draws_give_one_arm_per_unit(weights, units):
    vector = np.array(weights) / np.sum(weights)
    sums, last = cumulative(vector)
    rng = np.random.default_rng(0)
    one = [assign_one(sums, last, "hero", unit, rng) for unit in units]
    many = assign_rows(vector[None, :], "hero", list(units), rng).tolist()
    assert one == many
    assert all(vector[i] > 0 for i in one)  # never an arm of probability 0


@pytest.mark.parametrize("weights", [[1.0], [0.5, 0.5], [0.0, 1.0, 0.0]])
def test_edge_distributions_one_arm_equal_arms_zeros(weights):
    vector = np.array(weights)
    sums, last = cumulative(vector)
    arms = {assign_one(sums, last, "hero", f"u{i}", np.random.default_rng(0)) for i in range(200)}
    assert arms == {i for i, w in enumerate(weights) if w > 0}


def test_the_async_sender_keeps_what_cannot_be_sent_and_sends_it_once_later_in_order():
    import asyncio

    from banditkit.client import AsyncBatchSender

    sent: list[list[int]] = []
    down = True

    async def send(key: str, rows: list[int]) -> None:
        if down:
            raise Unavailable("down")
        if rows == [1300]:
            raise ServiceError(422, "bad row")  # refused: dropped, not retried
        sent.append(rows)

    async def scenario() -> None:
        nonlocal down
        sender = AsyncBatchSender(send, max_size=1500, interval_s=3600)
        for i in range(1200):
            sender.add("hero", i)
        assert not await sender.flush() and sender.pending == 1200 and not sent
        down = False
        sender.add("other", 1300)
        assert await sender.flush() and sender.pending == 0
        await sender.close()

    asyncio.run(scenario())
    assert [len(rows) for rows in sent] == [1000, 200]  # the service's batch limit
    assert [row for rows in sent for row in rows] == list(range(1200))  # in order, each once

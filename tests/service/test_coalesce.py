"""Single requests of one loop turn are served as one batch, each with its own answer or error."""

from __future__ import annotations

import asyncio

import pytest

from banditkit.service.coalesce import Coalescer
from banditkit.service.engine import Engine
from banditkit.service.errors import InvalidRequestError
from banditkit.service.schemas import DecisionRequest, ExperimentCreate, RewardRequest
from banditkit.service.stores import MemoryStore


class CountingStore(MemoryStore):
    """Counts the decision-log appends and the rows each held."""

    def __init__(self) -> None:
        super().__init__()
        self.appends: list[int] = []

    def append_decisions(self, rows, assignments=None):
        self.appends.append(len(rows))
        return super().append_decisions(rows, assignments)


def test_concurrent_requests_share_one_call_and_get_their_own_answers():
    calls = []

    async def serve(key, items):
        calls.append((key, list(items)))
        return [item * 10 for item in items]

    async def main():
        coalescer = Coalescer(serve)
        return await asyncio.gather(*(coalescer.submit("k", i) for i in range(5)), coalescer.submit("other", 7))

    assert asyncio.run(main()) == [0, 10, 20, 30, 40, 70]
    assert sorted(calls) == [("k", [0, 1, 2, 3, 4]), ("other", [7])]


def test_a_failing_batch_fails_every_request_of_it_and_only_those():
    async def serve(key, items):
        if key == "bad":
            raise OSError("disk full")
        return items

    async def main():
        coalescer = Coalescer(serve)
        return await asyncio.gather(
            coalescer.submit("bad", 1), coalescer.submit("bad", 2), coalescer.submit("good", 3), return_exceptions=True
        )

    first, second, third = asyncio.run(main())
    assert isinstance(first, OSError) and isinstance(second, OSError) and third == 3


def test_a_cancelled_request_leaves_the_rest_of_its_batch_alone():
    async def serve(key, items):
        await asyncio.sleep(0.01)
        return items

    async def main():
        coalescer = Coalescer(serve)
        leaving = asyncio.ensure_future(coalescer.submit("k", 1))
        staying = asyncio.ensure_future(coalescer.submit("k", 2))
        await asyncio.sleep(0)
        leaving.cancel()
        return await staying, leaving.cancelled()

    assert asyncio.run(main()) == (2, True)


def test_single_decisions_of_one_turn_are_logged_in_one_append():
    store = CountingStore()

    async def main():
        engine = Engine(store, refresh_s=0)
        await engine.create(ExperimentCreate(name="hero", arms=["a", "b", "c"], seed=1))
        answers = await asyncio.gather(*(engine.decide_one("hero", DecisionRequest()) for _ in range(20)))
        later = await engine.decide_one("hero", DecisionRequest(unit="u1"))
        return answers, later

    answers, later = asyncio.run(main())
    assert store.appends == [20, 1]
    assert len({answer.decision_id for answer in answers}) == 20
    assert all(store.get_decision(answer.decision_id).arm == answer.arm for answer in answers)
    assert store.get_decision(later.decision_id).unit == "u1"


def test_a_bad_request_gets_its_own_error_while_its_neighbours_are_served():
    store = CountingStore()

    async def main():
        engine = Engine(store, refresh_s=0)
        await engine.create(ExperimentCreate(name="hero", arms=["a", "b"]))
        return await asyncio.gather(
            engine.decide_one("hero", DecisionRequest()),
            engine.decide_one("hero", DecisionRequest(allowed=["zzz"])),
            engine.decide_one("hero", DecisionRequest()),
            return_exceptions=True,
        )

    good, bad, other = asyncio.run(main())
    assert isinstance(bad, InvalidRequestError) and "zzz" in str(bad)
    assert good.arm in ("a", "b") and other.arm in ("a", "b")
    assert store.appends == [2]


def test_single_rewards_of_one_turn_are_learned_together_and_a_duplicate_is_applied_once():
    store = MemoryStore()

    async def main():
        engine = Engine(store, refresh_s=0)
        await engine.create(ExperimentCreate(name="hero", arms=["a", "b"], policy={"name": "ucb1"}))
        decisions = await engine.decide("hero", [DecisionRequest() for _ in range(4)])
        items = [RewardRequest(decision_id=d.decision_id, value=1.0) for d in decisions]
        results = await asyncio.gather(*(engine.reward_one("hero", item) for item in items + items[:1]))
        return engine, results

    engine, results = asyncio.run(main())
    assert [result.status for result in results] == [200] * 5
    assert store.counts("hero") == (4, 4)
    assert engine.experiment("hero").bandit.pulls.sum() == 4


@pytest.mark.parametrize("value", [2.0, -0.5])
def test_single_reward_out_of_range_is_refused_alone(value):
    async def main():
        engine = Engine(MemoryStore(), refresh_s=0)
        await engine.create(ExperimentCreate(name="hero", arms=["a", "b"]))
        (decision,) = await engine.decide("hero", [DecisionRequest()])
        return await asyncio.gather(
            engine.reward_one("hero", RewardRequest(decision_id=decision.decision_id, value=value)),
            engine.reward_one("hero", RewardRequest(decision_id=decision.decision_id, value=1.0)),
        )

    refused, accepted = asyncio.run(main())
    assert refused.status == 422 and accepted.status == 200


def test_store_futures_completed_by_another_thread_wake_the_loop_once_per_burst():
    """``settled`` hands a burst of completions to the loop in one wake-up, results and errors alike."""
    import threading
    from concurrent.futures import Future

    from banditkit.service.stores.base import settled

    async def main():
        loop = asyncio.get_running_loop()
        wakeups = []
        original = loop.call_soon_threadsafe

        def counting(callback, *args, **kwargs):
            wakeups.append(callback)
            return original(callback, *args, **kwargs)

        loop.call_soon_threadsafe = counting
        futures = [Future() for _ in range(50)]
        waiting = [asyncio.ensure_future(settled(future)) for future in futures]
        await asyncio.sleep(0)

        def complete():  # a writer thread finishing one group commit
            for index, future in enumerate(futures):
                if index == 7:
                    future.set_exception(OSError("disk full"))
                else:
                    future.set_result(index)

        writer = threading.Thread(target=complete)
        writer.start()
        writer.join()
        results = await asyncio.gather(*waiting, return_exceptions=True)
        return results, len(wakeups)

    results, wakeups = asyncio.run(main())
    assert isinstance(results[7], OSError)
    assert [r for i, r in enumerate(results) if i != 7] == [i for i in range(50) if i != 7]
    assert wakeups == 1

"""The engine without HTTP: guardrails (fallbacks, SLO), default rewards across restarts."""

from __future__ import annotations

import asyncio
import time

import pytest

from banditkit.service import rewarding
from banditkit.service.engine import Engine
from banditkit.service.schemas import DecisionRequest, ExperimentCreate, RewardRequest
from banditkit.service.stores import MemoryStore, SQLiteStore
from banditkit.service.stores.base import completed


class FlakyStore(MemoryStore):
    """Refuses the next ``failures`` decision writes, like a full disk would."""

    failures = 0

    def append_decisions(self, rows, assignments=None):
        if self.failures:
            self.failures -= 1
            return completed(error=OSError("disk full"))
        return super().append_decisions(rows, assignments)


def run(coroutine):
    return asyncio.run(coroutine)


def spec(**fields) -> ExperimentCreate:
    return ExperimentCreate(**{"name": "hero", "arms": ["a", "b", "c"], **fields})


def test_store_failure_serves_the_default_arm_and_logs_it_as_fallback():
    store = FlakyStore()
    engine = Engine(store, refresh_s=0)
    run(engine.create(spec(guardrails={"default_arm": "b"})))
    store.failures = 1
    (answer,) = run(engine.decide("hero", [DecisionRequest(unit="u1")]))
    assert answer.arm == "b" and answer.fallback and answer.propensity == 1.0
    logged = store.get_decision(answer.decision_id)
    assert logged.fallback and logged.arm == "b" and logged.unit == "u1"
    store.failures = 2                             # the fallback row cannot be logged either: still answered
    (answer,) = run(engine.decide("hero", [DecisionRequest()]))
    assert answer.fallback and store.get_decision(answer.decision_id) is None


def test_policy_failure_serves_the_default_arm(monkeypatch):
    store = MemoryStore()
    engine = Engine(store, refresh_s=0)
    run(engine.create(spec()))
    experiment = engine.experiment("hero")

    def broken(*args, **kwargs):
        raise FloatingPointError("policy state is corrupt")
    monkeypatch.setattr(experiment.bandit, "probabilities", broken)
    answers = run(engine.decide("hero", [DecisionRequest(), DecisionRequest(unit="x")]))
    assert [(a.arm, a.fallback) for a in answers] == [("a", True), ("a", True)]   # first active arm
    assert all(store.get_decision(a.decision_id).fallback for a in answers)


def test_an_slo_breach_disables_the_arm_and_is_stored(tmp_path):
    path = tmp_path / "slo.db"
    store = SQLiteStore(path)
    engine = Engine(store, refresh_s=0)
    run(engine.create(spec(guardrails={"default_arm": "a", "min_reward_rate": 0.5, "slo_window": 3})))
    answers = run(engine.decide("hero", [DecisionRequest(allowed=["b"]) for _ in range(3)]))
    results = run(engine.reward("hero", [RewardRequest(decision_id=a.decision_id, value=0.0) for a in answers]))
    assert [r.status for r in results] == [200, 200, 200]
    assert engine.experiment("hero").bandit.active_arms == ["a", "c"]
    deadline = time.monotonic() + 5
    while not any(e["kind"] == "guardrail" for e in store.events("hero")) and time.monotonic() < deadline:
        time.sleep(0.01)
    engine.close()
    store.close()
    reopened = SQLiteStore(path)
    try:
        again = Engine(reopened, refresh_s=0)
        assert again.experiment("hero").bandit.active_arms == ["a", "c"]
        assert "SLO" in again.experiment("hero").describe().arms[1].disabled_reason
        answers = run(again.decide("hero", [DecisionRequest() for _ in range(200)]))
        assert "b" not in {a.arm for a in answers}
    finally:
        reopened.close()


def test_default_rewards_survive_a_restart(tmp_path, monkeypatch):
    monkeypatch.setattr(rewarding, "SWEEP_BATCH", 4)        # several sweep transactions
    path = tmp_path / "sweep.db"
    store = SQLiteStore(path)
    engine = Engine(store, refresh_s=0)
    run(engine.create(spec(attribution_window_s=0.05, default_reward=0.0)))
    answers = run(engine.decide("hero", [DecisionRequest() for _ in range(10)]))
    run(engine.reward("hero", [RewardRequest(decision_id=answers[0].decision_id, value=1.0)]))
    engine.close()
    store.close()                                           # down before any window closed
    time.sleep(0.1)
    reopened = SQLiteStore(path)
    try:
        again = Engine(reopened, refresh_s=0)
        assert run(again.sweep()) == 9
        assert run(again.sweep()) == 0                      # once only
        assert reopened.counts("hero") == (10, 10)
        stats = again.stats("hero")
        assert sum(row.pulls for row in stats.arms) == 10
        assert sum((row.mean or 0.0) * row.pulls for row in stats.arms) == pytest.approx(1.0)
        late = run(again.reward("hero", [RewardRequest(decision_id=answers[5].decision_id, value=1.0)]))
        assert late[0].status == 410 and "default reward" in late[0].detail
    finally:
        reopened.close()


def test_rewards_for_a_removed_arm_are_recorded_but_not_applied():
    store = MemoryStore()
    engine = Engine(store, refresh_s=0)
    run(engine.create(spec()))
    answers = run(engine.decide("hero", [DecisionRequest(allowed=["c"])]))
    from banditkit.service.schemas import ArmsPatch

    run(engine.change_arms("hero", ArmsPatch(remove=["c"])))
    (result,) = run(engine.reward("hero", [RewardRequest(decision_id=answers[0].decision_id, value=1.0)]))
    assert result.status == 200 and result.applied is False
    assert store.get_reward(answers[0].decision_id).applied is False


def test_recent_decisions_are_bounded_and_fall_back_to_the_store():
    store = MemoryStore()
    engine = Engine(store, refresh_s=0)
    engine.recent = rewarding.RecentDecisions(capacity=2)
    run(engine.create(spec()))
    answers = run(engine.decide("hero", [DecisionRequest() for _ in range(3)]))
    run(engine.decide("hero", [DecisionRequest() for _ in range(2)]))           # evicts the first three
    first = answers[0].decision_id
    run(engine.reward("hero", [RewardRequest(decision_id=first, value=1.0)]))
    found = engine.recent.find(store, [first])
    assert found[first][1].value == 1.0                                         # read from the store
    retry = run(engine.reward("hero", [RewardRequest(decision_id=first, value=0.0)]))
    assert retry[0].status == 409


def test_the_sweeper_waits_for_decisions_still_being_written():
    """A decision whose write is slower than its window must still get its default reward."""
    store = MemoryStore()
    engine = Engine(store, refresh_s=0)
    run(engine.create(spec(attribution_window_s=0.01, default_reward=0.0)))
    release = asyncio.Event()

    async def scenario():
        original = store.append_decisions

        def slow_write(rows, assignments=None):
            future = asyncio.get_running_loop().create_future()

            async def later():
                await release.wait()
                result = original(rows, assignments)
                future.set_result(result.result())
            asyncio.ensure_future(later())
            return future
        store.append_decisions = slow_write
        decision = asyncio.ensure_future(engine.decide("hero", [DecisionRequest()]))
        await asyncio.sleep(0.05)                       # the window has closed; the row is not written yet
        assert await engine.sweep() == 0
        release.set()
        (answer,) = await decision
        await asyncio.sleep(0.02)
        assert await engine.sweep() == 1                # not skipped by the first sweep
        return answer
    answer = run(scenario())
    assert store.get_reward(answer.decision_id).source == "default"

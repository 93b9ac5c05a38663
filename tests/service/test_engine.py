"""The engine without HTTP: guardrails (fallbacks, SLO), default rewards across restarts."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from banditkit.service import experiment as experiment_module
from banditkit.service import rewarding
from banditkit.service.engine import Engine
from banditkit.service.model import DeltaPlanner, split
from banditkit.service.schemas import ArmsPatch, DecisionRequest, ExperimentCreate, RewardRequest
from banditkit.service.stores import MemoryStore, RewardRecord, RewardWork, SQLiteStore
from banditkit.service.stores.base import StoreUnavailableError, completed


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
    store.failures = 2  # the fallback row cannot be logged either: the error answers, no unlogged decision
    with pytest.raises(OSError, match="disk full"):
        run(engine.decide("hero", [DecisionRequest()]))
    assert store.counts("hero") == (1, 0)


class LostAnswerStore(MemoryStore):
    """Takes the next decision write, then fails to answer it: Redis killed after the write, before its reply."""

    lose = False
    landed: tuple[str, ...] = ()

    def append_decisions(self, rows, assignments=None):
        written = super().append_decisions(rows, assignments)
        if self.lose:
            self.lose, self.landed = False, tuple(row.decision_id for row in rows)
            written.result()
            return completed(error=StoreUnavailableError("Redis: does not answer (connection lost)"))
        return written


def test_a_fallback_never_shares_its_id_with_a_write_that_may_have_landed():
    """The answered fallback is what the log holds under its id; the row the failed write left has another."""
    store = LostAnswerStore()
    engine = Engine(store, refresh_s=0)
    run(engine.create(spec(guardrails={"default_arm": "b"}, seed=3)))
    store.lose = True
    answers = run(engine.decide("hero", [DecisionRequest(unit=f"u{i}") for i in range(20)]))
    assert all(answer.fallback and answer.arm == "b" for answer in answers)
    # A store that ships a spooled row once (Redis) would keep the landed row under a shared id.
    assert not {answer.decision_id for answer in answers} & set(store.landed)
    for answer in answers:
        logged = store.get_decision(answer.decision_id)
        assert (logged.arm, logged.propensity, logged.fallback) == ("b", 1.0, True)
    assert store.counts("hero")[0] == 40  # the landed write's 20 rows are not anyone's answer


def test_policy_failure_serves_the_default_arm(monkeypatch):
    store = MemoryStore()
    engine = Engine(store, refresh_s=0)
    run(engine.create(spec()))
    experiment = engine.experiment("hero")

    def broken(*args, **kwargs):
        raise FloatingPointError("policy state is corrupt")

    monkeypatch.setattr(experiment.bandit, "probabilities", broken)
    answers = run(engine.decide("hero", [DecisionRequest(), DecisionRequest(unit="x")]))
    assert [(a.arm, a.fallback) for a in answers] == [("a", True), ("a", True)]  # first active arm
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
    monkeypatch.setattr(rewarding, "SWEEP_BATCH", 4)  # several sweep transactions
    path = tmp_path / "sweep.db"
    store = SQLiteStore(path)
    engine = Engine(store, refresh_s=0)
    run(engine.create(spec(attribution_window_s=0.05, default_reward=0.0)))
    answers = run(engine.decide("hero", [DecisionRequest() for _ in range(10)]))
    run(engine.reward("hero", [RewardRequest(decision_id=answers[0].decision_id, value=1.0)]))
    engine.close()
    store.close()  # down before any window closed
    time.sleep(0.1)
    reopened = SQLiteStore(path)
    try:
        again = Engine(reopened, refresh_s=0)
        assert run(again.sweep()) == 9
        assert run(again.sweep()) == 0  # once only
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
    run(engine.decide("hero", [DecisionRequest() for _ in range(2)]))  # evicts the first three
    first = answers[0].decision_id
    run(engine.reward("hero", [RewardRequest(decision_id=first, value=1.0)]))
    found = engine.recent.find(store, [first])
    assert found[first][1].value == 1.0  # read from the store
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
        writes = []  # the pending writes, kept referenced until done

        def slow_write(rows, assignments=None):
            future = asyncio.get_running_loop().create_future()

            async def later():
                await release.wait()
                result = original(rows, assignments)
                future.set_result(result.result())

            writes.append(asyncio.ensure_future(later()))
            return future

        store.append_decisions = slow_write
        decision = asyncio.ensure_future(engine.decide("hero", [DecisionRequest()]))
        await asyncio.sleep(0.05)  # the window has closed; the row is not written yet
        assert await engine.sweep() == 0
        release.set()
        (answer,) = await decision
        await asyncio.sleep(0.02)
        assert await engine.sweep() == 1  # not skipped by the first sweep
        return answer

    answer = run(scenario())
    assert store.get_reward(answer.decision_id).source == "default"


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_decision_rewarded_twice_in_one_batch_counts_once(kind, tmp_path):
    """The first reward of a decision in a batch is the one recorded; a repeat gets its answer (200 for the
    same value, 409 for another), whatever the store."""
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "twice.db")
    engine = Engine(store, refresh_s=0)
    try:
        run(engine.create(spec(attribution_window_s=600.0)))
        (first, second) = run(engine.decide("hero", [DecisionRequest(), DecisionRequest()]))
        items = [
            RewardRequest(decision_id=first.decision_id, value=1.0),
            RewardRequest(decision_id=second.decision_id, value=0.0),
            RewardRequest(decision_id=first.decision_id, value=1.0),
            RewardRequest(decision_id=first.decision_id, value=0.0),
        ]
        results = run(engine.reward("hero", items))
        assert [r.status for r in results] == [200, 200, 200, 409]
        bandit = engine.experiment("hero").bandit
        assert bandit.pulls.sum() == 2 and bandit.version == 1
        assert store.counts("hero") == (2, 2)
    finally:
        engine.close()
        store.close()


def test_an_arm_change_waits_for_rewards_committed_before_it(tmp_path):
    """Rewards queued before an arm change commit first and move the version; the change is refused on the
    old version, built again on the new one, and rewards sent meanwhile wait for it: every write lands once,
    and the served model is the stored one."""
    store = SQLiteStore(tmp_path / "race.db", commit_interval_s=0.02)
    engine = Engine(store, refresh_s=0)

    async def scenario():
        await engine.create(spec(attribution_window_s=600.0))
        decisions = await engine.decide("hero", [DecisionRequest() for _ in range(40)])
        batches = [
            [RewardRequest(decision_id=d.decision_id, value=1.0) for d in decisions[i : i + 10]]
            for i in range(0, 40, 10)
        ]
        first = [asyncio.ensure_future(engine.reward("hero", batch)) for batch in batches[:2]]
        await asyncio.sleep(0)  # the first rewards are queued before the change
        change = asyncio.ensure_future(engine.change_arms("hero", ArmsPatch(add=["d"])))
        await asyncio.sleep(0)
        later = [asyncio.ensure_future(engine.reward("hero", batch)) for batch in batches[2:]]
        results = await asyncio.gather(*first, change, *later)
        return [r.status for batch in results[:2] + results[3:] for r in batch], results[2]

    try:
        statuses, changed = asyncio.run(scenario())
        assert statuses == [200] * 40 and [arm.name for arm in changed.arms] == ["a", "b", "c", "d"]
        served = engine.experiment("hero").bandit
        (record,) = store.load_experiments()
        assert served.version == record.version == 5  # four reward batches and one change
        assert record.model["arms"] == served.arms == ["a", "b", "c", "d"]
        assert served.pulls.sum() == 40
        assert [e["kind"] for e in store.events("hero")] == ["create", "arms"]
    finally:
        engine.close()
        store.close()


def test_memory_that_missed_a_commit_reloads_the_stored_model():
    """A commit whose result never reached the served Bandit (its request was cancelled as it committed) is
    noticed by the next one, whose version skips it: the served model is then reloaded from the store."""
    store = MemoryStore()
    engine = Engine(store, refresh_s=0)
    run(engine.create(spec(attribution_window_s=600.0)))
    decisions = run(engine.decide("hero", [DecisionRequest() for _ in range(4)]))
    experiment = engine.experiment("hero")
    missed = [RewardRecord(d.decision_id, "hero", d.arm, 1.0, time.time()) for d in decisions[:2]]
    planner = DeltaPlanner.of(experiment.bandit, {d.decision_id: store.get_decision(d.decision_id) for d in decisions})
    store.commit_rewards(RewardWork("hero", missed, planner)).result()  # committed, never followed
    results = run(engine.reward("hero", [RewardRequest(decision_id=d.decision_id, value=0.0) for d in decisions[2:]]))
    assert [r.status for r in results] == [200, 200]
    (record,) = store.load_experiments()
    served = experiment.bandit
    assert served.version == record.version == 2 and served.pulls.sum() == 4
    arrays = split(served)[1]
    assert arrays.keys() == record.state.keys()
    for key, value in arrays.items():
        np.testing.assert_array_equal(value, record.state[key], err_msg=key)


def test_an_adopted_model_continues_the_served_random_stream(monkeypatch):
    """A model adopted from the store (built off the event loop while decisions go on) draws on from where the
    served Bandit's generator is at the swap: the draws made while it was built are not drawn again."""
    engine = Engine(MemoryStore())
    try:
        run(engine.create(spec(seed=5)))
        experiment = engine.experiments["hero"]
        served = experiment.bandit
        model, arrays = split(served)
        record = engine.store.load_experiment("hero")
        newer = type(record)(record.name, record.config, model, arrays, served.version + 1, record.created_at)
        drawn_meanwhile: list[float] = []
        join = experiment_module.join

        def join_while_serving(*args):
            built = join(*args)
            drawn_meanwhile.extend(served.rng.random(3).tolist())  # decisions served while it was built
            return built

        monkeypatch.setattr(experiment_module, "join", join_while_serving)
        experiment.adopt(newer)
        assert experiment.bandit is not served and experiment.bandit.version == served.version + 1
        assert experiment.bandit.rng.random(4).tolist() == served.rng.random(4).tolist()
        assert not set(drawn_meanwhile) & set(experiment.bandit.rng.random(100).tolist())
    finally:
        engine.close()

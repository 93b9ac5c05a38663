"""The store contract, run against the memory store, a real SQLite file and the real Redis (127.0.0.1:6379,
a key prefix of its own per test).

The Redis store does not learn (``learns_in_process`` False: the learner adds the deltas), so the checks
of the policy state a reward changes run on the memory and SQLite stores only (``learning_store``).
"""

from __future__ import annotations

import gc
import threading
import uuid
from dataclasses import replace

import numpy as np
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from banditkit.policies import ThompsonSampling
from banditkit.service.stores import (
    Assignment,
    DecisionRecord,
    ExperimentExistsError,
    ExperimentRecord,
    MemoryStore,
    RewardRecord,
    SQLiteStore,
    open_store,
)
from banditkit.service.stores.base import (
    DELETED,
    Delta,
    ModelChange,
    ModelMovedError,
    RewardWork,
    decision_row,
    decode_state,
    encode_state,
    merge_delta,
    with_status,
)
from banditkit.service.stores.redis import RedisStore
from banditkit.service.stores.redis_keys import RedisURLError


def open_redis(prefix: str, tmp_path) -> RedisStore:
    return RedisStore(f"redis://127.0.0.1:6379/0?prefix={prefix}", spool_dir=tmp_path / "spool")


def make_store(kind: str, tmp_path, prefix: str | None = None):
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(tmp_path / "store.db")
    assert prefix is not None, "a Redis store needs a key prefix of its own"
    return open_redis(prefix, tmp_path)


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request, tmp_path):
    prefix = request.getfixturevalue("shared_store")[1] if request.param == "redis" else None
    made = make_store(request.param, tmp_path, prefix)
    yield made
    made.close()


@pytest.fixture(params=["memory", "sqlite"])
def learning_store(request, tmp_path):
    """The stores that add a reward's policy delta themselves."""
    made = make_store(request.param, tmp_path)
    yield made
    made.close()


@pytest.fixture
def redis_prefixes():
    """Fresh key prefixes on the shared Redis, made with ``redis_prefixes()`` (one per Hypothesis example);
    their keys are deleted after the test."""
    made: list[str] = []

    def new() -> str:
        made.append(f"t{uuid.uuid4().hex[:12]}")
        return made[-1]

    yield new
    client = redis.Redis(host="127.0.0.1", port=6379, decode_responses=True)
    for prefix in made:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
    client.close()


def make_experiment(name="hero", arms=2):
    state = {"policy/pulls": np.zeros((1, arms)), "policy/reward_sums": np.zeros((1, arms))}
    return ExperimentRecord(name, {"name": name}, {"arms": ["a", "b"][:arms]}, state, 0, 1000.0)


def decision(i, t=1000.0, experiment="hero", arm="a", unit=None):
    return DecisionRecord(
        f"d{i:04d}",
        t + i,
        experiment,
        unit,
        (0.5, -1.0) if i % 2 else None,
        arm,
        0.25,
        {"a": 0.25, "b": 0.75},
        3,
        bool(i % 3 == 0),
    )


class Counting:
    """The planner of a counts/sums policy: one pull and the reward on each reward's arm."""

    def plan(self, rewards, arrays):
        counts, sums = np.zeros((1, 2)), np.zeros((1, 2))
        for reward in rewards:
            index = "ab".index(reward.arm)
            counts[0, index] += 1
            sums[0, index] += reward.value
        return Delta(ThompsonSampling(), {"policy/pulls": counts, "policy/reward_sums": sums}), [True] * len(rewards)


class Broken:
    def plan(self, rewards, arrays):
        raise RuntimeError("policy failed")


def work(rewards, planner=None, watermark=None):
    return RewardWork("hero", rewards, planner or Counting(), watermark)


def change(model, state, version, expected, kind="arms"):
    return ModelChange(model, state, version, expected, {"kind": kind})


def reward(i, value=1.0, arm="a", source="client"):
    return RewardRecord(f"d{i:04d}", "hero", arm, value, 2000.0 + i, source)


def test_decision_round_trip(store):
    store.create_experiment(make_experiment(), {"kind": "create"}).result()
    rows = [decision(i) for i in range(5)]
    store.append_decisions(rows).result()
    for row in rows:
        assert store.get_decision(row.decision_id) == row
    assert store.get_decision("missing") is None
    assert store.counts("hero") == (5, 0)


finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    times=st.lists(finite, min_size=1, max_size=20),
    propensity=st.floats(0.0, 1.0),
    unit=st.none() | st.text(min_size=1, max_size=12),
    context=st.none() | st.lists(finite, max_size=4),
    arm=st.text(min_size=1, max_size=12),
    version=st.integers(0, 2**62),
)
def test_logged_values_come_back_exactly(
    tmp_path_factory, redis_prefixes, times, propensity, unit, context, arm, version
):
    """Every double, text (NUL included) and integer of a decision row reads back exactly (multi-row inserts,
    JSON through Lua)."""
    rows = [
        DecisionRecord(
            f"d{i:04d}",
            t,
            "hero",
            unit,
            None if context is None else tuple(context),
            arm,
            propensity,
            {arm: propensity},
            version,
            bool(i % 2),
        )
        for i, t in enumerate(times)
    ]
    directory = tmp_path_factory.mktemp("log")
    for store in (MemoryStore(), SQLiteStore(directory / "store.db"), open_redis(redis_prefixes(), directory)):
        try:
            store.create_experiment(make_experiment(), {"kind": "create"}).result()
            store.append_decisions(rows).result()
            assert [store.get_decision(row.decision_id) for row in rows] == rows
        finally:
            store.close()


def test_a_large_append_is_written_whole(store):
    """More rows than one multi-row INSERT holds (3,000) still land in one append."""
    store.create_experiment(make_experiment(), {"kind": "create"}).result()
    rows = [decision(i) for i in range(6500)]
    store.append_decisions(rows).result()
    assert store.counts("hero") == (6500, 0)
    assert store.get_decision("d6499") == rows[-1] and store.get_decision("d3000") == rows[3000]


def test_the_memory_log_adds_nothing_to_garbage_collection():
    """Logged decisions and rewards are tuples the collector stops tracking: its full collections, which
    pause the whole process, do not grow with the log."""
    store = MemoryStore()
    store.create_experiment(make_experiment(), {"kind": "create"}).result()
    gc.collect()
    tracked = len(gc.get_objects())
    store.append_decisions([decision(i) for i in range(5000)]).result()
    store.commit_rewards(work([reward(i) for i in range(0, 5000, 2)])).result()
    gc.collect()
    gc.collect()
    assert len(gc.get_objects()) - tracked < 1000  # as records: 7,500 more
    assert store.get_decision("d4999") == decision(4999) and store.get_reward("d0002").value == 1.0


def test_experiment_names_are_unique(store):
    store.create_experiment(make_experiment(), {"kind": "create"}).result()
    with pytest.raises(ExperimentExistsError):
        store.create_experiment(make_experiment(), {"kind": "create"}).result()
    assert [r.name for r in store.load_experiments()] == ["hero"]


def test_a_reward_is_recorded_once(store):
    store.create_experiment(make_experiment(), {"kind": "create"}).result()
    store.append_decisions([decision(i) for i in range(3)]).result()
    outcomes = store.commit_rewards(work([reward(0), reward(1, 0.0)])).result().outcomes
    assert [o.first for o in outcomes] == [True, True]
    again = store.commit_rewards(work([reward(2, 0.5), reward(0, 5.0), reward(1, 0.0)])).result().outcomes
    assert [o.first for o in again] == [True, False, False]
    assert again[1].reward.value == 1.0 and again[2].reward.value == 0.0  # a retry gets the stored reward
    assert store.get_reward("d0000").value == 1.0 and store.get_reward("d0001").arm == "a"
    assert store.counts("hero") == (3, 3)


def test_work_holds_one_reward_per_decision():
    """Which of several rewards of a decision counts is decided above the stores (the first one)."""
    with pytest.raises(ValueError, match="one reward per decision id"):
        work([reward(0), reward(1), reward(0, 0.0)])


def test_a_reward_is_applied_once(learning_store):
    store = learning_store
    store.create_experiment(make_experiment(), {"kind": "create"}).result()
    store.append_decisions([decision(i) for i in range(3)]).result()
    first = store.commit_rewards(work([reward(0), reward(1, 0.0)])).result()
    assert [o.first for o in first.outcomes] == [True, True] and first.version == 1
    np.testing.assert_array_equal(first.delta.arrays["policy/pulls"], [[2.0, 0.0]])
    again = store.commit_rewards(work([reward(1, 0.0), reward(0, 5.0)])).result()
    assert [o.first for o in again.outcomes] == [False, False]
    assert again.delta is None and again.version == 1  # the retry changed nothing
    (record,) = store.load_experiments()
    np.testing.assert_array_equal(record.state["policy/pulls"], [[2.0, 0.0]])
    np.testing.assert_array_equal(record.state["policy/reward_sums"], [[1.0, 0.0]])
    assert record.version == 1
    assert store.get_reward("d0000").value == 1.0 and store.counts("hero") == (3, 2)


def test_a_failing_delta_writes_nothing(learning_store):
    store = learning_store
    store.create_experiment(make_experiment(), {"kind": "create"}).result()
    store.append_decisions([decision(0)]).result()
    with pytest.raises(RuntimeError, match="policy failed"):
        store.commit_rewards(work([reward(0)], Broken())).result()
    assert store.get_reward("d0000") is None
    assert store.load_experiments()[0].version == 0
    store.commit_rewards(work([reward(0)])).result()
    (record,) = store.load_experiments()
    assert record.version == 1 and record.state["policy/pulls"].tolist() == [[1.0, 0.0]]


def test_rewards_add_to_the_state_a_model_change_wrote(learning_store):
    """A reward after a model change (arms, rollback) adds its delta to the new state, not to an older one."""
    store = learning_store
    store.create_experiment(make_experiment(), {"kind": "create"}).result()
    store.append_decisions([decision(i) for i in range(3)]).result()
    store.commit_rewards(work([reward(0)])).result()
    restored = {"policy/pulls": np.array([[10.0, 20.0]]), "policy/reward_sums": np.array([[5.0, 6.0]])}
    store.replace_model("hero", change({"arms": ["a", "b"]}, restored, 7, 1, "rollback")).result()
    store.commit_rewards(work([reward(1, 0.5, arm="b")])).result()
    (record,) = store.load_experiments()
    assert record.version == 8
    np.testing.assert_array_equal(record.state["policy/pulls"], [[10.0, 21.0]])
    np.testing.assert_array_equal(record.state["policy/reward_sums"], [[5.0, 6.5]])


def test_unrewarded_and_watermark(store):
    store.create_experiment(make_experiment(), {"kind": "create"}).result()
    store.append_decisions([decision(i) for i in range(6)]).result()
    store.commit_rewards(work([reward(1)])).result()
    pending = store.unrewarded("hero", 1000.0, 1004.0, 10)
    assert [row.decision_id for row in pending] == ["d0000", "d0002", "d0003"]
    assert [row.decision_id for row in store.unrewarded("hero", 1000.0, 1004.0, 2)] == ["d0000", "d0002"]
    store.commit_rewards(work([reward(0, 0.0, source="default")], watermark=1004.0)).result()
    assert store.get_reward("d0000").source == "default"
    assert [row.decision_id for row in store.unrewarded("hero", 1000.0, 1004.0, 10)] == ["d0002", "d0003"]
    if store.learns_in_process:  # the in-process sweeper's progress (a Redis learner settles windows itself)
        assert store.load_experiments()[0].sweep_watermark == 1004.0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    times=st.lists(st.integers(0, 10_000), min_size=1, max_size=40, unique=True),
    rewarded=st.sets(st.integers(0, 39)),
    since=st.integers(0, 10_000),
    span=st.integers(0, 10_000),
    limit=st.integers(1, 50),
)
def test_every_store_finds_the_same_unrewarded_decisions(
    tmp_path_factory, redis_prefixes, times, rewarded, since, span, limit
):
    """Decisions logged out of time order: every store settles, exports and counts them alike."""
    rows = [
        DecisionRecord(f"d{i:04d}", float(t), "hero", None, None, "a", 0.5, {"a": 0.5, "b": 0.5}, 1, False)
        for i, t in enumerate(times)
    ]
    directory = tmp_path_factory.mktemp("sweep")
    stores = [MemoryStore(), SQLiteStore(directory / "store.db"), open_redis(redis_prefixes(), directory)]
    try:
        answers = []
        for store in stores:
            store.create_experiment(make_experiment(), {"kind": "create"}).result()
            for batch in (rows[::2], rows[1::2]):  # two appends, each in no particular order of time
                store.append_decisions(batch).result()
            store.commit_rewards(work([reward(i) for i in sorted(rewarded) if i < len(times)])).result()
            answers.append(
                (
                    [row.decision_id for row in store.unrewarded("hero", since, since + span, limit)],
                    [row[0] for row in store.iter_log("hero")],
                    store.counts("hero"),
                )
            )
        assert answers[0] == answers[1] == answers[2]
        expected = sorted(
            (t, f"d{i:04d}") for i, t in enumerate(times) if since <= t < since + span and i not in rewarded
        )[:limit]
        assert answers[0][0] == [decision_id for _, decision_id in expected]
    finally:
        for store in stores:
            store.close()


def test_models_snapshots_and_events(store):
    store.create_experiment(make_experiment(), {"kind": "create"}).result()
    state = {"policy/pulls": np.array([[4.0, 1.0]]), "policy/reward_sums": np.array([[2.0, 0.5]])}
    snapshot_id = store.save_snapshot("hero", {"arms": ["a", "b"]}, state, 7).result()
    store.replace_model("hero", change({"arms": ["a", "b", "c"]}, make_experiment(arms=2).state, 8, 0)).result()
    with pytest.raises(
        ModelMovedError, match="'hero' is at version 8, the model change \\(arms\\) was built for version 7"
    ):
        store.replace_model("hero", change({"arms": ["a"]}, make_experiment(arms=1).state, 8, 7)).result()
    snapshot = store.get_snapshot("hero", snapshot_id)
    assert snapshot.policy_version == 7 and snapshot.model == {"arms": ["a", "b"]}
    np.testing.assert_array_equal(snapshot.state["policy/pulls"], state["policy/pulls"])
    assert store.get_snapshot("other", snapshot_id) is None
    assert [s.snapshot_id for s in store.list_snapshots("hero")] == [snapshot_id]
    (record,) = store.load_experiments()
    assert record.version == 8 and record.model["arms"] == ["a", "b", "c"]
    assert [e["kind"] for e in store.events("hero")] == ["create", "snapshot", "arms"]


def test_a_deleted_experiment_is_kept_until_purged_then_nothing_of_it_but_its_events(store):
    store.create_experiment(make_experiment(), {"kind": "create"}).result()
    store.create_experiment(make_experiment("other"), {"kind": "create"}).result()
    store.append_decisions(
        [decision(i, unit="u1") for i in range(4)], {"u1": Assignment("a", 1.0, {"a": 1.0})}
    ).result()
    store.append_decisions([decision(9, experiment="other")]).result()
    store.commit_rewards(work([reward(0), reward(1, 0.0)])).result()
    store.save_snapshot("hero", {"arms": ["a", "b"]}, make_experiment().state, 1).result()
    hero = next(record for record in store.load_experiments() if record.name == "hero")
    deleted = ModelChange(
        hero.model,
        hero.state,
        hero.version + 1,
        hero.version,
        {"kind": "delete"},
        config=with_status(hero.config, DELETED),
    )
    store.replace_model("hero", deleted).result()
    assert store.deleted_names() == {"hero"}
    assert store.load_experiment("hero").config == {"name": "hero", "status": "deleted"}
    assert len(list(store.iter_log("hero"))) == 4  # the log is kept
    with pytest.raises(ExperimentExistsError):  # and the name is taken
        store.create_experiment(make_experiment(), {"kind": "create"}).result()

    assert store.purge_experiment("hero", {"kind": "purge"}).result() == (4, 2)
    assert store.deleted_names() == set() and store.load_experiment("hero") is None
    assert list(store.iter_log("hero")) == [] and store.counts("hero") == (0, 0)
    assert store.find_decisions(["d0000", "d0001", "d0009"]).keys() == {"d0009"}  # another experiment's stays
    assert store.get_reward("d0000") is None and store.get_assignment("hero", "u1") is None
    assert store.list_snapshots("hero") == []
    assert [e["kind"] for e in store.events("hero")] == ["create", "snapshot", "delete", "purge"]
    assert [r.name for r in store.load_experiments()] == ["other"]

    store.create_experiment(make_experiment(), {"kind": "create"}).result()  # the name is free
    (record,) = [record for record in store.load_experiments() if record.name == "hero"]
    assert record.version == 0 and record.config == {"name": "hero"}
    np.testing.assert_array_equal(record.state["policy/pulls"], np.zeros((1, 2)))


def test_a_redis_experiment_made_after_a_purge_starts_empty_whatever_a_late_worker_wrote(shared_store, tmp_path):
    """A worker that has not seen the delete yet may log a decision after the purge: the next creation drops it."""
    store = open_redis(shared_store[1], tmp_path)
    try:
        store.create_experiment(make_experiment(), {"kind": "create"}).result()
        hero = store.load_experiment("hero")
        config = with_status(hero.config, DELETED)
        store.replace_model(
            "hero", ModelChange(hero.model, hero.state, 1, 0, {"kind": "delete"}, config=config)
        ).result()
        with pytest.raises(ExperimentExistsError):
            store.create_experiment(make_experiment(), {"kind": "create"}).result()
        assert store.experiment_names() == set() and store.deleted_names() == {"hero"}
        store.purge_experiment("hero", {"kind": "purge"}).result()
        store.append_decisions([decision(i) for i in range(3)]).result()  # the late worker
        assert len(list(store.iter_log("hero"))) == 3
        store.create_experiment(make_experiment(), {"kind": "create"}).result()
        assert list(store.iter_log("hero")) == [] and store.counts("hero") == (0, 0)
        assert store.experiment_names() == {"hero"} and store.deleted_names() == set()
    finally:
        store.close()


def test_sticky_assignments_are_stored_with_their_decision(store):
    store.create_experiment(make_experiment(), {"kind": "create"}).result()
    first = Assignment("a", 0.25, {"a": 0.25, "b": 0.75})
    store.append_decisions([decision(0, unit="u1")], {"u1": first}).result()
    assert store.get_assignment("hero", "u1") == first
    second = Assignment("b", 0.75, {"a": 0.25, "b": 0.75})  # after "a" was disabled
    store.append_decisions([decision(1, unit="u1", arm="b")], {"u1": second}).result()
    assert store.get_assignment("hero", "u1") == second
    assert store.get_assignment("hero", "u2") is None


def test_log_joins_rewards_in_time_order(store):
    store.create_experiment(make_experiment(), {"kind": "create"}).result()
    store.append_decisions([decision(i) for i in (2, 0, 1)]).result()
    store.commit_rewards(work([reward(1, 0.5)])).result()
    log = list(store.iter_log("hero"))
    assert [(row[0], row[10]) for row in log] == [("d0000", None), ("d0001", 0.5), ("d0002", None)]
    assert [(*row[:10], row[11]) for row in log] == [decision_row(decision(i)) for i in range(3)]


def test_decisions_are_counted_per_arm_and_bucket(store):
    """The allocation over time (the dashboard's): per minute and per hour, every decision once."""
    store.create_experiment(make_experiment(), {"kind": "create"}).result()
    times = [3600.0 * 500 + offset for offset in (0.0, 59.0, 60.0, 3599.0, 3600.0, 7300.0)]
    rows = [decision(0, t, arm=arm) for t, arm in zip(times, "abaaba", strict=True)]
    rows = [replace(row, decision_id=f"c{i}") for i, row in enumerate(rows)]
    store.append_decisions(rows[:3]).result()
    store.append_decisions(rows[3:]).result()
    minutes = store.decision_counts("hero", 60)
    assert minutes.arms == ("a", "b")
    assert (minutes.buckets - 30_000).tolist() == [0, 1, 59, 60, 121]
    assert minutes.counts.tolist() == [[1, 1], [1, 0], [1, 0], [0, 1], [1, 0]]
    hours = store.decision_counts("hero", 3600)
    assert hours.buckets.tolist() == [500, 501, 502] and hours.counts.tolist() == [[3, 1], [0, 1], [1, 0]]
    assert store.decision_counts("other", 3600).counts.shape == (0, 0)


def test_sqlite_survives_reopening(tmp_path):
    path = tmp_path / "reopen.db"
    first = SQLiteStore(path, synchronous="NORMAL")
    first.create_experiment(make_experiment(), {"kind": "create"}).result()
    first.append_decisions([decision(0)]).result()
    first.commit_rewards(work([reward(0, 1.0)])).result()
    first.close()
    second = open_store(f"sqlite:///{path}")
    try:
        assert second.get_decision("d0000") == decision(0)
        assert second.load_experiments()[0].state["policy/pulls"].tolist() == [[1.0, 0.0]]
        assert second.counts("hero") == (1, 1)
    finally:
        second.close()


def test_group_commit_shares_transactions(tmp_path):
    store = SQLiteStore(tmp_path / "group.db", synchronous="FULL", commit_interval_s=0.002)
    store.create_experiment(make_experiment(), {"kind": "create"}).result()

    def client(offset):
        futures = [store.append_decisions([decision(offset + i)]) for i in range(200)]
        for future in futures:
            future.result()

    threads = [threading.Thread(target=client, args=(k * 1000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.counts("hero") == (800, 0)
    assert store.writer.groups_committed < store.writer.jobs_committed / 4
    store.close()


def test_open_store_rejects_unknown_schemes_and_malformed_redis_urls():
    with pytest.raises(ValueError, match="redis://HOST:PORT/DB"):
        open_store("postgres://localhost")
    for url, problem in (
        ("redis://localhost/zero", "database number"),
        ("redis://localhost:0x/0", "port"),
        ("redis://localhost/0?prefx=a", "unknown option 'prefx'"),
        ("redis+cluster://localhost/1", "not allowed for a cluster"),
        ("redis://127.0.0.1:1/0", "does not answer"),
    ):
        with pytest.raises(RedisURLError, match=problem) as caught:
            open_store(url)
        assert url in str(caught.value) and "\n" not in str(caught.value)


arrays = hnp.arrays(
    st.sampled_from([np.float64, np.int64]),
    hnp.array_shapes(min_dims=1, max_dims=4),
    elements=st.integers(-(10**6), 10**6),
)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.text("abcxyz_", min_size=1, max_size=8), arrays, max_size=4))
def test_state_encoding_round_trips_exactly(state):
    decoded = decode_state(encode_state(state))
    assert decoded.keys() == state.keys()
    for key, value in state.items():
        assert decoded[key].dtype == value.dtype and decoded[key].shape == value.shape
        np.testing.assert_array_equal(decoded[key], value)


def test_merge_delta_merges_the_policy_part_by_its_rule_and_adds_the_rest():
    from banditkit.policies import DiscountedThompsonSampling

    policy = DiscountedThompsonSampling(gamma=0.5)
    state = {
        "policy/successes": np.array([[1.0, 2.0]]),
        "policy/failures": np.array([[4.0, 4.0]]),
        "ledger/pulls": np.array([3.0, 4.0]),
        "ledger/total_reward": np.array([3.0]),
    }
    policy_state = {"successes": state["policy/successes"], "failures": state["policy/failures"]}
    updated = policy.update(policy_state, np.array([0]), np.array([1.0]))
    delta = {f"policy/{key}": value for key, value in policy.state_delta(policy_state, updated).items()}
    merged = merge_delta(policy, state, {**delta, "ledger/pulls": np.array([1.0, 0.0])})
    assert merged["policy/successes"].tolist() == [[1.5, 1.0]] and merged["policy/failures"].tolist() == [[2.0, 2.0]]
    assert merged["ledger/pulls"].tolist() == [4.0, 4.0]
    assert merged["ledger/total_reward"] is state["ledger/total_reward"]  # absent from the delta: kept
    assert state["ledger/pulls"].tolist() == [3.0, 4.0]  # inputs untouched
    assert merge_delta(policy, state, {})["policy/successes"] is state["policy/successes"]


def test_a_failing_job_does_not_sink_its_group(tmp_path):
    """Jobs queued together commit together; one that raises is rolled back alone."""
    store = SQLiteStore(tmp_path / "isolate.db", commit_interval_s=0.05)
    store.create_experiment(make_experiment(), {"kind": "create"}).result()
    good = [store.append_decisions([decision(i)]) for i in range(3)]
    bad = store.commit_rewards(work([reward(0)], Broken()))
    more = store.append_decisions([decision(3)])
    for future in [*good, more]:
        future.result()
    with pytest.raises(RuntimeError, match="policy failed"):
        bad.result()
    assert store.counts("hero") == (4, 0)
    store.close()


def test_a_model_change_is_refused_when_a_reward_moved_the_version(tmp_path):
    """A model change runs after every write queued before it and commits only on the version it was built
    on: a reward queued just before it moves the version, and the caller builds the change again."""
    store = SQLiteStore(tmp_path / "order.db", commit_interval_s=0.05)
    store.create_experiment(make_experiment(), {"kind": "create"}).result()
    store.append_decisions([decision(0)]).result()
    rewarded = store.commit_rewards(work([reward(0)]))
    state = {"policy/pulls": np.ones((1, 2)), "policy/reward_sums": np.zeros((1, 2))}
    with pytest.raises(ModelMovedError, match="at version 1"):
        store.replace_model("hero", change({"arms": ["a", "b"]}, state, 1, 0)).result()
    assert rewarded.result().version == 1
    store.replace_model("hero", change({"arms": ["a", "b"]}, state, 2, 1)).result()
    (record,) = store.load_experiments()
    assert record.version == 2 and record.state["policy/pulls"].tolist() == [[1.0, 1.0]]
    assert [e["kind"] for e in store.events("hero")] == ["create", "arms"]
    store.close()


def test_find_decisions_joins_rewards(store):
    store.create_experiment(make_experiment(), {"kind": "create"}).result()
    store.append_decisions([decision(i) for i in range(3)]).result()
    store.commit_rewards(work([reward(1, 0.5)])).result()
    found = store.find_decisions(["d0001", "d0000", "nope", "d0001"])
    assert set(found) == {"d0000", "d0001"}
    assert found["d0000"] == (decision(0), None)
    assert found["d0001"][0] == decision(1) and found["d0001"][1].value == 0.5


def test_a_reward_writes_its_rows_not_the_state(tmp_path):
    """However large the state, a reward's commit writes its rows and the version: the WAL grows by kilobytes
    per reward, not by the 8 MB state (which it did, 11 MB per reward, before checkpoints)."""
    path = tmp_path / "large.db"
    store = SQLiteStore(path, checkpoint_s=3600.0)
    record = make_experiment()
    record.state["policy/weights"] = np.zeros((1, 2, 1_000_000))  # 16 MB the Counting planner leaves alone
    store.create_experiment(record, {"kind": "create"}).result()
    store.append_decisions([decision(i) for i in range(40)]).result()
    wal = tmp_path / "large.db-wal"
    written = wal.stat().st_size
    for i in range(40):
        store.commit_rewards(work([reward(i)])).result()
    assert wal.stat().st_size - written < 1_000_000
    (learned,) = store.load_experiments()
    assert learned.version == 40 and learned.state["policy/pulls"].tolist() == [[40.0, 0.0]]
    store.close()


def test_sqlite_learns_the_rewards_after_its_checkpoint_again_when_it_opens(tmp_path):
    """A store that stopped without a checkpoint (kill -9) learns the rewards logged since its last one again,
    in the groups and the order it learned them, into the very same arrays."""
    from banditkit import Bandit
    from banditkit.policies import LinTS
    from banditkit.service.model import DeltaPlanner, split

    path = tmp_path / "replay.db"
    bandit = Bandit(["a", "b", "c"], LinTS(v=0.5), n_features=4, name="hero")
    model, arrays = split(bandit)
    first = SQLiteStore(path, checkpoint_s=3600.0)
    first.create_experiment(ExperimentRecord("hero", {}, model, arrays, 0, 1000.0), {"kind": "create"}).result()
    rng = np.random.default_rng(3)
    rows = [
        DecisionRecord(
            f"d{i:04d}", 1000.0 + i, "hero", None, tuple(rng.standard_normal(4)), "abc"[i % 3], 0.5, {}, 0, False
        )
        for i in range(60)
    ]
    first.append_decisions(rows).result()
    decisions = {row.decision_id: row for row in rows}
    for begin, end in [(0, 1), (1, 9), (9, 10), (10, 35), (35, 36), (36, 60)]:  # one reward, or many at once
        rewards = [RewardRecord(r.decision_id, "hero", r.arm, float(rng.random()), 2000.0) for r in rows[begin:end]]
        first.commit_rewards(RewardWork("hero", rewards[::-1], DeltaPlanner.of(bandit, decisions))).result()
    (served,) = first.load_experiments()  # `first` is left open, as a killed process leaves its file
    second = SQLiteStore(path)
    try:
        (reopened,) = second.load_experiments()
        assert reopened.version == served.version == 6
        assert reopened.state.keys() == served.state.keys()
        for key, value in served.state.items():
            assert reopened.state[key].tobytes() == value.tobytes(), key
    finally:
        second.close()
        first.close()


def test_a_file_written_before_checkpoints_opens_with_its_state(tmp_path):
    """The state moves from the experiments table into the checkpoints, and rewards learn on top of it."""
    import sqlite3

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE experiments (
            name TEXT PRIMARY KEY, config TEXT NOT NULL, model TEXT NOT NULL, state TEXT NOT NULL,
            version INTEGER NOT NULL, created_at REAL NOT NULL, sweep_watermark REAL NOT NULL DEFAULT 0);
        CREATE TABLE rewards (
            decision_id TEXT PRIMARY KEY, experiment TEXT NOT NULL, arm TEXT NOT NULL, value REAL NOT NULL,
            time REAL NOT NULL, source TEXT NOT NULL, applied INTEGER NOT NULL) WITHOUT ROWID;
        """
    )
    state = {"policy/pulls": np.array([[3.0, 1.0]]), "policy/reward_sums": np.array([[2.0, 0.5]])}
    old.execute(
        "INSERT INTO experiments VALUES (?, ?, ?, ?, ?, ?, ?)",
        ("hero", "{}", '{"arms": ["a", "b"]}', encode_state(state), 4, 1000.0, 0.0),
    )
    old.execute("INSERT INTO rewards VALUES ('d9999', 'hero', 'a', 1.0, 1500.0, 'client', 1)")
    old.commit()
    old.close()
    store = SQLiteStore(path)
    try:
        (record,) = store.load_experiments()
        assert record.version == 4 and record.state["policy/pulls"].tolist() == [[3.0, 1.0]]
        assert store.get_reward("d9999").value == 1.0 and store.counts("hero") == (0, 1)
        store.append_decisions([decision(0)]).result()
        assert store.commit_rewards(work([reward(0)])).result().version == 5
        assert store.load_experiments()[0].state["policy/pulls"].tolist() == [[4.0, 1.0]]
    finally:
        store.close()


def test_rewards_queued_behind_a_commit_are_learned_in_order_and_committed_together(learning_store):
    """An experiment's lane hands over what queued while it was busy: each work is learned on the arrays the
    previous one left (versions 1, 2, 3, ... in submission order), and on SQLite they share commits."""
    store = learning_store
    store.create_experiment(make_experiment(), {"kind": "create"}).result()
    store.append_decisions([decision(i) for i in range(60)]).result()
    groups = store.writer.groups_committed if isinstance(store, SQLiteStore) else 0
    futures = [store.commit_rewards(work([reward(i, float(i % 2))])) for i in range(60)]
    commits = [future.result() for future in futures]
    assert [commit.version for commit in commits] == list(range(1, 61))
    assert [commit.arrays["policy/pulls"].tolist() for commit in commits[:3]] == [
        [[1.0, 0.0]],
        [[2.0, 0.0]],
        [[3.0, 0.0]],
    ]
    (record,) = store.load_experiments()
    assert record.version == 60 and record.state["policy/reward_sums"].tolist() == [[30.0, 0.0]]
    if isinstance(store, SQLiteStore):
        assert store.writer.groups_committed - groups < 30


def test_sqlite_small_experiment_rewards_are_learned_in_the_writers_transaction(tmp_path):
    """A small experiment's rewards, interleaved with decisions, are planned inside the writer's transaction:
    no lane thread starts, they share group commits with the decisions, and each is learned on the arrays the
    one before left (versions 1, 2, 3, ... in submission order)."""
    store = SQLiteStore(tmp_path / "inline.db")
    try:
        store.create_experiment(make_experiment(), {"kind": "create"}).result()
        store.append_decisions([decision(i) for i in range(40)]).result()
        groups = store.writer.groups_committed
        futures = []
        for i in range(40):
            futures.append(store.append_decisions([decision(100 + i)]))
            futures.append(store.commit_rewards(work([reward(i, float(i % 2))])))
        commits = [future.result() for future in futures][1::2]
        assert [commit.version for commit in commits] == list(range(1, 41))
        assert [commit.arrays["policy/pulls"].tolist() for commit in commits[:2]] == [[[1.0, 0.0]], [[2.0, 0.0]]]
        assert store.writer.groups_committed - groups < 40
        assert not store._lanes._executor._threads  # no lane was needed
        (record,) = store.load_experiments()
        assert record.version == 40 and record.state["policy/reward_sums"].tolist() == [[20.0, 0.0]]
        assert store.counts("hero") == (80, 40)
    finally:
        store.close()
    reopened = SQLiteStore(tmp_path / "inline.db")
    try:
        (record,) = reopened.load_experiments()
        assert record.version == 40 and record.state["policy/pulls"].tolist() == [[40.0, 0.0]]
    finally:
        reopened.close()


def test_sqlite_reward_in_the_writer_plans_on_the_stored_state_when_memory_is_behind(tmp_path):
    """Should what the store learned lag behind the stored version, a reward planned in the writer's transaction
    is planned on the stored state (checkpoint and the rewards logged after it), and the store catches up."""
    from banditkit import Bandit
    from banditkit.service.model import DeltaPlanner, split

    bandit = Bandit(["a", "b"], "thompson", name="hero")
    model, arrays = split(bandit)
    store = SQLiteStore(tmp_path / "behind.db")
    try:
        store.create_experiment(ExperimentRecord("hero", {}, model, arrays, 0, 1000.0), {"kind": "create"}).result()
        rows = [decision(i) for i in range(3)]
        store.append_decisions(rows).result()
        planner = DeltaPlanner.of(bandit, {row.decision_id: row for row in rows})
        assert store.commit_rewards(RewardWork("hero", [reward(0)], planner)).result().version == 1
        store._learned["hero"] = replace(store._learned["hero"], arrays=arrays, version=0)
        commit = store.commit_rewards(RewardWork("hero", [reward(1, 0.0)], planner)).result()
        assert commit.version == 2
        assert commit.arrays["ledger/pulls"].tolist() == [2.0, 0.0]
        assert commit.arrays["ledger/reward_sums"].tolist() == [1.0, 0.0]
        assert store._learned["hero"].version == 2
        third = store.commit_rewards(RewardWork("hero", [reward(2)], planner)).result()
        assert third.version == 3 and third.arrays["ledger/pulls"].tolist() == [3.0, 0.0]
    finally:
        store.close()


def test_sqlite_reward_after_a_queued_model_change_comes_after_it(tmp_path):
    """A reward submitted while a model change waits in the experiment's lane goes behind it (the lane is not
    idle), so the change commits on the version it was built on and the reward on top of it."""
    store = SQLiteStore(tmp_path / "behind-change.db")
    try:
        store.create_experiment(make_experiment(), {"kind": "create"}).result()
        store.append_decisions([decision(0)]).result()
        state = {"policy/pulls": np.ones((1, 2)), "policy/reward_sums": np.zeros((1, 2))}
        changed = store.replace_model("hero", change({"arms": ["a", "b"]}, state, 1, 0))
        rewarded = store.commit_rewards(work([reward(0)]))
        changed.result()
        commit = rewarded.result()
        assert commit.version == 2 and commit.arrays["policy/pulls"].tolist() == [[2.0, 1.0]]
        (record,) = store.load_experiments()
        assert record.version == 2 and record.state["policy/pulls"].tolist() == [[2.0, 1.0]]
    finally:
        store.close()

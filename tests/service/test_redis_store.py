"""The Redis store with several serving workers on one Redis: rewards claimed once whichever worker gets
them, writes grouped into pipeline round trips, models followed and changed by compare-and-set, spooled
decisions shipped once. On the shared Redis at 127.0.0.1:6379, a key prefix of its own per test."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import numpy as np
import pytest

from banditkit.service import Settings
from banditkit.service.engine import Engine
from banditkit.service.runner import running
from banditkit.service.schemas import ArmsPatch, ExperimentCreate
from banditkit.service.stores import Assignment, DecisionRecord, ExperimentRecord, RewardRecord
from banditkit.service.stores.base import ModelChange, ModelMovedError, RewardWork, decision_row
from banditkit.service.stores.redis import RedisStore
from banditkit.service.stores.redis_keys import LOG_DECISIONS, Keys, log_args, log_keys


@pytest.fixture
def workers(shared_store, tmp_path):
    """``workers(n)``: n RedisStore instances on the same prefix (as n serving processes have); closed after."""
    url = shared_store[0]
    made: list[RedisStore] = []

    def open_workers(n: int) -> list[RedisStore]:
        made.extend(RedisStore(url, spool_dir=tmp_path / f"spool-{len(made) + i}") for i in range(n))
        return made[-n:]

    yield open_workers
    for store in made:
        store.close()


def make_experiment(name="hero"):
    state = {"counts": np.zeros((1, 2))}
    return ExperimentRecord(
        name, {"name": name, "attribution_window_s": 3600.0}, {"arms": ["a", "b"]}, state, 0, 1000.0
    )


def decisions(n: int, t: float, experiment="hero") -> list[DecisionRecord]:
    return [
        DecisionRecord(
            f"{int(t * 1000):012x}{i:020x}", t, experiment, None, None, "ab"[i % 2], 0.5, {"a": 0.5, "b": 0.5}, 0, False
        )
        for i in range(n)
    ]


def test_two_workers_racing_the_same_rewards_record_each_once(workers, shared_store):
    """Both workers claim every decision at once, with different values: exactly one claim wins per decision,
    the loser is told the winner's reward, and the reward stream and counter hold each reward once."""
    first, second = workers(2)
    first.create_experiment(make_experiment(), {"kind": "create"}).result()
    now = 1.8e9
    logged = decisions(400, now)
    first.append_decisions(logged).result()
    outcomes: dict[int, list] = {}

    def claim(store: RedisStore, value: float) -> None:
        futures = [
            store.commit_rewards(RewardWork("hero", [RewardRecord(d.decision_id, "hero", "", value, now + 1.0)]))
            for d in logged
        ]  # one write each: groups form freely
        outcomes[int(value)] = [future.result().outcomes[0] for future in futures]

    threads = [threading.Thread(target=claim, args=(store, value)) for store, value in ((first, 1.0), (second, 0.0))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _, prefix, client = shared_store
    keys = Keys.of(prefix, "hero")
    for index, decision in enumerate(logged):
        ones, zeros = outcomes[1][index], outcomes[0][index]
        assert ones.first != zeros.first, decision.decision_id  # exactly one winner
        assert ones.reward == zeros.reward  # the loser sees the winner's
        assert ones.reward.arm == decision.arm and ones.reward.value in (0.0, 1.0)
    assert client.xlen(keys.reward_stream) == len(logged) == client.hlen(keys.rewards)
    streamed = [json.loads(fields["reward"])[0] for _, fields in client.xrange(keys.reward_stream)]
    assert sorted(streamed) == sorted(d.decision_id for d in logged)
    assert first.counts("hero") == second.counts("hero") == (400, 400)
    assert client.zcard(keys.due) == 0  # a rewarded window needs no default


def test_two_servers_answer_a_racing_reward_like_one(shared_store, tmp_path):
    """Over HTTP, two servers on one Redis: a decision made on one is rewarded on either; the second value
    gets 409, a retry of the first value 200 with the first answer, on both servers."""
    url = shared_store[0]
    settings = [
        Settings(store=url, port=0, tune_interpreter=False, spool_dir=tmp_path / f"spool-{i}", model_poll_s=0.01)
        for i in range(2)
    ]
    with running(settings[0]) as one, running(settings[1]) as two, httpx.Client(timeout=30.0) as http:
        created = http.post(f"{one}/v1/experiments", json={"name": "hero", "arms": ["a", "b"]})
        assert created.status_code == 201, created.text
        decision = http.post(f"{one}/v1/experiments/hero/decisions", json={}).json()  # two learns of it at once
        rewarded = http.post(
            f"{two}/v1/experiments/hero/rewards", json={"decision_id": decision["decision_id"], "value": 1.0}
        )
        assert rewarded.status_code == 200 and rewarded.json()["arm"] == decision["arm"]
        for base in (one, two):
            conflict = http.post(
                f"{base}/v1/experiments/hero/rewards", json={"decision_id": decision["decision_id"], "value": 0.0}
            )
            assert conflict.status_code == 409 and "already has reward 1.0" in conflict.json()["detail"]
            again = http.post(
                f"{base}/v1/experiments/hero/rewards", json={"decision_id": decision["decision_id"], "value": 1.0}
            )
            assert again.json() == rewarded.json()
        missing = http.post(f"{one}/v1/experiments/hero/rewards", json={"decision_id": "f" * 32, "value": 1.0})
        assert missing.status_code == 404
        old = http.post(f"{two}/v1/experiments/hero/rewards", json={"decision_id": "0" * 32, "value": 1.0})
        assert old.status_code == 410  # an id older than the window: archived, not unknown
        assert http.get(f"{two}/v1/experiments/hero/stats").json()["rewards"] == 1


def test_concurrent_writes_share_round_trips(workers):
    (store,) = workers(1)
    store.create_experiment(make_experiment(), {"kind": "create"}).result()

    def client(offset: int) -> None:
        futures = [store.append_decisions(decisions(1, 1.8e9 + offset + i)) for i in range(200)]
        for future in futures:
            future.result()

    threads = [threading.Thread(target=client, args=(k * 1000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.counts("hero") == (800, 0)
    assert store.groups_sent < store.jobs_sent / 4


def test_a_model_change_built_on_an_older_version_is_refused(workers, shared_store):
    (store,) = workers(1)
    store.create_experiment(make_experiment(), {"kind": "create"}).result()
    _, prefix, client = shared_store
    client.hincrby(Keys.of(prefix, "hero").meta, "version", 1)  # a learner applied a batch meanwhile
    stale = store.replace_model(
        "hero", ModelChange({"arms": ["a", "b", "c"]}, make_experiment().state, 1, 0, {"kind": "arms"})
    )
    with pytest.raises(ModelMovedError, match="at version 1, the model change \\(arms\\) was built for version 0"):
        stale.result()
    assert store.load_experiment("hero").model == {"arms": ["a", "b"]}
    store.replace_model(
        "hero", ModelChange({"arms": ["a", "b", "c"]}, make_experiment().state, 2, 1, {"kind": "arms"})
    ).result()
    assert store.load_experiment("hero").version == 2


def test_workers_follow_each_others_experiments_and_model_changes(workers):
    """Worker B serves an experiment worker A created; an arm change on a stale worker reloads the model first,
    so it builds on the other worker's change instead of overwriting it."""
    first, second = workers(2)
    one, two = Engine(first, refresh_s=0), Engine(second, refresh_s=0)

    async def scenario() -> None:
        await one.create(ExperimentCreate(name="hero", arms=["a", "b"]))
        assert two.experiment("hero").bandit.arms == ["a", "b"]  # looked up on first use
        await two.change_arms("hero", ArmsPatch(add=["c"]))
        assert one.experiment("hero").bandit.version == 0  # not followed yet: stale
        changed = await one.change_arms("hero", ArmsPatch(disable=["a"]))
        assert [arm.name for arm in changed.arms] == ["a", "b", "c"] and changed.policy_version == 2
        assert [arm.active for arm in changed.arms] == [False, True, True]
        assert await two.follow() == 1
        assert two.experiment("hero").bandit.version == 2 and two.experiment("hero").bandit.active_arms == ["b", "c"]
        assert await two.follow() == 0  # nothing moved: nothing reloaded
        await one.create(ExperimentCreate(name="other", arms=["x", "y"]))
        assert await two.discover() == ["other"]
        assert [e["kind"] for e in first.events("hero")] == ["create", "arms", "arms"]

    try:
        asyncio.run(scenario())
    finally:
        one.close()
        two.close()


def test_spools_of_dead_workers_are_shipped_once(shared_store, tmp_path):
    """A worker died with fallback decisions in its spool file, after shipping part of them: the next store
    on that spool folder logs the rest, each decision once, and removes the file."""
    url, prefix, client = shared_store
    spool = tmp_path / "spool"
    spool.mkdir()
    store = RedisStore(url, spool_dir=spool)
    store.create_experiment(make_experiment(), {"kind": "create"}).result()
    store.close()
    rows = [
        DecisionRecord(d.decision_id, d.time, d.experiment, "u", None, "a", 1.0, {"a": 1.0, "b": 0.0}, 0, True)
        for d in decisions(30, 1.8e9)
    ]
    (spool / "dead-host-1-abc.spool.jsonl").write_text("".join(json.dumps(decision_row(r)) + "\n" for r in rows))
    keys = Keys.of(prefix, "hero")
    client.eval(LOG_DECISIONS, 5, *log_keys(keys), *log_args(rows[:12]))  # shipped before the crash
    again = RedisStore(url, spool_dir=spool)
    try:
        assert not list(spool.glob("*.spool.jsonl"))
        logged = [json.loads(fields["row"])[0] for _, fields in client.xrange(keys.decisions)]
        assert sorted(logged) == sorted(r.decision_id for r in rows) and len(logged) == 30
        assert again.counts("hero") == (30, 0) and again.get_decision(rows[20].decision_id) == rows[20]
    finally:
        again.close()


@pytest.mark.slow
def test_every_write_and_read_works_on_a_cluster(redis_cluster, tmp_path):
    """Three experiments (likely three slots) on a three-master cluster: grouped scripts, compare-and-set,
    snapshots and the cross-slot reads."""
    store = RedisStore(f"{redis_cluster.url}?prefix=bk", spool_dir=tmp_path / "spool")
    try:
        names = ["hero", "other", "third"]
        for name in names:
            store.create_experiment(make_experiment(name), {"kind": "create"}).result()
        logged = {name: decisions(3, 1.8e9 + i, name) for i, name in enumerate(names)}
        futures = [
            store.append_decisions(rows, {"u": Assignment("b", 0.5, {"a": 0.5, "b": 0.5})}) for rows in logged.values()
        ]
        for future in futures:
            future.result()
        claimed = (
            store.commit_rewards(
                RewardWork("other", [RewardRecord(logged["other"][1].decision_id, "other", "", 1.0, 1.8e9 + 2)])
            )
            .result()
            .outcomes
        )
        assert claimed[0].first and claimed[0].reward.arm == "b"
        assert [store.counts(name) for name in names] == [(3, 0), (3, 1), (3, 0)]
        assert store.get_assignment("third", "u") == Assignment("b", 0.5, {"a": 0.5, "b": 0.5})
        snapshot = store.save_snapshot("hero", {"arms": ["a", "b"]}, make_experiment().state, 0).result()
        store.replace_model(
            "hero", ModelChange({"arms": ["a", "b", "c"]}, make_experiment().state, 1, 0, {"kind": "arms"})
        ).result()
        assert store.versions(names) == {"hero": 1, "other": 0, "third": 0}
        assert store.get_snapshot("hero", snapshot).policy_version == 0
        assert [event["kind"] for event in store.events("hero")] == ["create", "snapshot", "arms"]
        found = store.find_decisions([logged["third"][2].decision_id, logged["other"][1].decision_id])
        assert found[logged["third"][2].decision_id] == (logged["third"][2], None)
        assert found[logged["other"][1].decision_id][1].value == 1.0
        assert [row[0] for row in store.iter_log("hero")] == [d.decision_id for d in logged["hero"]]
    finally:
        store.close()

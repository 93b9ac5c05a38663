"""The learner of the Redis store on the real Redis: exact learning, at-most-once under redelivery, stolen
leases, kills at every call, default rewards racing late client rewards, ``banditkit learn``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import redis
from redis_loop import Interposed, Killed, assert_same_learning, claim, create, log_decisions, stored_bandit
from redis_servers import RedisServer

from banditkit._codec import PACK_MAGIC
from banditkit.service import learner as learner_module
from banditkit.service.learner import Learner
from banditkit.service.model import apply_rewards, reward_delta, split
from banditkit.service.stores.base import encode_state
from banditkit.service.stores.redis import RedisStore
from banditkit.service.stores.redis_keys import APPLY_BATCH, LEARNERS, READ_REWARDS, Keys, experiments_key

ROOT = Path(__file__).resolve().parents[2]
ARMS = ["a", "b", "c", "d"]
APPLY_SHA = hashlib.sha1(APPLY_BATCH.encode()).hexdigest()
READ_SHA = hashlib.sha1(READ_REWARDS.encode()).hexdigest()


def workload(client, prefix, name, policy, n, seed, **create_options):
    """An experiment with ``n`` rewarded decisions (dyadic rewards, propensities and contexts, so every sum
    is exact); returns its starting Bandit and the arrays update_many learns from."""
    bandit = create(client, prefix, name, ARMS, policy, **create_options)
    rng = np.random.default_rng(seed)
    arms = rng.integers(0, len(ARMS), n)
    propensities = rng.choice([0.25, 0.5], n)
    contexts = rng.integers(-4, 5, (n, 3)) / 4 if bandit.policy.contextual else None
    rewards = rng.integers(0, 2, n).astype(float)
    records = log_decisions(client, prefix, name, ARMS, [ARMS[i] for i in arms], propensities, contexts)
    answers = claim(client, prefix, name, [(r.decision_id, v, "client") for r, v in zip(records, rewards, strict=True)])
    assert [answer for answer, _ in answers] == ["new"] * n
    return bandit, arms, rewards, contexts, propensities, records


POLICIES = [("thompson", {}, None), ("ucb1", {}, None), ("exp3", {"gamma": 0.5}, None), ("linucb", {"alpha": 0.5}, 3)]


@pytest.mark.parametrize(("policy", "params", "n_features"), POLICIES, ids=[p for p, _, _ in POLICIES])
def test_the_learned_model_is_update_many_bit_for_bit(redis_prefix, policy, params, n_features):
    client, prefix = redis_prefix
    start, arms, rewards, contexts, propensities, _ = workload(
        client, prefix, "hero", policy, 1500, 7, params=params, n_features=n_features
    )
    learner = Learner(client, prefix, batch_size=256)
    report = learner.step()
    assert (report.applied, report.batches, report.acknowledged) == (1500, 6, 0)
    learned = stored_bandit(client, prefix, "hero")
    assert learned.version == start.version + 6
    reference = start.__class__.from_dict(start.to_dict())
    reference.update_many(arms, rewards, contexts=contexts, propensities=propensities)
    if policy == "linucb":
        # The sufficient statistics A and b are exact; the cached inverse and coefficients are recomputed
        # by a different path (one batch vs six), so they agree to rounding ...
        assert_same_learning(learned, reference, exact_keys={"A", "b"})
        # ... and bit for bit with the in-process stores' path over the same batches.
        in_process = start.__class__.from_dict(start.to_dict())
        for first in range(0, 1500, 256):
            rows = slice(first, first + 256)
            delta = reward_delta(
                in_process.policy,
                len(in_process.arms),
                in_process.state,
                arms[rows],
                rewards[rows],
                contexts[rows],
                None,
            )
            apply_rewards(in_process, delta, arms[rows], rewards[rows])
        assert_same_learning(learned, in_process)
    else:
        assert_same_learning(learned, reference)
    assert learner.step().applied == 0  # nothing left, nothing learned twice
    assert client.xpending(Keys.of(prefix, "hero").reward_stream, LEARNERS)["pending"] == 0


def test_a_state_stored_as_json_before_the_binary_pack_loads_and_is_packed_at_the_next_update(redis_prefix, tmp_path):
    """Stores written before the state was packed hold it (and their snapshots' states) as JSON text: serving
    workers and the learner read it as it is, and the learner's next update writes the pack."""
    client, prefix = redis_prefix
    start, arms, rewards, contexts, _, _ = workload(client, prefix, "hero", "linucb", 40, 3, n_features=3)
    keys = Keys.of(prefix, "hero")
    _, arrays = split(start)
    client.hset(keys.meta, "state", encode_state(arrays))
    snapshot = {"policy_version": 0, "created_at": 1000.0, "model": {"arms": ARMS}, "state": encode_state(arrays)}
    client.hset(keys.snapshots, 1, json.dumps(snapshot))
    store = RedisStore(f"redis://127.0.0.1:6379/0?prefix={prefix}", spool_dir=tmp_path)
    try:
        for loaded in (store.load_experiment("hero").state, store.get_snapshot("hero", 1).state):
            assert {key: value.tobytes() for key, value in loaded.items()} == {
                key: value.tobytes() for key, value in arrays.items()
            }
        assert [s.snapshot_id for s in store.list_snapshots("hero")] == [1]
    finally:
        store.close()
    assert Learner(client, prefix).step().applied == 40
    assert client.execute_command("HGET", keys.meta, "state", NEVER_DECODE=True).startswith(PACK_MAGIC)
    reference = start.__class__.from_dict(start.to_dict())
    reference.update_many(arms, rewards, contexts=contexts)
    assert_same_learning(stored_bandit(client, prefix, "hero"), reference, exact_keys={"A", "b"})


def test_guardrails_act_in_the_learner_and_are_stored_with_the_model(redis_prefix):
    client, prefix = redis_prefix
    create(
        client,
        prefix,
        "hero",
        ARMS,
        "thompson",
        guardrails={"default_arm": "a", "min_reward_rate": 0.5, "slo_window": 10},
    )
    records = log_decisions(client, prefix, "hero", ARMS, ["b"] * 12 + ["a"] * 4, [0.25] * 16)
    claim(client, prefix, "hero", [(r.decision_id, 0.0 if r.arm == "b" else 1.0, "client") for r in records])
    Learner(client, prefix).step()
    learned = stored_bandit(client, prefix, "hero")
    assert learned.active_arms == ["a", "c", "d"] and "SLO" in learned.disabled_reasons["b"]
    events = [json.loads(e) for e in client.lrange(Keys.of(prefix, "hero").events, 0, -1)]
    assert events[-1]["kind"] == "guardrail" and "b" in events[-1]["disabled"]
    assert events[-1]["policy_version"] == learned.version


def test_the_abort_rule_fires_in_the_learner_and_is_stored_with_the_model(redis_prefix):
    client, prefix = redis_prefix
    create(client, prefix, "hero", ARMS, "gaussian_thompson", guardrails={"default_arm": "a", "ruin_threshold": -5.0})
    records = log_decisions(client, prefix, "hero", ARMS, ["b", "c"] * 4, [0.5] * 8)
    claim(client, prefix, "hero", [(r.decision_id, -1.0, "client") for r in records])
    Learner(client, prefix).step()
    learned = stored_bandit(client, prefix, "hero")
    assert learned.aborted and learned.total_reward == -8.0
    assert learned.probabilities() == {"a": 1.0, "b": 0.0, "c": 0.0, "d": 0.0}  # what workers now serve
    events = [json.loads(e) for e in client.lrange(Keys.of(prefix, "hero").events, 0, -1)]
    assert events[-1]["kind"] == "guardrail" and events[-1]["aborted"] is True


def test_an_entry_delivered_twice_is_applied_once(redis_prefix):
    client, prefix = redis_prefix
    start, arms, rewards, _, _, _ = workload(client, prefix, "hero", "thompson", 300, 1)
    learner = Learner(client, prefix, batch_size=100)
    assert learner.step().applied == 300
    # Every entry is delivered again (a group reset to the start), then 50 new rewards arrive.
    keys = Keys.of(prefix, "hero")
    client.xgroup_setid(keys.reward_stream, LEARNERS, "0")
    more = log_decisions(client, prefix, "hero", ARMS, ["c"] * 50, [0.5] * 50)
    claim(client, prefix, "hero", [(r.decision_id, 1.0, "client") for r in more])
    report = learner.step()
    assert (report.acknowledged, report.applied) == (300, 50)
    reference = start.__class__.from_dict(start.to_dict())
    reference.update_many(np.concatenate([arms, np.full(50, 2)]), np.concatenate([rewards, np.ones(50)]))
    assert_same_learning(stored_bandit(client, prefix, "hero"), reference)


def wait_for_expiry(client, key: str) -> None:
    deadline = time.monotonic() + 5
    while client.exists(key):
        assert time.monotonic() < deadline, "the lease did not expire"
        time.sleep(0.01)


def test_a_learner_killed_after_reading_loses_nothing(redis_prefix):
    client, prefix = redis_prefix
    start, arms, rewards, _, _, _ = workload(client, prefix, "hero", "thompson", 500, 3)

    def die_at_apply(index, name, args):
        if name == "evalsha" and args[0] == APPLY_SHA:
            raise Killed("before apply_batch")

    proxy = Interposed(client)
    dying = Learner(proxy, prefix, "dying", lease_ttl_s=0.2, renew_s=0.1, batch_size=200)
    proxy.arm(die_at_apply)
    with pytest.raises(Killed):
        dying.step()
    keys = Keys.of(prefix, "hero")
    assert client.xpending(keys.reward_stream, LEARNERS)["pending"] == 200  # read, not applied
    del dying
    wait_for_expiry(client, keys.lease)
    report = Learner(client, prefix, "heir", batch_size=200).step()
    assert report.applied == 500
    reference = start.__class__.from_dict(start.to_dict())
    reference.update_many(arms, rewards)
    assert_same_learning(stored_bandit(client, prefix, "hero"), reference)


def test_a_learner_killed_at_any_call_neither_loses_nor_doubles(redis_prefix):
    """Kill the learner before and after each Redis call of a full pass (settling closed windows,
    taking over, reading, applying): the next learner always ends with each reward learned once."""
    client, prefix = redis_prefix
    now = time.time()

    def scenario(name):
        start = create(client, prefix, name, ARMS, "thompson", window_s=60.0, default_reward=0.0)
        old = log_decisions(client, prefix, name, ARMS, ["a", "b"] * 40, [0.5] * 80, times=[now - 120] * 80)
        recent = log_decisions(client, prefix, name, ARMS, ["c", "d"] * 40, [0.5] * 80)
        claim(client, prefix, name, [(r.decision_id, 1.0, "client") for r in recent], now=now)
        reference = start.__class__.from_dict(start.to_dict())
        reference.update_many([r.arm for r in old + recent], [0.0] * 80 + [1.0] * 80)
        return reference

    scenario("warm-up")
    Learner(client, prefix, "warm-up").step(now=now)  # the scripts are loaded: every pass is alike
    client.srem(experiments_key(prefix), "warm-up")
    scenario("probe")
    counted = Interposed(client)
    probe = Learner(counted, prefix, "probe", batch_size=64)
    counted.arm(lambda *_: None)
    probe.step(now=now)
    calls = len(counted.calls)
    assert calls >= 10 and counted.calls.count("evalsha") >= 4 and "xautoclaim" in counted.calls
    client.srem(experiments_key(prefix), "probe")
    for at in range(calls):
        for when in ("before", "after"):
            name = f"e{at}{when}"
            reference = scenario(name)

            def hook(index, _name, _args, at=at, when=when):
                if index == at:
                    if when == "before":
                        raise Killed(f"before call {index}")
                    return "after"

            proxy = Interposed(client)
            dying = Learner(proxy, prefix, f"dying-{name}", batch_size=64)
            proxy.arm(hook)
            with pytest.raises(Killed):
                dying.step(now=now)
            del dying
            client.delete(Keys.of(prefix, name).lease)  # its lease expires
            Learner(client, prefix, f"heir-{name}", batch_size=64).step(now=now)
            learned = stored_bandit(client, prefix, name)
            assert_same_learning(learned, reference)
            keys = Keys.of(prefix, name)
            assert client.xlen(keys.reward_stream) == 160 and client.hlen(keys.rewards) == 160
            assert client.xpending(keys.reward_stream, LEARNERS)["pending"] == 0
            client.srem(experiments_key(prefix), name)  # the next scenario's learners skip it


def test_a_learner_whose_lease_was_stolen_cannot_write(redis_prefix):
    client, prefix = redis_prefix
    start, arms, rewards, _, _, _ = workload(client, prefix, "hero", "thompson", 400, 5)
    keys = Keys.of(prefix, "hero")
    heir = Learner(client, prefix, "heir", batch_size=1000)
    stolen = []

    def steal_before_apply(index, name, args):
        if name == "evalsha" and args[0] == APPLY_SHA and not stolen:
            stolen.append(True)
            client.delete(keys.lease)  # the lease expired (this learner stalled) ...
            assert heir.step().applied == 400  # ... and another learner took it over, with what was read

    proxy = Interposed(client)
    stale = Learner(proxy, prefix, "stale", batch_size=1000)
    proxy.arm(steal_before_apply)
    version_before = int(client.hget(keys.meta, "version"))
    report = stale.step()
    assert stolen and report.applied == 0 and report.leased_elsewhere == ["hero"]
    assert int(client.hget(keys.meta, "version")) == version_before + 1  # the heir's update only

    # It believes it holds the lease again (taken back when the heir let go), and loses it just before
    # reading: it cannot take entries the heir would never claim.
    heir.close()
    wait_for_expiry(client, keys.lease)
    proxy.arm(None)
    assert stale.step().leased_elsewhere == []
    more = log_decisions(client, prefix, "hero", ARMS, ["a"] * 10, [0.5] * 10)
    claim(client, prefix, "hero", [(r.decision_id, 1.0, "client") for r in more])

    def steal_before_read(index, name, args):
        if name == "evalsha" and args[0] == READ_SHA and len(stolen) == 1:
            stolen.append(True)
            client.delete(keys.lease)
            assert heir.step().applied == 10 and client.get(keys.lease) == "heir"
            late = log_decisions(client, prefix, "hero", ARMS, ["b"] * 5, [0.5] * 5)
            claim(client, prefix, "hero", [(r.decision_id, 1.0, "client") for r in late])

    proxy.arm(steal_before_read)
    assert stale.step().leased_elsewhere == ["hero"] and len(stolen) == 2
    assert client.xpending(keys.reward_stream, LEARNERS)["pending"] == 0
    assert heir.step().applied == 5
    reference = start.__class__.from_dict(start.to_dict())
    reference.update_many(
        np.concatenate([arms, np.zeros(10, int), np.ones(5, int)]), np.concatenate([rewards, np.ones(15)])
    )
    assert_same_learning(stored_bandit(client, prefix, "hero"), reference)


def test_a_model_changed_by_a_worker_is_reloaded_and_the_batch_retried(redis_prefix):
    client, prefix = redis_prefix
    workload(client, prefix, "hero", "thompson", 100, 2)
    keys = Keys.of(prefix, "hero")
    learner = Learner(client, prefix)
    learner.step()
    # A worker disables arm "d" (compare-and-set on the version), then more rewards come.
    model = json.loads(client.hget(keys.meta, "model"))
    model["active"][3] = False
    model["disabled_reasons"]["d"] = "disabled by operator"
    client.hset(keys.meta, mapping={"model": json.dumps(model), "version": int(client.hget(keys.meta, "version")) + 1})
    more = log_decisions(client, prefix, "hero", ARMS, ["a"] * 20, [0.5] * 20)
    claim(client, prefix, "hero", [(r.decision_id, 1.0, "client") for r in more])
    before = stored_bandit(client, prefix, "hero")
    assert learner.step().applied == 20
    after = stored_bandit(client, prefix, "hero")
    assert after.active_arms == ["a", "b", "c"] and after.version == before.version + 1
    assert after.pulls[0] == before.pulls[0] + 20


def test_the_default_reward_and_a_late_client_reward_never_both_win(redis_prefix, monkeypatch):
    client, prefix = redis_prefix
    window = 60.0
    now = time.time()
    create(client, prefix, "hero", ARMS, "thompson", window_s=window, default_reward=0.0)
    closed = log_decisions(client, prefix, "hero", ARMS, ["a"] * 2, [0.5] * 2, times=[now - window - 1] * 2)
    # A client reward after the window: late; the default wins at window close.
    assert claim(client, prefix, "hero", [(closed[0].decision_id, 1.0, "client")], now=now)[0][0] == "late"
    # A client reward inside the window wins; the default then finds it.
    assert claim(client, prefix, "hero", [(closed[1].decision_id, 1.0, "client")], now=now - 2)[0][0] == "new"
    learner = Learner(client, prefix)
    report = learner.step(now=now)
    assert (report.defaulted, report.applied) == (1, 2)
    answer, row = claim(client, prefix, "hero", [(closed[0].decision_id, 1.0, "client")], now=now)[0]
    assert answer == "old" and json.loads(row)[5] == "default"  # the caller answers 410

    # Racing: clients reward inside the window while the learner settles the same windows, a few at a time.
    monkeypatch.setattr(learner_module, "SETTLE_BATCH", 7)
    racing = log_decisions(client, prefix, "hero", ARMS, ["b"] * 400, [0.5] * 400, times=[now - window] * 400)
    answers: dict[str, tuple[str, str]] = {}
    started = threading.Event()

    def clients():
        for count, record in enumerate(reversed(racing)):
            answers[record.decision_id] = claim(
                client, prefix, "hero", [(record.decision_id, 1.0, "client")], now=now - 0.001
            )[0]
            if count == 50:
                started.set()
            if count > 50:
                time.sleep(0.0005)

    thread = threading.Thread(target=clients)
    thread.start()
    started.wait(10)
    defaulted = 0
    while thread.is_alive():
        defaulted += learner.step(now=now + 0.5).defaulted
    thread.join()
    client_wins = sum(answer == "new" for answer, _ in answers.values())
    assert all(
        answer == "new" or (answer == "old" and json.loads(row)[5] == "default") for answer, row in answers.values()
    )
    assert client_wins + defaulted == 400 and client_wins > 50 and defaulted > 0
    keys = Keys.of(prefix, "hero")
    assert client.hlen(keys.rewards) == 402 and client.xlen(keys.reward_stream) == 402
    learner.step(now=now + 0.5)
    learned = stored_bandit(client, prefix, "hero")
    assert learned.pulls[1] == 400 and learned.reward_sums[1] == client_wins


def run_cli(*args, timeout=60):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "banditkit.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_learn_once_drains_settles_and_exits(redis_prefix):
    client, prefix = redis_prefix
    now = time.time()
    start = create(client, prefix, "hero", ARMS, "thompson", window_s=30.0, default_reward=0.0)
    closed = log_decisions(client, prefix, "hero", ARMS, ["a"] * 30, [0.5] * 30, times=[now - 31] * 30)
    rewarded = log_decisions(client, prefix, "hero", ARMS, ["b"] * 70, [0.5] * 70)
    claim(client, prefix, "hero", [(r.decision_id, 1.0, "client") for r in rewarded])
    log_decisions(client, prefix, "hero", ARMS, ["c"] * 5, [0.5] * 5)  # window still open: left alone
    result = run_cli("learn", "--store", f"redis://127.0.0.1:6379/0?prefix={prefix}", "--once")
    assert result.returncode == 0, result.stderr
    assert "learned 100 rewards" in result.stderr and "claimed 30 default rewards" in result.stderr
    learned = stored_bandit(client, prefix, "hero")
    assert learned.pulls.tolist() == [30.0, 70.0, 0.0, 0.0] and learned.reward_sums.tolist() == [0, 70, 0, 0]
    assert not client.exists(Keys.of(prefix, "hero").lease)  # released on exit
    assert len(closed) == 30 and start.version + 1 <= learned.version


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:99999/0", "http://127.0.0.1:6379", "redis://127.0.0.1:6379/x", "redis://127.0.0.1:1/0"]
)
def test_a_bad_store_url_is_one_line_naming_it(url):
    for command in (["learn", "--store", url, "--once"], ["archive", "--store", url, "--out", "unused"]):
        result = run_cli(*command)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and url in lines[0], result.stderr


@pytest.mark.parametrize("mode", [[], ["--every", "0.2"]], ids=["streaming", "every"])
def test_learn_keeps_learning_until_terminated(redis_prefix, mode):
    client, prefix = redis_prefix
    create(client, prefix, "hero", ARMS, "thompson")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    learner = subprocess.Popen(
        [sys.executable, "-m", "banditkit.cli", "learn", "--store", f"redis://127.0.0.1:6379/0?prefix={prefix}", *mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for round_ in range(2):  # rewards arriving while it runs are learned, round after round
            records = log_decisions(client, prefix, "hero", ARMS, ["b"] * 25, [0.5] * 25)
            claim(client, prefix, "hero", [(r.decision_id, 1.0, "client") for r in records])
            deadline = time.monotonic() + 30
            while stored_bandit(client, prefix, "hero").pulls[1] < 25 * (round_ + 1):
                assert learner.poll() is None and time.monotonic() < deadline, learner.communicate()[1]
                time.sleep(0.05)
        assert client.get(Keys.of(prefix, "hero").lease) is not None
    finally:
        learner.terminate()
        _, stderr = learner.communicate(timeout=30)
    assert learner.returncode == 0, stderr
    assert "learned 50 rewards" in stderr
    assert not client.exists(Keys.of(prefix, "hero").lease)  # given up on the way out


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_redis_error_while_applying_leaves_no_batch_counted_twice(redis_prefix, when):
    """The connection fails as the batch is sent (not applied) or as the answer comes back (applied): the
    same learner goes on, and learns each reward once."""
    client, prefix = redis_prefix
    start, arms, rewards, _, _, _ = workload(client, prefix, "hero", "thompson", 300, 4)
    failed = []

    def fail_apply(index, name, args):
        if name == "evalsha" and args[0] == APPLY_SHA and not failed:
            failed.append(True)
            if when == "before":
                raise redis.ConnectionError("connection reset")
            return "lost"

    proxy = Interposed(client)
    learner = Learner(proxy, prefix, batch_size=100)
    proxy.arm(fail_apply)
    with pytest.raises(redis.ConnectionError):
        learner.step()
    assert learner.step().applied in (200, 300)
    reference = start.__class__.from_dict(start.to_dict())
    reference.update_many(arms, rewards)
    assert_same_learning(stored_bandit(client, prefix, "hero"), reference)


def test_an_experiment_without_meta_is_skipped_not_waited_for(redis_prefix):
    """A name in the experiment set whose creation never finished: ``run(once=True)`` learns the others and
    returns at once, holding no lease and creating no key for it."""
    client, prefix = redis_prefix
    workload(client, prefix, "hero", "thompson", 50, 6)
    client.sadd(experiments_key(prefix), "ghost")
    started = time.monotonic()
    total = Learner(client, prefix).run(once=True)
    assert total.applied == 50 and total.leased_elsewhere == [] and time.monotonic() - started < 2
    ghost = Keys.of(prefix, "ghost")
    time.sleep(0.01)
    assert not any(client.exists(key) for key in ghost.all())


def test_a_streaming_learner_waits_out_redis_out_of_memory(tmp_path, processes, caplog):
    """Redis out of memory refuses the learner's update: a streaming learner logs the cause and retries every
    second instead of stopping, and learns the rewards once Redis has room again."""
    redis_server = processes(
        RedisServer(tmp_path / "redis", aof=False, extra=("--maxmemory-policy", "noeviction"))
    ).start()
    prefix = "oom"
    with redis_server.client() as client:
        workload(client, prefix, "hero", "thompson", 50, 1)
        client.config_set("maxmemory", client.info("memory")["used_memory"] - 256 * 1024)
        stop = threading.Event()
        learner = Learner(client, prefix)
        running = threading.Thread(target=learner.run, kwargs={"stop": stop})
        with caplog.at_level("WARNING", logger="banditkit.learner"):
            running.start()
            deadline = time.monotonic() + 10
            while "out of memory" not in caplog.text:
                assert running.is_alive() and time.monotonic() < deadline, caplog.text
                time.sleep(0.05)
            assert stored_bandit(client, prefix, "hero").pulls.sum() == 0
            client.config_set("maxmemory", 0)
            while stored_bandit(client, prefix, "hero").pulls.sum() < 50:
                assert running.is_alive() and time.monotonic() < deadline + 10
                time.sleep(0.05)
        stop.set()
        running.join(10)
        learner.close()

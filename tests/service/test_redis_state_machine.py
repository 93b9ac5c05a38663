"""The Redis learning loop as a state machine, beside a reference model.

Rules: decide, reward (new, duplicate, conflicting), a learner step, a learner crash (killed after reading
rewards and before applying them, or after applying and before going on; its lease left to expire), a
kill -9 and restart of the append-only Redis, and a drain. After every step the stored rewards are exactly
the accepted ones and the model is, bit for bit, ``Bandit.update_many`` over the rewards at or below its
reward offset: it never counts a reward twice or skips one. After a drain it is the reference over all.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from redis_loop import Interposed, Killed
from redis_servers import (
    RedisServer,
    assert_model_is_reference,
    create_experiment,
    meta,
    stored_decisions,
    stored_rewards,
    wait_for,
)

from banditkit.service import Settings
from banditkit.service.learner import Learner
from banditkit.service.runner import running
from banditkit.service.stores.redis_keys import APPLY_BATCH, LEARNERS, READ_REWARDS, Keys

LEASE_TTL_S = 0.3
#: Redis restarts per example at most (each takes about a second).
MAX_RESTARTS = 2
#: Full drains per example at most.
MAX_DRAINS = 3
SCRIPT_SHAS = {
    "after_read": hashlib.sha1(READ_REWARDS.encode()).hexdigest(),
    "after_apply": hashlib.sha1(APPLY_BATCH.encode()).hexdigest(),
}


class LearningLoop(RuleBasedStateMachine):
    """One experiment served over HTTP by a worker on the append-only Redis, learned by Learner objects."""

    # The append-only RedisServer and a folder for spools (set by the test), a counter for experiment names.
    server: ClassVar[RedisServer]
    directory: ClassVar[Path]
    names = itertools.count()
    # What the runs did, over all examples (so the test shows it tested it).
    exercised: ClassVar[Counter[str]] = Counter()

    def __init__(self) -> None:
        super().__init__()
        number = next(self.names)
        self.prefix = f"m{number}"  # a key prefix per example: its learners see its experiment only
        # A worker of its own per example (in a thread of this process), so no example inherits another's state.
        self.service = contextlib.ExitStack()
        self.base_url = self.service.enter_context(
            running(
                Settings(
                    store=f"{self.server.url}?prefix={self.prefix}",
                    port=0,
                    admin_token=None,
                    client_tokens=(),
                    tune_interpreter=False,
                    spool_dir=self.directory / f"spool-{number}",
                    model_poll_s=0.05,
                )
            )
        )
        self.client = self.server.client()
        self.spec: dict[str, Any] = {
            "name": f"machine{number}",
            "arms": ["a", "b", "c"],
            "policy": {"name": "thompson", "params": {}},
            "attribution_window_s": 3600.0,
            "seed": 1,
        }
        self.name = self.spec["name"]
        self.keys = Keys.of(self.prefix, self.name)
        self.http = httpx.Client(base_url=f"{self.base_url}/v1/experiments/{self.name}", timeout=10.0)
        create_experiment(self.base_url, self.spec)
        self.decisions: dict[str, dict] = {}  # acknowledged decisions: id -> answer
        self.accepted: dict[str, float] = {}  # the one reward value of each rewarded decision
        self.learner: tuple[Learner, Interposed] | None = None
        # Restarts and drains are capped per example, so the other rules get their turns.
        self.restarts = self.drains = 0

    def teardown(self) -> None:
        try:
            if self.decisions:
                self.drain()
        finally:
            self.http.close()
            self.client.close()
            if self.learner is not None:
                self.learner[0].close()
                self.learner[1].close()
            self.service.close()

    # ---- serving ------------------------------------------------------------------------------
    @rule(n=st.integers(1, 4))
    def decide(self, n):
        response = self.http.post("/decisions/batch", json={"requests": [{}] * n})
        assert response.status_code == 200, response.text
        for answer in response.json()["decisions"]:
            assert answer["decision_id"] not in self.decisions
            self.decisions[answer["decision_id"]] = answer

    def send_reward(self, decision_id: str, value: float) -> httpx.Response:
        """POST a reward, sending it again while Redis is down (503) or a spooled decision is not shipped (404)."""
        deadline = time.monotonic() + 10
        while True:
            response = self.http.post("/rewards", json={"decision_id": decision_id, "value": value})
            retry = response.status_code == 503 or (
                response.status_code == 404 and self.decisions[decision_id]["fallback"]
            )
            if not retry or time.monotonic() > deadline:
                return response
            time.sleep(0.05)

    @precondition(lambda self: self.decisions)
    @rule(data=st.data(), values=st.lists(st.sampled_from([0.0, 1.0]), min_size=1, max_size=3))
    def reward(self, data, values):
        for value in values:
            decision_id = data.draw(st.sampled_from(sorted(self.decisions)))
            response = self.send_reward(decision_id, value)
            first = self.accepted.get(decision_id)
            if first is None or first == value:
                assert response.status_code == 200, response.text
                answer = response.json()
                assert answer["value"] == value and answer["arm"] == self.decisions[decision_id]["arm"], answer
                self.accepted[decision_id] = value
                self.exercised["reward" if first is None else "duplicate reward"] += 1
            else:
                assert response.status_code == 409, response.text
                self.exercised["conflicting reward"] += 1

    @precondition(lambda self: self.accepted)
    @rule(data=st.data(), conflicting=st.booleans())
    def reward_again(self, data, conflicting):
        """A retry of an accepted reward: the same value gets the first answer, another value 409."""
        decision_id = data.draw(st.sampled_from(sorted(self.accepted)))
        value = 1.0 - self.accepted[decision_id] if conflicting else self.accepted[decision_id]
        response = self.send_reward(decision_id, value)
        assert response.status_code == (409 if conflicting else 200), response.text
        self.exercised["conflicting reward" if conflicting else "duplicate reward"] += 1

    # ---- learning -----------------------------------------------------------------------------
    def current_learner(self) -> tuple[Learner, Interposed]:
        if self.learner is None:
            client = Interposed(self.server.client())
            self.learner = Learner(client, self.prefix, lease_ttl_s=LEASE_TTL_S, renew_s=0.1, batch_size=3), client
        return self.learner

    def wait_for_lease(self) -> None:
        """Until the lease is free or the current learner's (a dead learner's expires after LEASE_TTL_S)."""
        wait_for(
            lambda: self.client.get(self.keys.lease) in (None, self.current_learner()[0].learner_id),
            5,
            "a dead learner's lease to expire",
        )

    def drop_learner(self) -> None:
        """The learner process is gone: its lease stays until it expires, its deliveries stay unacknowledged."""
        assert self.learner is not None  # called after current_learner() made one
        self.learner[1].close()
        self.learner = None

    @rule()
    def learner_step(self):
        learner, _ = self.current_learner()
        try:
            learner.step()
        except redis.ConnectionError:  # Redis restarted under it: the process dies
            self.drop_learner()

    def unapplied(self) -> bool:
        """True when the reward stream holds entries past the model's reward offset."""
        last = self.client.xrevrange(self.keys.reward_stream, count=1)
        return bool(last) and last[0][0] != meta(self.client, self.prefix, self.name)["reward_offset"]

    def crash(self, point: str) -> None:
        """The learner holding the lease runs one step and dies right after ``point``'s script ran (its
        writes are in Redis, the process never sees the answer)."""
        self.wait_for_lease()
        learner, client = self.current_learner()
        client.arm(lambda index, name, args: "after" if name == "evalsha" and args[0] == SCRIPT_SHAS[point] else None)
        with pytest.raises(Killed):
            learner.step()
        self.exercised[f"learner crash {point}"] += 1
        self.drop_learner()

    @rule()
    def learner_crash_after_read(self):
        self.crash("after_read")

    @precondition(lambda self: self.accepted and self.unapplied())
    @rule()
    def learner_crash_after_apply(self):
        self.crash("after_apply")

    @precondition(lambda self: self.restarts < MAX_RESTARTS)
    @rule(noticed=st.booleans())
    def restart_redis(self, noticed):
        """kill -9 and restart the append-only Redis (down long enough for the worker to notice, or not);
        wait until the worker sees it again."""
        self.server.kill()
        if noticed:  # the worker's model poll fails within model_poll_s
            wait_for(
                lambda: httpx.get(f"{self.base_url}/v1/health", timeout=5).json()["status"] == "degraded",
                10,
                "the worker to see Redis down",
            )
        self.server.start()
        self.restarts += 1
        self.exercised["redis restart"] += 1
        wait_for(
            lambda: httpx.get(f"{self.base_url}/v1/health", timeout=5).json()["status"] == "ok",
            10,
            "the worker to see Redis again",
        )

    @precondition(lambda self: self.drains < MAX_DRAINS)
    @rule()
    def drain(self):
        """Learn everything (waiting for a dead learner's lease): the model is the reference over all."""
        wait_for(
            lambda: set(self.decisions) <= set(stored_decisions(self.client, self.prefix, self.name)),
            10,
            "spooled decisions to be shipped",
        )
        self.wait_for_lease()
        learner, _ = self.current_learner()
        learner.run(once=True)
        arms = {decision_id: answer["arm"] for decision_id, answer in self.decisions.items()}
        assert_model_is_reference(self.client, self.prefix, self.spec, self.accepted, arms)
        assert self.client.xpending(self.keys.reward_stream, LEARNERS)["pending"] == 0
        self.drains += 1
        self.exercised["drain"] += 1

    # ---- after every step ---------------------------------------------------------------------
    @invariant()
    def rewards_kept_are_the_accepted_ones(self):
        assert {i: r.value for i, r in stored_rewards(self.client, self.prefix, self.name).items()} == self.accepted

    @invariant()
    def model_counts_each_reward_up_to_its_offset_once(self):
        stored = meta(self.client, self.prefix, self.name)
        offset = tuple(map(int, stored["reward_offset"].split("-")))
        learned = [
            json.loads(fields["reward"])
            for entry_id, fields in self.client.xrange(self.keys.reward_stream)
            if tuple(map(int, entry_id.split("-"))) <= offset
        ]
        rewards = {row[0]: row[3] for row in learned}
        assert len(rewards) == len(learned)  # no decision twice in the stream
        arms = {decision_id: answer["arm"] for decision_id, answer in self.decisions.items()}
        assert_model_is_reference(self.client, self.prefix, self.spec, rewards, arms)


@pytest.mark.slow
def test_learning_loop_state_machine(redis_aof, tmp_path):
    LearningLoop.server, LearningLoop.directory = redis_aof, tmp_path
    run_state_machine_as_test(
        LearningLoop,
        settings=settings(
            max_examples=15,
            stateful_step_count=30,
            derandomize=True,  # the same runs here and in CI, so the coverage check below is stable
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    missing = {
        "learner crash after_read",
        "learner crash after_apply",
        "redis restart",
        "drain",
        "duplicate reward",
        "conflicting reward",
    } - set(LearningLoop.exercised)
    assert not missing, f"the runs never did {missing}: {LearningLoop.exercised}"

"""A Hypothesis state machine: decide, reward by decision id, restart — beside a reference model of counts;
on a SQLite file, and on the real Redis with a learner pass after each new reward."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from banditkit.service import Settings, create_app

if TYPE_CHECKING:
    from fastapi.testclient import TestClient
from banditkit.service.stores.redis_keys import Keys

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")]
ARMS = ["a", "b", "c"]


class ServiceMachine(RuleBasedStateMachine):
    """The real app on a real SQLite file (in-process ASGI), restarted at will; the model is plain counts."""

    decisions = Bundle("decisions")

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.folder = tempfile.TemporaryDirectory()
        self.settings = Settings(
            store=self.store(),
            sweep_interval_s=60.0,
            sqlite_synchronous="NORMAL",
            tune_interpreter=False,
            model_poll_s=0.005,
            spool_dir=f"{self.folder.name}/spool",
        )
        self.client = self._open()
        created = self.client.post("/v1/experiments", json={"name": "m", "arms": ARMS, "sticky": True})
        assert created.status_code == 201
        self.arm_of: dict[str, str] = {}
        self.reward_of: dict[str, float] = {}
        self.unit_arm: dict[str, str] = {}

    def store(self) -> str:
        return f"sqlite:///{self.folder.name}/machine.db"

    def learned(self) -> None:
        """Nothing to wait for: the SQLite store learns a reward as it records it."""

    def _open(self) -> TestClient:
        """A client of a new app on the same store, its lifespan entered (the store opened)."""
        from fastapi.testclient import TestClient

        client = TestClient(create_app(self.settings))
        client.__enter__()
        return client

    @rule(target=decisions, unit=st.none() | st.sampled_from(["u1", "u2", "u3"]))
    def decide(self, unit):
        answer = self.client.post("/v1/experiments/m/decisions", json={} if unit is None else {"unit": unit})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["arm"] in ARMS and 0 < body["propensity"] <= 1 and body["fallback"] is False
        if unit is not None:  # sticky: a unit keeps its first arm (all arms stay active here)
            assert self.unit_arm.setdefault(unit, body["arm"]) == body["arm"]
        self.arm_of[body["decision_id"]] = body["arm"]
        return body["decision_id"]

    @rule(decision_id=decisions, value=st.sampled_from([0.0, 1.0]))
    def reward(self, decision_id, value):
        answer = self.client.post("/v1/experiments/m/rewards", json={"decision_id": decision_id, "value": value})
        first = self.reward_of.get(decision_id)
        if first is None or first == value:
            assert answer.status_code == 200, answer.text
            assert answer.json()["arm"] == self.arm_of[decision_id]
            self.reward_of[decision_id] = value
            if first is None:
                self.learned()
        else:
            assert answer.status_code == 409, answer.text

    @rule()
    def restart(self):
        self.client.__exit__(None, None, None)
        self.client = self._open()

    @invariant()
    def counts_match_the_model(self):
        stats = self.client.get("/v1/experiments/m/stats").json()
        pulls = Counter(self.arm_of[d] for d in self.reward_of)
        sums = Counter()
        for decision_id, value in self.reward_of.items():
            sums[self.arm_of[decision_id]] += value
        assert stats["decisions"] == len(self.arm_of) and stats["rewards"] == len(self.reward_of)
        for row in stats["arms"]:
            assert row["pulls"] == pulls[row["arm"]]
            assert row["mean"] == (sums[row["arm"]] / pulls[row["arm"]] if pulls[row["arm"]] else None)
        assert stats["policy_version"] == len(self.reward_of)  # one version per applied reward here

    def teardown(self):
        self.client.__exit__(None, None, None)
        self.folder.cleanup()


class RedisServiceMachine(ServiceMachine):
    """The same machine on the real Redis (a key prefix of its own); a learner pass learns each new reward."""

    def store(self) -> str:
        self.prefix = f"t{uuid.uuid4().hex[:12]}"
        return f"redis://127.0.0.1:6379/0?prefix={self.prefix}"

    def learned(self) -> None:
        from banditkit.service.learner import Learner

        if not hasattr(self, "learner"):
            self.learner = Learner.from_url(self.settings.store)
        assert self.learner.step().applied == 1
        stored = int(self.learner.client.hget(Keys.of(self.prefix, "m").meta, "version"))
        deadline = time.monotonic() + 10.0
        while self.client.get("/v1/experiments/m").json()["policy_version"] < stored:
            assert time.monotonic() < deadline, f"the server did not follow version {stored}"
            time.sleep(0.002)

    def teardown(self):
        super().teardown()
        if hasattr(self, "learner"):
            self.learner.close()
        with redis.Redis(host="127.0.0.1", port=6379) as shared:
            for key in shared.scan_iter(match=f"{self.prefix}:*", count=1000):
                shared.delete(key)


for machine in (ServiceMachine, RedisServiceMachine):
    machine.TestCase.settings = settings(
        max_examples=8, stateful_step_count=20, deadline=None, suppress_health_check=list(HealthCheck)
    )
TestServiceMachine = ServiceMachine.TestCase
TestRedisServiceMachine = RedisServiceMachine.TestCase

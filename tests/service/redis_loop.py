"""The serving side of the Redis learning loop, as the learner's tests need it: experiments, decisions and
claimed rewards written with the shared keys and scripts of ``redis_keys`` (what a serving worker writes),
on the shared Redis at 127.0.0.1:6379 under a unique key prefix per test."""

from __future__ import annotations

import itertools
import json
import time
import uuid

import numpy as np
import pytest
import redis

from banditkit.bandit import Bandit
from banditkit.service.experiment import build_bandit
from banditkit.service.model import join, served_state, split
from banditkit.service.schemas import ExperimentCreate, PolicySpec
from banditkit.service.stores.base import DecisionRecord
from banditkit.service.stores.redis_keys import (
    CLAIM_REWARDS,
    CREATE_EXPERIMENT,
    LOG_DECISIONS,
    Keys,
    claim_args,
    claim_keys,
    experiments_key,
    log_args,
    log_keys,
    pack_state,
    parse_meta,
    read_meta,
)

_SEQUENCE = itertools.count()


@pytest.fixture
def redis_prefix():
    """(client, prefix) on the shared Redis; every key under the prefix is deleted afterwards."""
    client = redis.Redis(host="127.0.0.1", port=6379, decode_responses=True)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("the learner tests need a Redis server on 127.0.0.1:6379", pytrace=False)
    prefix = f"test-learner-{uuid.uuid4().hex[:12]}"
    yield client, prefix
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for first in range(0, len(keys), 500):
        client.delete(*keys[first : first + 500])
    client.close()


def create(
    client,
    prefix: str,
    name: str,
    arms: list[str],
    policy: str = "thompson",
    *,
    params=None,
    window_s: float = 60.0,
    default_reward: float | None = None,
    guardrails=None,
    n_features: int | None = None,
) -> Bandit:
    """An experiment as the Redis store creates it; returns its starting Bandit."""
    spec = ExperimentCreate(
        name=name,
        arms=arms,
        policy=PolicySpec(name=policy, params=params or {}),
        guardrails=guardrails,
        attribution_window_s=window_s,
        default_reward=default_reward,
        n_features=n_features,
    )
    bandit = build_bandit(spec)
    model, arrays = split(bandit)
    keys = Keys.of(prefix, name)
    client.sadd(experiments_key(prefix), name)
    created = client.eval(
        CREATE_EXPERIMENT,
        3,
        keys.meta,
        keys.events,
        keys.reward_stream,
        json.dumps(spec.model_dump(mode="json")),
        repr(time.time()),
        json.dumps(model),
        pack_state(arrays),
        bandit.version,
        json.dumps({"kind": "create"}),
    )
    assert created == 1
    return bandit


def decision_id(t: float) -> str:
    """An id like the engine's: 12 hex digits of milliseconds, a sequence, random bits."""
    return f"{int(t * 1000):012x}{next(_SEQUENCE) & 0xFFFFF:05x}{uuid.uuid4().int & (2**60 - 1):015x}"


def log_decisions(
    client, prefix: str, name: str, arms: list[str], arm_names, propensities, contexts=None, times=None
) -> list[DecisionRecord]:
    """Decisions logged as a worker logs them (stream entry, pending row, open window, count)."""
    keys = Keys.of(prefix, name)
    now = time.time()
    records = []
    for i, arm in enumerate(arm_names):
        t = now if times is None else float(times[i])
        p = float(propensities[i])
        probabilities = {a: (p if a == arm else (1 - p) / (len(arms) - 1)) for a in arms}
        context = None if contexts is None else tuple(float(x) for x in contexts[i])
        records.append(DecisionRecord(decision_id(t), t, name, f"u{i}", context, arm, p, probabilities, 0, False))
    for first in range(0, len(records), 1000):
        client.eval(LOG_DECISIONS, 5, *log_keys(keys), *log_args(records[first : first + 1000]))
    return records


def claim(
    client,
    prefix: str,
    name: str,
    claims: list[tuple[str, float, str]],
    *,
    now: float | None = None,
    window_s: float = 60.0,
) -> list[tuple[str, str]]:
    """Claim rewards (decision_id, value, source) with the shared script; (answer, row JSON) pairs."""
    keys = Keys.of(prefix, name)
    answers = []
    for first in range(0, len(claims), 1000):
        flat = client.eval(
            CLAIM_REWARDS,
            6,
            *claim_keys(keys),
            *claim_args(time.time() if now is None else now, window_s, name, claims[first : first + 1000]),
        )
        answers += list(zip(flat[0::2], flat[1::2], strict=True))
    return answers


def stored_bandit(client, prefix: str, name: str) -> Bandit:
    """The Bandit as the learner left it in meta."""
    meta = parse_meta(read_meta(client, Keys.of(prefix, name).meta))
    return join(meta.model, meta.state, meta.version, np.random.default_rng(0))


def assert_same_learning(learned: Bandit, reference: Bandit, exact_keys=None) -> None:
    """Policy state and reward ledger bit for bit (``exact_keys``: only those state keys bit for bit, the
    others to 1e-12)."""
    learned_state, reference_state = served_state(learned), served_state(reference)
    assert learned_state.keys() == reference_state.keys()
    for key, value in reference_state.items():
        if exact_keys is None or key in exact_keys:
            np.testing.assert_array_equal(learned_state[key], value, err_msg=key)
        else:
            np.testing.assert_allclose(learned_state[key], value, rtol=1e-12, atol=1e-12, err_msg=key)
    for key in ("pulls", "reward_sums", "reward_sq_sums", "total_reward", "active", "aborted", "disabled_reasons"):
        assert learned.to_dict()[key] == reference.to_dict()[key], key


class Killed(BaseException):
    """The process died here (a BaseException, so no handler in the learner catches it)."""


class Interposed:
    """A Redis client that runs ``hook(name, args)`` before each call, counting calls from ``arm()``.

    The hook may raise :class:`Killed` (the learner dies before the call reaches Redis) or return "after"
    (the call runs, then the learner dies before it sees the answer) or "lost" (the call runs, then the
    connection fails before the answer comes back).
    """

    def __init__(self, client) -> None:
        self._client = client
        self.hook = None
        self.calls: list[str] = []

    def arm(self, hook) -> None:
        self.hook = hook

    def __getattr__(self, name):
        attribute = getattr(self._client, name)
        if not callable(attribute) or self.hook is None:
            return attribute

        def call(*args, **kwargs):
            index = len(self.calls)
            self.calls.append(name)
            outcome = self.hook(index, name, args)
            try:
                return attribute(*args, **kwargs)
            finally:
                if outcome == "after":
                    raise Killed(f"after call {index} ({name})")  # the process is gone
                if outcome == "lost":
                    raise redis.ConnectionError(f"connection lost after call {index} ({name})")

        return call

"""A heavy experiment (LinUCB, 512 features x 2 arms: 8.4 MB of state) beside a small one, over real HTTP
against a real ``banditkit serve`` process: the small one's decisions stay fast while the heavy one learns,
an experiment over the size limit is refused at creation, and a killed server serves exactly the model it
had learned when it starts again."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from redis_servers import BanditkitProcess

from banditkit.policies import UCB1, LinTS, LinUCB
from banditkit.service.experiment import LARGEST_LINEAR, MAX_STATE_BYTES, state_bytes

FEATURES = 512
HEAVY = {
    "name": "heavy",
    "arms": ["a", "b"],
    "policy": {"name": "linucb", "params": {"alpha": 1.0}},
    "n_features": FEATURES,
    "attribution_window_s": 600.0,
}
SMALL = {"name": "small", "arms": ["a", "b", "c"], "attribution_window_s": 600.0}
#: The issue's target for the small experiment while the heavy one takes rewards (9 ms alone, 1,243 ms before).
P99_S = 0.025


@pytest.fixture(params=["sqlite", "memory", "redis"])
def store(request, tmp_path, processes) -> str:
    """A store URL; on Redis a ``banditkit learn`` process learns beside the server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'heavy.db'}"
    if request.param == "memory":
        return "memory://"
    url = request.getfixturevalue("shared_store")[0]
    processes(BanditkitProcess(["learn", "--store", url], tmp_path / "learn.log").start())
    return url


def create(client: httpx.Client, spec: dict) -> None:
    response = client.post("/v1/experiments", json=spec)
    assert response.status_code == 201, response.text


#: The heavy experiment's client, in a process of its own (so that its work does not delay the measuring
#: thread's): a decision, then its reward, until the given seconds have passed; prints how many rewards.
HEAVY_CLIENT = """
import sys, time
import httpx, numpy as np
base_url, seconds, features = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
rng, rewarded, deadline = np.random.default_rng(1), 0, time.monotonic() + seconds
with httpx.Client(base_url=base_url, timeout=60.0) as client:
    while time.monotonic() < deadline:
        context = rng.standard_normal(features).round(4).tolist()
        decision = client.post("/v1/experiments/heavy/decisions", json={"context": context})
        assert decision.status_code == 200, decision.text
        body = {"decision_id": decision.json()["decision_id"], "value": float(rng.random() < 0.3)}
        reward = client.post("/v1/experiments/heavy/rewards", json=body)
        assert reward.status_code == 200, reward.text
        rewarded += 1
print(rewarded)
"""


def small_decisions(client: httpx.Client, seconds: float) -> list[float]:
    """Latencies of the small experiment's decisions, one after the other, for ``seconds``."""
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        response = client.post("/v1/experiments/small/decisions", json={})
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return latencies


def test_a_heavy_experiment_does_not_stall_the_decisions_of_another(store, server_process, tmp_path):
    """The small experiment's decision p99 stays under 25 ms while the heavy one takes rewards (it was
    440-560 ms here before, 1,243 ms in the issue). The bound is 25 ms, or 1.5 times the small experiment's own
    p99 measured just before without the heavy traffic if the machine (shared with other work) is slower
    than that even then: what is checked is that the heavy experiment adds no stall.

    SQLite runs with ``synchronous=NORMAL`` here: with FULL every commit also waits for an fsync, and any
    other experiment's traffic adds commits to wait for; that costs the same beside a LinUCB of 2 features
    as of 512 (small p99 31 and 34 ms against 10 and 22 ms alone, ``benchmarks/bench_heavy.py --features``,
    2 cores under other load), so it is not what a large state does, and it is not measured here."""
    server = server_process(store, spool_dir=tmp_path / "spool", model_poll_s=0.05, sqlite_synchronous="NORMAL")
    with httpx.Client(base_url=server.base_url, timeout=60.0) as client:
        create(client, SMALL)
        create(client, HEAVY)
        small_decisions(client, 0.5)  # warm up: the first requests pay for imports and compilation
        alone = float(np.quantile(small_decisions(client, 2.0), 0.99))
        heavy = subprocess.Popen(
            [sys.executable, "-c", HEAVY_CLIENT, server.base_url, "7", str(FEATURES)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(0.5)  # the heavy client is taking rewards
            latencies = small_decisions(client, 6.0)
        finally:
            out, err = heavy.communicate(timeout=60)
        assert heavy.returncode == 0, err
        rewarded = int(out)
        if store.startswith("sqlite:///"):
            # Before, every reward wrote the whole state: the WAL grew by about 7 MB a reward (221 MB after 32
            # here, 451 MB in the issue). Now a reward adds its rows; the WAL, cut back to 64 MB once
            # checkpointed, holds the creation's 8.4 MB and a few pages per commit of either experiment.
            wal = (tmp_path / "heavy.db-wal").stat().st_size
            assert wal < 64e6 + 2e6 * rewarded, f"WAL of {wal / 1e6:.0f} MB after {rewarded} rewards"
        # It kept learning meanwhile (a few hundred rewards in 7 s on 2 cores, fewer when other work keeps
        # the cores busy: its lane yields the CPU to serving).
        assert rewarded >= 5, f"the heavy experiment took only {rewarded} rewards in 7 s"
        p99 = float(np.quantile(latencies, 0.99))
        assert p99 < max(P99_S, 1.5 * alone), (
            f"small experiment's decision p99 {1e3 * p99:.1f} ms (max {1e3 * max(latencies):.0f} ms, "
            f"{len(latencies)} decisions) while the heavy one took {rewarded} rewards; "
            f"{1e3 * alone:.1f} ms without them"
        )
        # The heavy experiment learned them (on Redis once the learner's paced update reached the server).
        deadline = time.monotonic() + 15.0
        while client.get("/v1/experiments/heavy").json()["policy_version"] < 1:
            assert time.monotonic() < deadline, "the heavy experiment's model never moved"
            time.sleep(0.1)


def test_an_experiment_over_the_size_limit_is_refused_at_creation(store, server_process, tmp_path):
    server = server_process(store, spool_dir=tmp_path / "spool")
    with httpx.Client(base_url=server.base_url, timeout=60.0) as client:
        too_large = client.post("/v1/experiments", json={**HEAVY, "name": "huge", "n_features": 1031})
        assert too_large.status_code == 422, too_large.text
        (detail,) = too_large.json()["detail"]
        assert detail["loc"] == ["body", "n_features"]
        assert "1031 x 2" in detail["msg"] and LARGEST_LINEAR in detail["msg"]
        assert f"{MAX_STATE_BYTES / 1e6:.1f} MB" in detail["msg"]
        many_arms = client.post(
            "/v1/experiments", json={**HEAVY, "name": "wide", "arms": [f"arm{i}" for i in range(300)]}
        )
        assert many_arms.status_code == 422 and many_arms.json()["detail"][0]["loc"] == ["body", "n_features"]
        assert client.get("/v1/experiments/huge").status_code == 404
        # Below the limit, and non-contextual policies with many arms (a few numbers per arm), are served.
        create(client, {**HEAVY, "name": "fits", "n_features": 512, "arms": [f"arm{i}" for i in range(8)]})
        grown = client.patch("/v1/experiments/fits/arms", json={"add": ["one-more"]})  # 514 x 9 would not fit
        assert grown.status_code == 422 and grown.json()["detail"][0]["loc"] == ["body", "add"], grown.text
        assert "at most 34.0 MB" in grown.json()["detail"][0]["msg"]
        assert [arm["name"] for arm in client.get("/v1/experiments/fits").json()["arms"]][-1] == "arm7"
        create(client, {**SMALL, "name": "many", "arms": [f"arm{i}" for i in range(1000)]})
        # A policy that keeps the rows it learns from must bound them, to the largest max_rows that fits.
        buffered = {
            "name": "buffered",
            "arms": ["a", "b"],
            "n_features": 20,
            "policy": {"name": "bootstrapped_thompson", "params": {}},
        }
        unbounded = client.post("/v1/experiments", json=buffered)
        assert unbounded.status_code == 422 and unbounded.json()["detail"][0]["loc"] == ["body", "policy"]
        largest = int(unbounded.json()["detail"][0]["msg"].split("at most ")[1].split()[0])
        assert largest == 92_391  # 2 x max_rows rows of 20 features, an arm, a reward and an id: 8 bytes each
        policy = {"name": "bootstrapped_thompson", "params": {"max_rows": largest + 1}}
        assert client.post("/v1/experiments", json={**buffered, "policy": policy}).status_code == 422
        create(client, {**buffered, "policy": {"name": "bootstrapped_thompson", "params": {"max_rows": largest}}})


@pytest.mark.parametrize("checkpoint_s", [60.0, 0.5])
def test_a_killed_server_serves_the_heavy_model_it_had_learned(server_process, tmp_path, checkpoint_s):
    """Rewards learned since the last checkpoint are in the log: a restart learns them again, in the same
    groups and order, so the restarted server draws the same arms with the same propensities, bit for bit.
    With ``checkpoint_s`` 60 nothing but the creation was checkpointed; with 0.5 checkpoints were written
    during the traffic and only the rewards after the last one are learned again."""
    store = f"sqlite:///{tmp_path / 'crash.db'}"
    spec = {**HEAVY, "policy": {"name": "lints", "params": {"v": 0.5}}}  # propensities that move with the state
    rng = np.random.default_rng(7)
    probes = [rng.standard_normal(FEATURES).round(4).tolist() for _ in range(5)]

    def probe(client: httpx.Client) -> list[tuple]:
        answers = []
        for i, context in enumerate(probes):
            body = {"context": context, "unit": f"probe-{i}"}
            answer = client.post("/v1/experiments/heavy/decisions", json=body).json()
            answers.append((answer["arm"], answer["propensity"], answer["policy_version"]))
        return answers

    first = server_process(store, checkpoint_s=checkpoint_s)
    with httpx.Client(base_url=first.base_url, timeout=60.0) as client:
        create(client, spec)
        learned = 0
        started = time.monotonic()
        while learned < 60 or time.monotonic() - started < 1.5:  # past a checkpoint with checkpoint_s 0.5
            context = rng.standard_normal(FEATURES).round(4).tolist()
            decision = client.post("/v1/experiments/heavy/decisions", json={"context": context}).json()
            rewards = [{"decision_id": decision["decision_id"], "value": float(rng.random() < 0.4)}]
            if learned % 10 == 0:  # some rewards arrive in batches: a delta of several rows, learned as one
                more = [
                    client.post("/v1/experiments/heavy/decisions", json={"context": probes[j]}).json() for j in range(3)
                ]
                rewards += [{"decision_id": d["decision_id"], "value": 1.0} for d in more]
            results = client.post("/v1/experiments/heavy/rewards/batch", json={"rewards": rewards}).json()["results"]
            assert {result["status"] for result in results} == {200}
            learned += len(rewards)
        before = probe(client)
        stats = client.get("/v1/experiments/heavy/stats").json()
    first.kill()  # no shutdown: nothing is checkpointed on the way out

    second = server_process(store, checkpoint_s=checkpoint_s)
    with httpx.Client(base_url=second.base_url, timeout=60.0) as client:
        again = client.get("/v1/experiments/heavy/stats").json()
        assert again["policy_version"] == stats["policy_version"]
        assert [arm["pulls"] for arm in again["arms"]] == [arm["pulls"] for arm in stats["arms"]]
        assert sum(arm["pulls"] for arm in again["arms"]) == learned
        assert probe(client) == [(arm, propensity, version) for arm, propensity, version in before]


@pytest.mark.parametrize(
    "policy, arms, features",
    [(LinUCB(), 2, 1030), (LinTS(), 4, 728), (LinUCB(), 8, 514), (LinTS(), 16, 363)],
)
def test_the_largest_linear_experiments_are_the_ones_the_limit_names(policy, arms, features):
    """``state_bytes`` is read off small states; it equals the real state's size, and the sizes the 422
    names are the largest under the limit."""
    assert f"{features} x {arms}" in LARGEST_LINEAR or f"{features} features x {arms}" in LARGEST_LINEAR
    assert state_bytes(policy, arms, features) <= MAX_STATE_BYTES < state_bytes(policy, arms, features + 1)
    for policy_of_size, n_arms, n_features in [(LinUCB(standardize=True), 3, 7), (LinTS(), 5, 9), (UCB1(), 1000, None)]:
        state = policy_of_size.init_state(n_arms, n_features=n_features)
        assert state_bytes(policy_of_size, n_arms, n_features) == sum(array.nbytes for array in state.values())

"""Crash: kill -9 the server in the middle of traffic, restart on the same file, check what was acknowledged."""

from __future__ import annotations

import csv
import io
import threading
import time

import httpx
import numpy as np
import pytest


def traffic(base_url: str, decided: dict, rewarded: dict, stop: threading.Event) -> None:
    """Decisions and rewards as fast as possible, keeping only what the server acknowledged."""
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        step = 0
        while not stop.is_set():
            try:
                if step % 4 == 3:
                    body = {"requests": [{"unit": f"u{step}-{i}"} for i in range(50)]}
                    answers = client.post("/v1/experiments/hero/decisions/batch", json=body).json()["decisions"]
                else:
                    answers = [client.post("/v1/experiments/hero/decisions", json={}).json()]
                decided.update((a["decision_id"], a) for a in answers)
                ids = list(decided)[-len(answers) - 1 : -1]
                if not ids:
                    step += 1
                    continue
                rewards = {"rewards": [{"decision_id": d, "value": float(len(d) % 2)} for d in ids]}
                for result in client.post("/v1/experiments/hero/rewards/batch", json=rewards).json()["results"]:
                    assert result["status"] == 200, result
                    rewarded[result["decision_id"]] = result["value"]
            except (httpx.TransportError, ValueError):
                return  # the server died under us
            step += 1


@pytest.mark.slow
def test_acknowledged_writes_survive_kill_9(server_process, tmp_path, create):
    store = f"sqlite:///{tmp_path / 'crash.db'}"
    first = server_process(store)
    with httpx.Client(base_url=first.base_url, timeout=10.0) as client:
        create(client)
    decided, rewarded, stop = {}, {}, threading.Event()
    worker = threading.Thread(target=traffic, args=(first.base_url, decided, rewarded, stop))
    worker.start()
    deadline = time.monotonic() + 20
    while len(rewarded) < 300 and time.monotonic() < deadline and worker.is_alive():
        time.sleep(0.02)
    first.kill()  # mid-traffic: requests are in flight
    stop.set()
    worker.join()
    assert len(rewarded) >= 300

    second = server_process(store)
    with httpx.Client(base_url=second.base_url, timeout=30.0) as client:
        log = {
            row["decision_id"]: row
            for row in csv.DictReader(
                io.StringIO(client.get("/v1/experiments/hero/log", params={"format": "csv"}).text)
            )
        }
        for decision_id, answer in decided.items():
            row = log[decision_id]  # every acknowledged decision is in the log
            assert row["arm"] == answer["arm"] and float(row["propensity"]) == answer["propensity"]
        for decision_id, value in rewarded.items():
            assert float(log[decision_id]["reward"]) == value
        stats = client.get("/v1/experiments/hero/stats").json()
        logged_rewards = [float(row["reward"]) for row in log.values() if row["reward"]]
        assert stats["rewards"] == len(logged_rewards)
        assert sum(row["pulls"] for row in stats["arms"]) == len(logged_rewards)  # none applied twice or lost
        # Retries after the restart return the first answers and change nothing.
        retry = {"rewards": [{"decision_id": d, "value": v} for d, v in list(rewarded.items())[:500]]}
        results = client.post("/v1/experiments/hero/rewards/batch", json=retry).json()["results"]
        assert {r["status"] for r in results} == {200}
        again = client.get("/v1/experiments/hero/stats").json()
        assert [row["pulls"] for row in again["arms"]] == [row["pulls"] for row in stats["arms"]]
        assert again["policy_version"] == stats["policy_version"]


def heavy_traffic(base_url: str, rewarded: dict, stop: threading.Event) -> None:
    """Decisions and rewards of a 512-feature LinUCB experiment, keeping what the server acknowledged."""
    rng = np.random.default_rng(5)
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        while not stop.is_set():
            try:
                contexts = [rng.standard_normal(512).round(4).tolist() for _ in range(3)]
                body = {"requests": [{"context": context} for context in contexts]}
                answers = client.post("/v1/experiments/heavy/decisions/batch", json=body).json()["decisions"]
                rewards = {"rewards": [{"decision_id": a["decision_id"], "value": 1.0} for a in answers]}
                for result in client.post("/v1/experiments/heavy/rewards/batch", json=rewards).json()["results"]:
                    assert result["status"] == 200, result
                    rewarded[result["decision_id"]] = result["value"]
            except (httpx.TransportError, ValueError):
                return  # the server died under us


@pytest.mark.slow
def test_a_heavy_experiment_keeps_every_acknowledged_reward_through_kill_9(server_process, tmp_path, create):
    """The state is a checkpoint and the reward rows the truth: killed mid-traffic (a checkpoint written
    during it, rewards after it), the restarted server's model holds every acknowledged reward, once."""
    store = f"sqlite:///{tmp_path / 'heavy-crash.db'}"
    first = server_process(store, checkpoint_s=0.5)
    with httpx.Client(base_url=first.base_url, timeout=10.0) as client:
        create(client, "heavy", arms=["a", "b"], policy={"name": "linucb", "params": {}}, n_features=512)
    rewarded: dict = {}
    stop = threading.Event()
    worker = threading.Thread(target=heavy_traffic, args=(first.base_url, rewarded, stop))
    worker.start()
    started = time.monotonic()
    while (len(rewarded) < 60 or time.monotonic() - started < 2.0) and time.monotonic() - started < 30:
        time.sleep(0.02)
    first.kill()  # mid-traffic: requests are in flight
    stop.set()
    worker.join()
    assert len(rewarded) >= 60

    second = server_process(store)
    with httpx.Client(base_url=second.base_url, timeout=30.0) as client:
        log = csv.DictReader(io.StringIO(client.get("/v1/experiments/heavy/log", params={"format": "csv"}).text))
        logged = {row["decision_id"]: row["reward"] for row in log}
        for decision_id, value in rewarded.items():
            assert float(logged[decision_id]) == value
        stats = client.get("/v1/experiments/heavy/stats").json()
        learned = sum(1 for value in logged.values() if value)
        assert sum(arm["pulls"] for arm in stats["arms"]) == stats["rewards"] == learned >= len(rewarded)

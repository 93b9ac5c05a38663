"""The served model out and in, over real HTTP against a real ``banditkit serve``: ``GET …/model`` with an ETag,
a new experiment warm-started from it, bad models refused naming the field, and ``banditkit evaluate --model``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from redis_servers import BanditkitProcess

import banditkit as bk
from banditkit._codec import encode_arrays

ROOT = Path(__file__).resolve().parents[2]
SOURCE = {"name": "source", "arms": ["a", "b", "c"], "policy": "thompson", "seed": 3}


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path, processes) -> str:
    """A store URL; on Redis a ``banditkit learn`` process learns beside the server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'models.db'}"
    url = request.getfixturevalue("shared_store")[0]
    processes(BanditkitProcess(["learn", "--store", url, "--every", "0.05"], tmp_path / "learn.log").start())
    return url


def learn(client: httpx.Client, name: str, n: int) -> None:
    """``n`` decisions of ``name``, each rewarded 1 when its arm is ``a``; returns once the model has them all."""

    def pulls() -> float:
        return sum(arm["pulls"] for arm in client.get(f"/v1/experiments/{name}/stats").json()["arms"])

    before = pulls()
    decided = client.post(f"/v1/experiments/{name}/decisions/batch", json={"requests": [{}] * n}).json()["decisions"]
    rewards = [{"decision_id": d["decision_id"], "value": float(d["arm"] == "a")} for d in decided]
    client.post(f"/v1/experiments/{name}/rewards/batch", json={"rewards": rewards}).raise_for_status()
    deadline = time.monotonic() + 20
    while pulls() < before + n:
        assert time.monotonic() < deadline, "the rewards were never learned"
        time.sleep(0.05)


def test_a_model_goes_out_with_its_etag_and_warm_starts_another_experiment(store, server_process, tmp_path):
    server = server_process(store, spool_dir=tmp_path / "spool", model_poll_s=0.02)
    with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        client.post("/v1/experiments", json=SOURCE).raise_for_status()
        learn(client, "source", 60)
        answer = client.get("/v1/experiments/source/model")
        assert answer.status_code == 200, answer.text
        body, etag = answer.json(), answer.headers["etag"]
        assert etag == f'W/"source:{body["version"]}"' and body["version"] > 0
        trained = bk.Bandit.from_dict(body["model"])
        stats = client.get("/v1/experiments/source/stats").json()
        assert [arm.pulls for arm in trained.stats()] == [arm["pulls"] for arm in stats["arms"]]
        served = {arm["arm"]: arm["probability"] for arm in stats["arms"]}
        assert trained.probabilities() == pytest.approx(served, abs=1e-9)

        unchanged = client.get("/v1/experiments/source/model", headers={"If-None-Match": etag})
        assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged.headers["etag"] == etag
        learn(client, "source", 5)
        moved = client.get("/v1/experiments/source/model", headers={"If-None-Match": etag})
        assert moved.status_code == 200 and moved.headers["etag"] != etag

        # Warm start: arms, policy and features come from the model; the new experiment starts at version 0.
        created = client.post("/v1/experiments", json={"name": "warm", "model": body["model"], "seed": 1})
        assert created.status_code == 201, created.text
        described = created.json()
        assert [arm["name"] for arm in described["arms"]] == ["a", "b", "c"]
        assert described["policy"]["name"] == "thompson" and described["policy_version"] == 0
        warm = client.get("/v1/experiments/warm/model").json()
        assert warm["version"] == 0 and warm["model"]["name"] == "warm"
        assert warm["model"]["state"] == body["model"]["state"]  # the learned arrays, bit for bit
        events = client.get("/v1/experiments/warm/events").json()
        assert events[0]["kind"] == "create" and events[0]["warm_start"] is True
        # It serves what the model learned: arm a (paid 1) is far ahead.
        decisions = client.post("/v1/experiments/warm/decisions/batch", json={"requests": [{}] * 200}).json()
        assert sum(d["arm"] == "a" for d in decisions["decisions"]) > 150


def bad_models(model: dict) -> list[tuple[dict, str, str]]:
    """(request body, field named, words of the message) for models the service must refuse."""
    nan_state = dict(model["state"], **encode_arrays({"pulls": np.array([[np.nan, 1.0, 1.0]])}))
    return [
        ({"name": "x", "model": dict(model, format="banditkit.bandit/9")}, "model", "model.format: format must be"),
        ({"name": "x", "model": dict(model, state=nan_state)}, "model", "state['pulls'] holds NaN"),
        ({"name": "x", "model": {k: v for k, v in model.items() if k != "rng"}}, "model", "lacks rng"),
        ({"name": "x", "model": dict(model, pulls=[1.0])}, "model", "pulls must be 3 finite numbers"),
        ({"name": "x", "model": model, "arms": ["a", "b"]}, "arms", "arms must be the model's"),
        ({"name": "x", "model": model, "policy": "ucb1"}, "policy", "policy must be the model's"),
        ({"name": "x", "model": dict(model, arms="abc")}, "arms", "valid array"),
    ]


def test_a_bad_model_is_refused_naming_the_field(server_process, tmp_path):
    server = server_process(f"sqlite:///{tmp_path / 'bad.db'}")
    with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        client.post("/v1/experiments", json=SOURCE).raise_for_status()
        learn(client, "source", 10)
        model = client.get("/v1/experiments/source/model").json()["model"]
        for body, field, words in bad_models(model):
            answer = client.post("/v1/experiments", json=body)
            assert answer.status_code == 422, (words, answer.text)
            (detail,) = answer.json()["detail"]
            assert detail["loc"][:2] == ["body", field] and words in detail["msg"], (words, detail)
        assert client.get("/v1/experiments/x").status_code == 404
        assert client.get("/v1/experiments/nothing/model").status_code == 404


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "banditkit.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_evaluate_takes_the_served_model_and_says_when_a_policy_is_untrained(server_process, tmp_path):
    server = server_process(f"sqlite:///{tmp_path / 'cli.db'}")
    with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        client.post("/v1/experiments", json=SOURCE).raise_for_status()
        learn(client, "source", 300)
        (tmp_path / "model.json").write_text(client.get("/v1/experiments/source/model").text)
        (tmp_path / "log.csv").write_text(client.get("/v1/experiments/source/log").text)
    trained = run_cli("evaluate", str(tmp_path / "log.csv"), "--model", str(tmp_path / "model.json"), "-e", "ips")
    assert trained.returncode == 0, trained.stderr
    assert "model.json" in trained.stdout and "(300 rows)" in trained.stdout and "note:" not in trained.stdout
    prior = run_cli("evaluate", str(tmp_path / "log.csv"), "--policy", "thompson", "-e", "ips")
    assert prior.returncode == 0, prior.stderr
    assert "note: thompson has learned no rewards" in " ".join(prior.stdout.split())
    neither = run_cli("evaluate", str(tmp_path / "log.csv"))
    assert neither.returncode == 2 and "give the target as --policy or as --model" in neither.stderr
    (tmp_path / "broken.json").write_text(json.dumps({"experiment": "source", "model": {"format": "x"}}))
    broken = run_cli("evaluate", str(tmp_path / "log.csv"), "--model", str(tmp_path / "broken.json"))
    assert broken.returncode == 2 and "format must be" in broken.stderr

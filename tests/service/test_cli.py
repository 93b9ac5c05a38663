"""``banditkit serve`` and ``banditkit demo`` as a user runs them."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from banditkit.service.export import COLUMNS
from banditkit.service.runner import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_serve_without_tokens_binds_loopback_and_says_so(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BANDITKIT_ADMIN_TOKEN": "", "BANDITKIT_CLIENT_TOKENS": ""}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "banditkit.cli",
            "serve",
            "--store",
            "memory://",
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        assert httpx.get(f"http://127.0.0.1:{port}/docs").status_code == 200
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=15)
    assert "binds 127.0.0.1 only" in stderr and "--host 0.0.0.0 ignored" in stderr
    # Why a container's published port reaches nothing, and the two settings that change it.
    assert "container's published port" in stderr
    assert "set a token and --host 0.0.0.0 (BANDITKIT_HOST)" in stderr


@pytest.mark.slow
def test_demo_serves_users_and_writes_the_log(tmp_path):
    from banditkit.service.demo import ARMS, run_demo

    summaries, regret = run_demo(decisions=200, out=tmp_path, seed=1, concurrency=8, window_s=0.5)
    assert sum(s.pulls for s in summaries) == 200 and [s.arm for s in summaries] == list(ARMS)
    assert 0 <= regret < 200 * 0.14  # never worse than always serving the worst arm
    with (tmp_path / "decisions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 200
    assert all(row["reward"] in ("0.0", "1.0") for row in rows)  # every decision settled
    assert all(0 < float(row["propensity"]) <= 1 for row in rows)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["decisions"] == 200 and (tmp_path / "decisions.parquet").exists()


@pytest.mark.parametrize(
    "url, problem",
    [
        ("redis://127.0.0.1:1/0", "Redis does not answer"),
        ("redis://127.0.0.1:6379/zero", "the path must be a database number"),
        ("redis+cluster://127.0.0.1:6379/0", "not allowed for a cluster"),
        ("redis://127.0.0.1:6379/0?prefx=a", "unknown option 'prefx'"),
    ],
)
def test_serve_with_a_wrong_redis_store_is_a_one_line_error(tmp_path, url, problem):
    done = subprocess.run(
        [sys.executable, "-m", "banditkit.cli", "serve", "--store", url, "--workers", "2", "--port", str(free_port())],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: store URL {url!r}: ")
    assert problem in done.stderr and len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_serve_refuses_workers_without_a_shared_store(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "banditkit.cli", "serve", "--store", "memory://", "--workers", "3"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and done.stderr.strip() == (
        "error: --workers 3 needs a shared store (redis://HOST:PORT/DB, see docs/scale-out.md): "
        "memory:// belongs to one process"
    )


@pytest.mark.slow
def test_serve_workers_share_one_redis(tmp_path, shared_store):
    """``serve --workers 2``: every connection (whichever worker takes it) serves the experiment one worker
    created, claims each reward once, and after a learner pass serves the learned version."""
    from banditkit.service.learner import Learner

    url = shared_store[0]
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BANDITKIT_ADMIN_TOKEN": "",
        "BANDITKIT_CLIENT_TOKENS": "",
        "BANDITKIT_SPOOL_DIR": str(tmp_path / "spool"),
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "banditkit.cli",
            "serve",
            "--store",
            url,
            "--workers",
            "2",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None and time.monotonic() < deadline, "serve --workers 2 did not start"
            try:
                if httpx.get(f"{base}/v1/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        assert httpx.post(f"{base}/v1/experiments", json={"name": "hero", "arms": ["a", "b"]}).status_code == 201
        decisions = [httpx.post(f"{base}/v1/experiments/hero/decisions", json={}).json() for _ in range(20)]
        assert all(d["fallback"] is False and d["policy_version"] == 0 for d in decisions)
        for d in decisions:  # a new connection each time: both workers answer, one claim each
            first = httpx.post(
                f"{base}/v1/experiments/hero/rewards", json={"decision_id": d["decision_id"], "value": 1.0}
            )
            again = httpx.post(
                f"{base}/v1/experiments/hero/rewards", json={"decision_id": d["decision_id"], "value": 0.0}
            )
            assert first.status_code == 200 and again.status_code == 409
        learner = Learner.from_url(url)
        try:
            learner.step()
        finally:
            learner.close()
        deadline = time.monotonic() + 10
        while not all(httpx.get(f"{base}/v1/experiments/hero").json()["policy_version"] == 1 for _ in range(10)):
            assert time.monotonic() < deadline, "a worker did not follow the learned version"
            time.sleep(0.05)
        stats = httpx.get(f"{base}/v1/experiments/hero/stats").json()
        assert stats["rewards"] == 20 and sum(row["pulls"] for row in stats["arms"]) == 20
    finally:
        os.killpg(server.pid, 15)
        server.communicate(timeout=30)

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
    server = subprocess.Popen([sys.executable, "-m", "banditkit.cli", "serve", "--store", "memory://",
                               "--host", "0.0.0.0", "--port", str(port)], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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


@pytest.mark.slow
def test_demo_serves_users_and_writes_the_log(tmp_path):
    from banditkit.service.demo import ARMS, run_demo

    summaries, regret = run_demo(decisions=200, out=tmp_path, seed=1, concurrency=8, window_s=0.5)
    assert sum(s.pulls for s in summaries) == 200 and [s.arm for s in summaries] == list(ARMS)
    assert 0 <= regret < 200 * 0.14                      # never worse than always serving the worst arm
    with (tmp_path / "decisions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 200
    assert all(row["reward"] in ("0.0", "1.0") for row in rows)     # every decision settled
    assert all(0 < float(row["propensity"]) <= 1 for row in rows)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["decisions"] == 200 and (tmp_path / "decisions.parquet").exists()

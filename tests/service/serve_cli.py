"""``banditkit serve`` in a child process, as a user runs it: the real command line, its log read as it comes.

The log is read from a pipe (not a file), so it keeps flowing when a test limits the server's file sizes.
Also the checks of a store that cannot take writes (a full disk, Redis out of memory) over HTTP: 503 naming
the cause, degraded health, and a recovery with one log line for the outage and one for its end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from banditkit.service.runner import free_port

ROOT = Path(__file__).resolve().parents[2]


class Serve:
    """One ``banditkit serve`` process on a free port of 127.0.0.1, with ``options`` on its command line and
    ``env`` (``BANDITKIT_*`` settings) in its environment; no token."""

    def __init__(self, cwd: Path, options: tuple[str, ...], env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cwd = cwd
        self.options = options
        self.env = env
        self.lines: list[str] = []
        self.process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def start(self, timeout_s: float = 60.0) -> Serve:
        command = [sys.executable, "-m", "banditkit.cli", "serve", "--port", str(self.port), "--log-level", "warning"]
        environment = {
            **os.environ,
            "PYTHONPATH": str(ROOT),  # this checkout's banditkit, whatever is installed
            "BANDITKIT_ADMIN_TOKEN": "",
            "BANDITKIT_CLIENT_TOKENS": "",
            **self.env,
        }
        self.process = process = subprocess.Popen(
            [*command, *self.options],
            cwd=self.cwd,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout_s
        while True:
            assert process.poll() is None, f"banditkit serve exited: {self.log()}"
            assert time.monotonic() < deadline, f"banditkit serve did not answer in {timeout_s} s: {self.log()}"
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)

    def _read(self, process: subprocess.Popen) -> None:
        assert process.stderr is not None  # stderr=PIPE
        for line in process.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def log(self) -> str:
        """What the server wrote to its log (stderr) so far."""
        return "\n".join(self.lines)

    def stop(self) -> None:
        """SIGTERM, then wait for the process and the end of its log."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._reader is not None:
            self._reader.join(5)


@pytest.fixture
def banditkit_serve(tmp_path):
    """``banditkit_serve(*options, env=None)``: a started :class:`Serve` in ``tmp_path``; all are stopped at the end."""
    started: list[Serve] = []

    def start(*options: str, env: dict[str, str] | None = None) -> Serve:
        server = Serve(tmp_path, options, env or {})
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


# ---- a store that cannot take writes, seen over HTTP ----------------------------------------------------
def wait_for(condition, what: str, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def assert_refused(response: httpx.Response, cause: str) -> None:
    """503, JSON naming ``cause``, Retry-After."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["retry-after"] == "1"
    assert cause in response.json()["detail"], response.json()


def refused_changes(http: httpx.Client, decision_id: str, snapshot_id: int, cause: str) -> None:
    """Every write but decisions is refused: rewards (single, batch), create, arms, snapshot, rollback."""
    reward = {"decision_id": decision_id, "value": 1.0}
    assert_refused(http.post("/v1/experiments/hero/rewards", json=reward), cause)
    assert_refused(http.post("/v1/experiments/hero/rewards/batch", json={"rewards": [reward]}), cause)
    assert_refused(http.post("/v1/experiments", json={"name": "other", "arms": ["x", "y"]}), cause)
    assert_refused(http.patch("/v1/experiments/hero/arms", json={"add": ["d"]}), cause)
    assert_refused(http.post("/v1/experiments/hero/snapshots"), cause)
    assert_refused(http.post("/v1/experiments/hero/rollback", json={"snapshot_id": snapshot_id}), cause)
    health = http.get("/v1/health").json()
    assert health["status"] == "degraded" and health["store"] == "unavailable" and cause in health["cause"], health
    assert http.get("/v1/experiments/hero").status_code == 200  # reads go on


def recovers(http: httpx.Client, server, decision_id: str, arm_count: int = 3) -> None:
    """After space is freed: the retried reward is applied once, health is ok again, nothing refused was kept,
    and the log has one line for the outage, one for its end, and no traceback."""
    reward = {"decision_id": decision_id, "value": 1.0}
    first = wait_for(
        lambda: (answer := http.post("/v1/experiments/hero/rewards", json=reward)).status_code == 200 and answer,
        "the retried reward to be accepted",
    )
    assert first.json()["applied"] is True
    again = http.post("/v1/experiments/hero/rewards", json=reward)
    assert again.status_code == 200 and again.json() == first.json()
    wait_for(lambda: http.get("/v1/health").json() == {"status": "ok"}, "health to be ok again")
    assert http.get("/v1/experiments/hero/stats").json()["rewards"] == 1
    assert http.get("/v1/experiments/other").status_code == 404
    assert len(http.get("/v1/experiments/hero").json()["arms"]) == arm_count
    log = server.log()
    assert log.count("cannot take writes") == 1, log
    assert log.count("takes writes again") == 1, log
    assert "Traceback" not in log, log


def started(http: httpx.Client) -> tuple[str, int]:
    """An experiment "hero" with a snapshot and a decision waiting for its reward: (decision id, snapshot id)."""
    created = http.post("/v1/experiments", json={"name": "hero", "arms": ["a", "b", "c"], "attribution_window_s": 3600})
    assert created.status_code == 201, created.text
    snapshot = http.post("/v1/experiments/hero/snapshots")
    assert snapshot.status_code == 201, snapshot.text
    decision = http.post("/v1/experiments/hero/decisions", json={"unit": "first"})
    assert decision.status_code == 200 and decision.json()["fallback"] is False
    return decision.json()["decision_id"], snapshot.json()["snapshot_id"]

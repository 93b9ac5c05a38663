"""Real servers for the service tests: uvicorn in a thread, or in a child process that can be killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from banditkit.service import Settings
from banditkit.service.runner import free_port, running

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'service.db'}"


@pytest.fixture
def server(sqlite_url):
    """A server on a fresh SQLite file, in a thread of this process; yields (base_url, settings)."""
    settings = Settings(store=sqlite_url, port=0, sweep_interval_s=0.05, admin_token=None, client_tokens=())
    with running(settings) as base_url:
        yield base_url


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server, timeout=30.0) as client:
        yield client


def create_experiment(client: httpx.Client, name: str = "hero", **fields) -> dict:
    """Create an experiment (arms a, b, c unless given) and check the 201."""
    body = {"name": name, "arms": ["a", "b", "c"], "attribution_window_s": 60.0, **fields}
    response = client.post("/v1/experiments", json=body)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def create():
    return create_experiment


class ServerProcess:
    """``python -m uvicorn`` on the app factory in a child process, configured by environment."""

    def __init__(self, store: str, **env: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "BANDITKIT_STORE": store,
                    "BANDITKIT_ADMIN_TOKEN": "", "BANDITKIT_CLIENT_TOKENS": "", **env}
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0) -> ServerProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "banditkit.service.app:create_app",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.process.stderr.read().decode()}")
            try:
                if httpx.get(f"{self.base_url}/v1/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def kill(self) -> None:
        """kill -9: no shutdown handler runs, nothing is flushed."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """Terminate (SIGTERM: the lifespan closes the store) and wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def server_process():
    """Start child-process servers with ``server_process(store, **env)``; all are stopped at the end."""
    started: list[ServerProcess] = []

    def start(store: str, **env: str) -> ServerProcess:
        process = ServerProcess(store, **env).start()
        started.append(process)
        return process
    yield start
    for process in started:
        process.stop()

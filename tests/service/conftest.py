"""Real servers for the service tests: uvicorn in a thread, or in a child process that can be killed."""

from __future__ import annotations

import httpx
import pytest

from banditkit.service import Settings
from banditkit.service.runner import ServiceProcess, running


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'service.db'}"


@pytest.fixture
def server(sqlite_url):
    """A server on a fresh SQLite file, in a thread of this process; yields (base_url, settings)."""
    settings = Settings(store=sqlite_url, port=0, sweep_interval_s=0.05, admin_token=None, client_tokens=(),
                        tune_interpreter=False)
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


@pytest.fixture
def server_process():
    """Start child-process servers with ``server_process(store, **settings)``; all are stopped at the end."""
    started: list[ServiceProcess] = []

    def start(store: str, **settings) -> ServiceProcess:
        process = ServiceProcess(Settings(store=store, port=0, admin_token=None, client_tokens=(), **settings))
        started.append(process)
        return process.start()
    yield start
    for process in started:
        process.stop()


# Real redis-server processes (single, append-only, a 3-master cluster) and banditkit serve/learn children.
from redis_servers import processes, redis_aof, redis_cluster, shared_store  # noqa: F401

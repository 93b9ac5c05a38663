"""Real servers for the service tests: uvicorn in a thread, or in a child process that can be killed."""

from __future__ import annotations

import time

import httpx
import pytest

# Fixtures, found by pytest by name: a key prefix on the shared Redis (the learner's tests); real
# redis-server processes (single, append-only, a 3-master cluster) and banditkit serve/learn children;
# `banditkit serve` as a user runs it, its log read as it comes.
from redis_loop import redis_prefix  # noqa: F401
from redis_servers import processes, redis_aof, redis_cluster, shared_store  # noqa: F401
from serve_cli import banditkit_serve  # noqa: F401

from banditkit.service import Settings
from banditkit.service.runner import ServiceProcess, running
from banditkit.service.stores.redis_keys import Keys, is_redis_url, parse_url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'service.db'}"


@pytest.fixture(params=["sqlite", "memory", "redis"])
def store_url(request, sqlite_url) -> str:
    """Each HTTP test runs on a fresh SQLite file, the memory store and the real Redis (a key prefix of its own)."""
    if request.param == "sqlite":
        return sqlite_url
    if request.param == "memory":
        return "memory://"
    return request.getfixturevalue("shared_store")[0]


@pytest.fixture
def server(store_url, tmp_path):
    """A server on ``store_url``, in a thread of this process; yields its base URL."""
    settings = Settings(
        store=store_url,
        port=0,
        sweep_interval_s=0.05,
        admin_token=None,
        client_tokens=(),
        tune_interpreter=False,
        model_poll_s=0.01,
        spool_dir=tmp_path / "spool",
    )
    with running(settings) as base_url:
        yield base_url


@pytest.fixture
def learn(store_url, server):
    """``learn(name)``: what a reward teaches is served once this returns. The SQLite and memory stores learn
    as they record a reward (nothing to do); on Redis one learner pass runs (default rewards of closed windows
    included) and the server is waited for until it serves the version the learner stored."""
    if not is_redis_url(store_url):
        yield lambda name="hero": None
        return
    from banditkit.service.learner import Learner

    learner = Learner.from_url(store_url)
    prefix = parse_url(store_url).prefix

    def step(name: str = "hero") -> None:
        learner.step()
        stored = int(learner.client.hget(Keys.of(prefix, name).meta, "version"))
        deadline = time.monotonic() + 10.0
        while httpx.get(f"{server}/v1/experiments/{name}").json()["policy_version"] < stored:
            assert time.monotonic() < deadline, f"the server did not reload version {stored} of {name!r}"
            time.sleep(0.005)

    yield step
    learner.close()


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

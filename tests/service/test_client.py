"""banditkit.client against real served processes: retries across a kill and restart, request_id deduplication,
the circuit breaker's fallback and its later report, rewards flushed at exit, and local decisions that match the
server's bit for bit."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from banditkit.client import (
    AsyncClient,
    CircuitBreaker,
    Client,
    Decision,
    Retry,
    ServiceError,
    Unavailable,
    new_decision_id,
)
from banditkit.service import Settings
from banditkit.service.runner import ServiceProcess

ROOT = Path(__file__).resolve().parents[2]
#: Patient enough to wait out a restart of the server (about a second here), quick between attempts.
PATIENT = Retry(attempts=80, backoff_s=0.02, max_backoff_s=0.2)


def _create(process, name: str = "hero") -> None:
    """Experiment ``name``: Thompson sampling on arms a, b, c; default arm b."""
    body = {"name": name, "arms": ["a", "b", "c"], "guardrails": {"default_arm": "b"}}
    httpx.post(f"{process.base_url}/v1/experiments", json=body).raise_for_status()


@pytest.fixture
def service(server_process, tmp_path):
    """A child-process server on SQLite of its own (it is killed and restarted), with experiment 'hero'."""
    store = f"sqlite:///{tmp_path / 'client.db'}"
    process = server_process(store, tune_interpreter=False, spool_dir=tmp_path / "spool")
    _create(process)
    return process


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One server for the tests that do not stop it: each gets an experiment of its own (:func:`served`)."""
    folder = tmp_path_factory.mktemp("client")
    settings = Settings(
        store=f"sqlite:///{folder / 'shared.db'}",
        port=0,
        admin_token=None,
        client_tokens=(),
        tune_interpreter=False,
        spool_dir=folder / "spool",
    )
    with ServiceProcess(settings) as process:
        yield process


_NAMES = itertools.count()


@pytest.fixture
def served(shared):
    """(process, name): a fresh experiment named like :func:`_create`'s on the shared server."""
    name = f"hero{next(_NAMES)}"
    _create(shared, name)
    return shared, name


def stats(process, name: str = "hero") -> dict:
    return httpx.get(f"{process.base_url}/v1/experiments/{name}/stats").json()


def log_ids(process, name: str = "hero") -> list[str]:
    text = httpx.get(f"{process.base_url}/v1/experiments/{name}/log", params={"format": "csv"}).text
    return [line.split(",", 1)[0] for line in text.splitlines()[1:]]


def restart_later(process, delay_s: float) -> threading.Thread:
    def restart() -> None:
        time.sleep(delay_s)
        process.start()

    thread = threading.Thread(target=restart)
    thread.start()
    return thread


class LosingTransport(httpx.HTTPTransport):
    """Delivers every request but loses the first ``lose`` answers (as a dropped connection would)."""

    def __init__(self, lose: int) -> None:
        super().__init__()
        self.lose = lose

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if self.lose and request.url.path.endswith(("/decisions", "/rewards", "/batch")):
            self.lose -= 1
            response.read()
            raise httpx.ReadError("connection reset after the request was sent")
        return response


def test_a_decision_whose_answer_was_lost_is_logged_once(served):
    service, name = served
    with Client(service.base_url, retry=PATIENT, transport=LosingTransport(lose=6)) as client:
        decisions = [client.decide(name, unit=f"u{i}") for i in range(3)]
        decisions += client.decide_batch(name, [{"unit": f"v{i}"} for i in range(3)])
        assert not any(d.fallback for d in decisions)
        results = [client.reward(d, 1.0) for d in decisions[:3]]  # each reward's first answer is lost too
    assert all(result["applied"] for result in results)
    ids = log_ids(service, name)
    assert sorted(ids) == sorted(d.decision_id for d in decisions)  # six logged, none twice
    assert stats(service, name)["rewards"] == 3


def test_retries_through_a_kill_and_restart_lose_and_double_nothing(service):
    with Client(service.base_url, retry=PATIENT, breaker=CircuitBreaker(failures=100)) as client:
        sender = client.sender(max_size=10, interval_s=60)
        decisions = []
        for i in range(30):
            if i == 10:
                service.kill()  # mid-batch: ten decisions and rewards in, twenty to come
                thread = restart_later(service, 0.3)
            decision = client.decide("hero", unit=f"u{i}")
            decisions.append(decision)
            sender.reward(decision, float(i % 2))
        thread.join()
        assert sender.flush()
    assert not any(d.fallback for d in decisions)
    assert sorted(log_ids(service)) == sorted(d.decision_id for d in decisions)
    counted = stats(service)
    assert counted["decisions"] == 30 and counted["rewards"] == 30
    assert sum(arm["pulls"] for arm in counted["arms"]) == 30  # each reward learned once


def test_the_breaker_serves_the_default_arm_and_reports_it_when_the_service_returns(service):
    breaker = CircuitBreaker(failures=1, reset_s=0.2)
    with Client(service.base_url, retry=Retry(attempts=2, backoff_s=0.01), breaker=breaker) as client:
        served = client.decide("hero", unit="u0")  # learns the default arm
        service.kill()
        down = [client.decide("hero", unit=f"u{i}") for i in range(1, 5)]
        assert all(d.fallback and d.arm == "b" and d.propensity == 1.0 for d in down)
        assert breaker.open and client.unreported == 4
        started = time.perf_counter()
        client.decide("hero", unit="u9")
        assert time.perf_counter() - started < 0.05  # open: answered without trying the service
        service.start()
        time.sleep(0.25)  # the breaker lets a call through again
        back = client.decide("hero", unit="u5")
        assert not back.fallback and client.unreported == 0
        assert client.reward(down[0], 1.0)["applied"]  # a reported fallback joins its reward
    ids = set(log_ids(service))
    assert {served.decision_id, back.decision_id, *(d.decision_id for d in down)} <= ids
    assert len(ids) == 7


def test_a_fallback_needs_the_experiment_to_have_been_reached_once():
    with Client("http://127.0.0.1:9", retry=Retry(attempts=1)) as client, pytest.raises(Unavailable, match="default"):
        client.decide("hero")


def test_rewards_queued_by_a_sender_are_flushed_at_exit(served):
    service, name = served
    with Client(service.base_url) as client:
        ids = [client.decide(name).decision_id for _ in range(5)]
    script = f"""
        from banditkit.client import Client
        sender = Client({service.base_url!r}).sender(max_size=1000, interval_s=3600)
        for decision_id in {ids!r}:
            sender.reward(decision_id, 1.0, experiment={name!r})
        # no close: the interpreter's exit flushes the sender
    """
    subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, check=True, timeout=60)
    assert stats(service, name)["rewards"] == 5


def test_a_reused_request_id_gets_the_first_answer_or_409(service):
    url = f"{service.base_url}/v1/experiments/hero/decisions"
    first = httpx.post(url, json={"unit": "u1", "request_id": "r-1"}).json()
    assert httpx.post(url, json={"unit": "u1", "request_id": "r-1"}).json() == first
    batch = httpx.post(f"{url}/batch", json={"requests": [{"unit": "u1", "request_id": "r-1"}, {"unit": "u2"}]})
    assert batch.json()["decisions"][0] == first
    conflict = httpx.post(url, json={"unit": "u2", "request_id": "r-1"})
    assert conflict.status_code == 409 and "request_id 'r-1'" in conflict.json()["detail"]
    assert len(log_ids(service)) == 2
    service.stop()
    service.start()  # a restart keeps the mapping: it is the decision log
    assert httpx.post(url, json={"unit": "u1", "request_id": "r-1"}).json() == first


def _reward_some(service, name: str, n: int = 20) -> None:
    """Rewards that move Thompson's distribution away from uniform."""
    with Client(service.base_url) as client:
        for i in range(n):
            decision = client.decide(name, unit=f"w{i}")
            client.reward(decision, float(decision.arm == "a"))


def test_local_decisions_are_the_servers_bit_for_bit(served):
    service, name = served
    _reward_some(service, name)
    # The server may serve a distribution up to refresh_s (0.1 s) old while it computes the next in the
    # background; past that it computes the current one first.
    time.sleep(0.3)
    with Client(service.base_url) as client:
        local = client.local(name, ship_interval_s=3600)
        for i in range(60):
            unit = f"u{i}"
            remote = client.decide(name, unit=unit, allowed=["a", "c"] if i % 3 == 0 else None)
            mine = local.decide(unit=unit, allowed=["a", "c"] if i % 3 == 0 else None)
            assert remote.policy_version == mine.policy_version == local.version
            assert (mine.arm, mine.propensity) == (remote.arm, remote.propensity)  # exact, not approximate
        assert local.flush()
    assert stats(service, name)["decisions"] == 20 + 60 + 60


def test_shipped_local_decisions_are_idempotent_and_join_rewards(served):
    service, name = served
    shipped: list[dict] = []
    with Client(service.base_url) as client:
        local = client.local(name, ship_interval_s=3600)
        send = client._json
        client._json = lambda method, path, body=None: (shipped.append(body), send(method, path, body))[1]
        made = [local.decide(unit=f"u{i}") for i in range(5)] + [local.decide() for _ in range(5)]
        assert local.flush() and local.log.pending == 0
        assert local.flush()  # nothing left: nothing sent again
        result = client.reward(made[0], 1.0)
        assert result["applied"] and result["arm"] == made[0].arm
    (body,) = [b for b in shipped if b and "decisions" in b]
    assert [row["decision_id"] for row in body["decisions"]] == [d.decision_id for d in made]
    log = f"{service.base_url}/v1/experiments/{name}/log"
    before = httpx.get(log, params={"format": "csv"}).text
    again = httpx.post(f"{service.base_url}/v1/experiments/{name}/decisions/log", json=body).json()
    assert again == {"logged": 0, "duplicates": 10}  # a retried shipment writes nothing
    assert httpx.get(log, params={"format": "csv"}).text == before
    assert sorted(log_ids(service, name)) == sorted(d.decision_id for d in made)


def test_a_local_decider_refreshes_when_the_version_changes(served):
    service, name = served
    with Client(service.base_url) as client:
        local = client.local(name, ship_interval_s=3600)
        assert local.version == 0 and not local.refresh()  # 304: same version
        decision = client.decide(name)
        client.reward(decision, 1.0)
        assert local.refresh() and local.version == 1
        assert local.decide(unit="u1").policy_version == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"arm": "zzz"}, "arm"),
        ({"propensity": 0.0}, "propensity"),
        ({"propensity": 0.25}, "propensity"),
        ({"policy_version": 5}, "policy_version"),
        ({"decision_id": "not-an-id"}, "decision_id"),
        ({"decision_id": new_decision_id(time.time() - 100)}, "decision_id"),
        ({"time": time.time() - 10 * 86400}, "time"),
        ({"probabilities": {"a": 0.5, "b": 0.5}}, "probabilities"),
        ({"context": [1.0]}, "context"),
    ],
)
def test_bad_client_made_decisions_get_422_naming_the_field(served, change, field):
    service, name = served
    now = time.time()
    row = {
        "decision_id": new_decision_id(now),
        "time": now,
        "arm": "a",
        "propensity": 1 / 3,
        "probabilities": {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3},
        "policy_version": 0,
        **change,
    }
    response = httpx.post(f"{service.base_url}/v1/experiments/{name}/decisions/log", json={"decisions": [row]})
    assert response.status_code == 422, response.text
    location = response.json()["detail"][0]["loc"]
    assert location[-1] == field or location[-1].endswith(f".{field}"), location


def test_a_4xx_is_not_retried_and_names_the_problem(served):
    service, name = served
    with Client(service.base_url, retry=PATIENT) as client:
        started = time.perf_counter()
        with pytest.raises(ServiceError) as raised:
            client.decide(name, allowed=["zzz"])
        assert raised.value.status == 422 and time.perf_counter() - started < 1.0
        with pytest.raises(ValueError, match="experiment"):
            client.reward("unknown-id", 1.0)


def test_the_async_client_retries_falls_back_and_reports_like_the_sync_one(served):
    import asyncio

    from banditkit.client import AsyncClient

    service, name = served

    async def scenario() -> tuple[list, list]:
        breaker = CircuitBreaker(failures=1, reset_s=60)
        async with AsyncClient(service.base_url, retry=Retry(attempts=2, backoff_s=0.01), breaker=breaker) as client:
            served_ = [await client.decide(name, unit=f"u{i}") for i in range(3)]
            served_ += await client.decide_batch(name, [{"unit": "v"}, {"unit": "w"}])
            assert (await client.reward(served_[0], 1.0))["applied"]
            breaker.failure()  # as if the service had just failed: the breaker is open
            down = [await client.decide(name, unit="x")]
            assert down[0].fallback and down[0].arm == "b" and client.unreported == 1
            breaker.success()
            assert await client.report() == 1
            return served_, down

    made, down = asyncio.run(scenario())
    assert sorted(log_ids(service, name)) == sorted(d.decision_id for d in made + down)


def test_contextual_local_decisions_match_the_server(served):
    service, _ = served
    name = "ctx"
    body = {"name": name, "arms": ["a", "b", "c"], "policy": {"name": "lints", "params": {}}, "n_features": 2}
    httpx.post(f"{service.base_url}/v1/experiments", json=body).raise_for_status()
    rng = np.random.default_rng(3)
    with Client(service.base_url) as client:
        for i in range(20):
            x = rng.normal(size=2).tolist()
            client.reward(client.decide(name, unit=f"t{i}", context=x), float(x[0] > 0))
        local = client.local(name, ship_interval_s=3600)
        for i in range(30):
            x = rng.normal(size=2).tolist()
            remote = client.decide(name, unit=f"u{i}", context=x)
            mine = local.decide(unit=f"u{i}", context=x)
            assert remote.policy_version == mine.policy_version
            assert mine.arm == remote.arm
            assert mine.propensity == pytest.approx(remote.propensity, rel=1e-12, abs=1e-15)
        assert local.flush()


def test_request_ids_and_client_made_decisions_are_idempotent_on_every_store(http, create):
    """The dedupe lives where decisions are stored: memory, SQLite and Redis (shared by workers) alike."""
    create(http)
    first = http.post("/v1/experiments/hero/decisions", json={"unit": "u1", "request_id": "q"}).json()
    again = http.post("/v1/experiments/hero/decisions/batch", json={"requests": [{"unit": "u1", "request_id": "q"}]})
    assert again.json()["decisions"] == [first]
    assert http.post("/v1/experiments/hero/decisions", json={"request_id": "q"}).status_code == 409
    now = time.time()
    row = {
        "decision_id": new_decision_id(now),
        "time": now,
        "unit": "u2",
        "arm": "c",
        "propensity": 1 / 3,
        "probabilities": {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3},
        "policy_version": 0,
    }
    path = "/v1/experiments/hero/decisions/log"
    assert http.post(path, json={"decisions": [row, row]}).json() == {"logged": 1, "duplicates": 1}
    assert http.post(path, json={"decisions": [row]}).json() == {"logged": 0, "duplicates": 1}
    reward = http.post("/v1/experiments/hero/rewards", json={"decision_id": row["decision_id"], "value": 1.0})
    assert reward.status_code == 200 and reward.json()["arm"] == "c"
    assert http.get("/v1/experiments/hero/stats").json()["decisions"] == 2


def test_a_local_decider_follows_the_served_version_by_itself(served):
    service, name = served
    with Client(service.base_url) as client:
        local = client.local(name, refresh_s=0.05, ship_interval_s=0.05)
        made = local.decide(unit="u1")
        client.reward(client.decide(name), 1.0)  # version 1 on the server
        deadline = time.monotonic() + 10
        while local.version < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert local.version == 1 and local.decide(unit="u1").policy_version == 1
        assert local.flush()  # waits for a shipment under way in the background
        assert client.reward(made.decision_id, 0.0)["applied"]  # by id: the client knows its experiment
    assert stats(service, name)["decisions"] == 3


# ---- AsyncClient: the same guarantees, awaited ---------------------------------------------------------------
async def _stats(process, name: str = "hero") -> dict:
    return await asyncio.to_thread(stats, process, name)


async def _until(check, timeout_s: float = 10.0) -> None:
    """Wait, on the loop, until ``await check()`` is true."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.01)


def test_the_async_client_retries_through_a_kill_and_restart_losing_and_doubling_nothing(service):
    async def scenario() -> list[Decision]:
        async with AsyncClient(service.base_url, retry=PATIENT, breaker=CircuitBreaker(failures=100)) as client:
            sender = client.sender(max_size=10, interval_s=60)
            decisions = []
            for i in range(30):
                if i == 10:
                    service.kill()  # mid-batch: ten decisions and rewards in, twenty to come
                    thread = restart_later(service, 0.3)
                decision = await client.decide("hero", unit=f"u{i}")
                decisions.append(decision)
                sender.reward(decision, float(i % 2))
            await asyncio.to_thread(thread.join)
            assert await sender.flush()
            return decisions

    decisions = asyncio.run(scenario())
    assert not any(d.fallback for d in decisions)
    assert sorted(log_ids(service)) == sorted(d.decision_id for d in decisions)
    counted = stats(service)
    assert counted["decisions"] == 30 and counted["rewards"] == 30
    assert sum(arm["pulls"] for arm in counted["arms"]) == 30  # each reward learned once


def test_async_rewards_are_sent_by_size_by_interval_and_at_close(served):
    service, name = served

    async def rewards() -> int:
        return (await _stats(service, name))["rewards"]

    async def scenario() -> None:
        async with AsyncClient(service.base_url) as client:
            made = await client.decide_batch(name, [{"unit": f"u{i}"} for i in range(9)])
            by_size = client.sender(max_size=3, interval_s=3600)
            for decision in made[:3]:
                by_size.reward(decision, 1.0)
            await _until(lambda: _equals(rewards, 3))  # sent by its task: three make a batch
            by_interval = client.sender(max_size=1000, interval_s=0.05)
            for decision in made[3:5]:
                by_interval.reward(decision.decision_id, 0.0)  # by id: the client knows its experiment
            await _until(lambda: _equals(rewards, 5))
            at_close = client.sender(max_size=1000, interval_s=3600)
            for decision in made[5:]:
                at_close.reward(decision, 1.0)
            await asyncio.sleep(0.1)
            assert await rewards() == 5 and at_close.batches.pending == 4
        # leaving the block closed the client, which flushed its senders

    asyncio.run(scenario())
    assert stats(service, name)["rewards"] == 9


async def _equals(read, expected) -> bool:
    return await read() == expected


def test_async_local_decisions_are_the_servers_bit_for_bit_and_shipped_at_close(served):
    service, name = served
    _reward_some(service, name)
    time.sleep(0.3)  # past the server's refresh_s: it serves the current distribution

    async def scenario() -> list[Decision]:
        async with AsyncClient(service.base_url) as client:
            local = await client.local(name, ship_interval_s=3600)
            mine = []
            for i in range(60):
                allowed = ["a", "c"] if i % 3 == 0 else None
                remote = await client.decide(name, unit=f"u{i}", allowed=allowed)
                made = local.decide(unit=f"u{i}", allowed=allowed)
                assert remote.policy_version == made.policy_version == local.version
                assert (made.arm, made.propensity) == (remote.arm, remote.propensity)  # exact, not approximate
                mine.append(made)
            assert local.log.pending == 60
            return mine
        # leaving the block shipped the local decisions

    mine = asyncio.run(scenario())
    assert stats(service, name)["decisions"] == 20 + 60 + 60
    assert {d.decision_id for d in mine} <= set(log_ids(service, name))


def test_an_async_local_decider_refreshes_by_etag_and_by_itself(served):
    service, name = served

    async def scenario() -> None:
        async with AsyncClient(service.base_url) as client:
            local = await client.local(name, refresh_s=3600, ship_interval_s=3600)
            assert local.version == 0 and not await local.refresh()  # 304: same version
            await client.reward(await client.decide(name), 1.0)
            assert await local.refresh() and local.version == 1
            assert local.decide(unit="u1").policy_version == 1
            following = await client.local(name, refresh_s=0.05, ship_interval_s=0.05)
            made = following.decide(unit="u2")
            await client.reward(await client.decide(name), 0.0)  # version 2 on the server
            await _until(lambda: _is(following, 2))  # its task pulled the new model, and shipped
            assert following.decide(unit="u2").policy_version == 2
            assert (await client.reward(made.decision_id, 1.0))["applied"]  # shipped: its reward joins

    asyncio.run(scenario())
    assert stats(service, name)["decisions"] == 5


async def _is(local, version: int) -> bool:
    return local.version == version and local.log.pending == 0


def test_the_async_breaker_serves_the_default_arm_and_reports_it_when_the_service_returns(service):
    async def scenario() -> tuple[Decision, Decision, list[Decision]]:
        breaker = CircuitBreaker(failures=1, reset_s=0.2)
        async with AsyncClient(service.base_url, retry=Retry(attempts=2, backoff_s=0.01), breaker=breaker) as client:
            served = await client.decide("hero", unit="u0")  # learns the default arm
            service.kill()
            down = [await client.decide("hero", unit=f"u{i}") for i in range(1, 5)]
            assert all(d.fallback and d.arm == "b" and d.propensity == 1.0 for d in down)
            assert breaker.open and client.unreported == 4
            started = time.perf_counter()
            await client.decide("hero", unit="u9")
            assert time.perf_counter() - started < 0.05  # open: answered without trying the service
            await asyncio.to_thread(service.start)
            await asyncio.sleep(0.25)  # the breaker lets a call through again
            back = await client.decide("hero", unit="u5")
            assert not back.fallback and client.unreported == 0  # its success reported the fallbacks
            assert (await client.reward(down[0], 1.0))["applied"]  # a reported fallback joins its reward
            return served, back, down

    served, back, down = asyncio.run(scenario())
    ids = set(log_ids(service))
    assert {served.decision_id, back.decision_id, *(d.decision_id for d in down)} <= ids
    assert len(ids) == 7

"""Real processes for the Redis tests: redis-server (single or a 3-master cluster) and the banditkit CLI.

Everything here is started as a child process on a free port in a temporary
directory and stopped by its PID, so a test can kill -9 exactly the process it
means to (a Redis with its append-only file, a serving worker, a learner) and
start it again. Nothing touches the shared Redis on port 6379.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis

from banditkit.service.experiment import build_bandit
from banditkit.service.learner import Learner
from banditkit.service.model import split
from banditkit.service.schemas import MAX_BATCH, ExperimentCreate
from banditkit.service.stores.base import DecisionRecord, RewardRecord, decision_from_row
from banditkit.service.stores.redis_keys import LEARNERS, Keys, read_meta, reward_from_json, unpack_state

ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINT = "sudo apt-get install -y redis-server redis-tools"


def redis_binary(name: str) -> str:
    """Path of ``redis-server`` or ``redis-cli``; a missing binary fails the test (never skips it)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed, so the Redis fault tests cannot run; install it with: {INSTALL_HINT}",
            pytrace=False,
        )
    return path


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(bus_offset: int | None = None) -> int:
    """A free port on 127.0.0.1; with ``bus_offset``, ``port + bus_offset`` is free too (a cluster's bus port).

    Ports are drawn below the ephemeral range so a cluster bus port (port + 10000) stays under 65536
    and outgoing connections of other processes do not take it between the draw and the start.
    """
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(20000, 30000)
        if _bindable(port) and (bus_offset is None or _bindable(port + bus_offset)):
            return port
    raise RuntimeError("no free port (with its bus port) found in 20000-30000")


def _wait_exit(process: subprocess.Popen, timeout_s: float) -> None:
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


class RedisServer:
    """One redis-server on a free port, its files in ``directory``.

    ``aof=True``: ``appendonly yes`` with ``appendfsync always``, so every acknowledged write is on disk
    and a kill -9 loses nothing; ``aof=False``: no persistence at all. :meth:`restart` reuses the port
    and the directory, so the append-only file is replayed.
    """

    def __init__(
        self, directory: Path, *, aof: bool = True, port: int | None = None, extra: tuple[str, ...] = ()
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.aof = aof
        self.extra = extra
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def arguments(self) -> list[str]:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.aof else ["--appendonly", "no"]
        return [
            redis_binary("redis-server"),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--logfile",
            "redis.log",
            "--daemonize",
            "no",
            *persistence,
            *self.extra,
        ]

    def start(self, timeout_s: float = 20.0) -> RedisServer:
        """Start and wait until it answers PING (and has finished loading its append-only file)."""
        self.process = subprocess.Popen(
            self.arguments(),
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # SIGXFSZ stays ignored as in this process: a file-size limit then fails the server's writes
            # (EFBIG) rather than killing it.
            restore_signals=False,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server on port {self.port} exited with {self.process.returncode}: {self.log()[-2000:]}"
                )
            try:
                with self.client(socket_timeout=1.0) as client:
                    if client.ping():
                        return self
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(
            f"redis-server on port {self.port} did not answer PING in {timeout_s} s: {self.log()[-2000:]}"
        )

    def client(self, **options) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, **options)

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self) -> None:
        """kill -9 by PID: nothing is flushed beyond what ``appendfsync`` already wrote."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def restart(self, timeout_s: float = 20.0) -> RedisServer:
        """Kill (if running) and start again on the same port and directory."""
        self.kill()
        return self.start(timeout_s)

    def stop(self) -> None:
        """SIGTERM by PID, then wait (kill -9 after 10 s)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            _wait_exit(self.process, 10.0)


class RedisCluster3:
    """Three cluster-enabled masters on free ports, slots spread by ``redis-cli --cluster create``."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.ports = [free_port(bus_offset=10000) for _ in range(3)]
        while len(set(self.ports)) < 3 or any(a + 10000 == b for a in self.ports for b in self.ports):
            self.ports = [free_port(bus_offset=10000) for _ in range(3)]
        self.nodes = [
            RedisServer(
                self.directory / f"node-{port}",
                aof=False,
                port=port,
                extra=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ),
            )
            for port in self.ports
        ]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def start(self, timeout_s: float = 30.0) -> RedisCluster3:
        """Start the masters, create the cluster and wait until every node reports ``cluster_state:ok``."""
        for node in self.nodes:
            node.start()
        created = subprocess.run(
            [
                redis_binary("redis-cli"),
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if created.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout}{created.stderr}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self._ready(node) for node in self.nodes):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"cluster on ports {self.ports} not ok after {timeout_s} s")

    @staticmethod
    def _ready(node: RedisServer) -> bool:
        with node.client() as client:
            info = client.execute_command("CLUSTER", "INFO")
        if isinstance(info, bytes):
            info = info.decode()
        return "cluster_state:ok" in info and "cluster_slots_ok:16384" in info and "cluster_known_nodes:3" in info

    def client(self, **options) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.ports[0], decode_responses=True, **options)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class BanditkitProcess:
    """``python -m banditkit.cli ARGS`` from this worktree as a child process, in its own process group.

    Output goes to ``log_path`` (read it with :meth:`output` when something fails). :meth:`kill` is
    kill -9 on the process group whose id is the child's PID, so a ``serve --workers N`` master dies
    together with its worker processes, as when a machine loses power.
    """

    def __init__(self, args: Sequence[str | float], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.args = [str(arg) for arg in args]
        self.log_path = Path(log_path)
        self.env = env or {}
        self.process: subprocess.Popen | None = None

    def start(self) -> BanditkitProcess:
        environment = {key: value for key, value in os.environ.items() if not key.startswith("BANDITKIT_")}
        environment.update({"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **self.env})
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "banditkit.cli", *self.args],
                cwd=ROOT,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def child(self) -> subprocess.Popen:
        """The child process; a RuntimeError naming the command before :meth:`start`."""
        if self.process is None:
            raise RuntimeError(f"banditkit {' '.join(self.args)} was not started")
        return self.process

    @property
    def pid(self) -> int:
        return self.child().pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self, timeout_s: float) -> int:
        """Wait for the exit code; a process still running after ``timeout_s`` is killed and the test fails."""
        try:
            return self.child().wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"banditkit {' '.join(self.args)} still running after {timeout_s} s:\n{self.output()[-3000:]}")

    def kill(self) -> None:
        """kill -9 the process group (the child and anything it forked)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the process group, wait, then kill -9 whatever is left."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout_s)
        self.kill()


class ServeProcess(BanditkitProcess):
    """``banditkit serve --store URL --workers N --port P``, waited for until ``/v1/health`` answers 200."""

    def __init__(
        self,
        store: str,
        log_path: Path,
        *,
        workers: int = 1,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            ["serve", "--store", store, "--workers", workers, "--port", self.port, "--log-level", "warning"],
            log_path,
            env,
        )

    def worker_pids(self) -> list[int]:
        """PIDs of the worker processes a ``--workers N`` server spawned (not its resource tracker)."""
        pids = []
        for children in Path(f"/proc/{self.pid}/task").glob("*/children"):
            for pid in children.read_text().split():
                try:
                    command = Path(f"/proc/{pid}/cmdline").read_bytes()
                except FileNotFoundError:
                    continue
                if b"spawn_main" in command:
                    pids.append(int(pid))
        return sorted(pids)

    def connections(self, pid: int) -> int:
        """Client connections to the server's port that worker ``pid`` holds open (from /proc)."""
        inodes = set()
        for table in ("tcp", "tcp6"):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == self.port and fields[3] == "01":  # ESTABLISHED
                    inodes.add(fields[9])
        owned = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except FileNotFoundError:
                continue
            owned += target.startswith("socket:[") and target[8:-1] in inodes
        return owned

    def start(self, timeout_s: float = 60.0) -> ServeProcess:
        super().start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"banditkit serve exited with {self.child().returncode}:\n{self.output()[-3000:]}")
            try:
                if httpx.get(f"{self.base_url}/v1/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"banditkit serve did not answer /v1/health on port {self.port}:\n{self.output()[-3000:]}")


class LearnProcess(BanditkitProcess):
    """``banditkit learn --store URL [--every S] [--once]``."""

    def __init__(
        self,
        store: str,
        log_path: Path,
        *,
        every: float | None = None,
        once: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        args: list[str | float] = ["learn", "--store", store]
        if every is not None:
            args += ["--every", every]
        if once:
            args.append("--once")
        super().__init__(args, log_path, env)


def learn_once(store: str, log_path: Path, timeout_s: float = 60.0) -> str:
    """Run ``banditkit learn --store URL --once`` to completion; a non-zero exit fails with its output."""
    process = LearnProcess(store, log_path, once=True).start()
    code = process.wait(timeout_s)
    assert code == 0, f"banditkit learn --once exited with {code}:\n{process.output()[-3000:]}"
    return process.output()


@pytest.fixture
def processes():
    """Register started processes with ``processes(p)``; every one is stopped (by PID) at the end."""
    started: list = []

    def keep(process):
        started.append(process)
        return process

    yield keep
    for process in reversed(started):
        process.stop()


@pytest.fixture
def redis_aof(tmp_path, processes) -> RedisServer:
    """A fresh redis-server with ``appendonly yes`` and ``appendfsync always``."""
    return processes(RedisServer(tmp_path / "redis", aof=True)).start()


@pytest.fixture
def redis_cluster(tmp_path, processes) -> RedisCluster3:
    """A fresh three-master Redis Cluster."""
    return processes(RedisCluster3(tmp_path / "cluster")).start()


# ---- load: client threads that keep exactly what the service acknowledged --------------------------
def unique_prefix() -> str:
    """A key prefix of its own for one test (the store URL's ``?prefix=``)."""
    return f"t{uuid.uuid4().hex[:12]}"


class Acknowledged:
    """What the service acknowledged: each decision's answer and each decision's one reward value.

    A second 200 for a decision must carry the value of the first (a retry), never another one: a
    reward is accepted at most once, whichever worker or thread sent it.
    """

    def __init__(self) -> None:
        self.decisions: dict[str, dict] = {}
        self.rewards: dict[str, float] = {}
        self.refused_conflicts = 0
        self.confirmed_retries = 0
        self._lock = threading.Lock()

    def decided(self, answers: list[dict]) -> None:
        with self._lock:
            for answer in answers:
                assert answer["decision_id"] not in self.decisions, f"decision id served twice: {answer}"
                self.decisions[answer["decision_id"]] = answer

    def rewarded(self, decision_id: str, value: float) -> None:
        with self._lock:
            first = self.rewards.setdefault(decision_id, value)
            assert first == value, f"decision {decision_id}: reward {first} acknowledged, then {value}"

    def count(self, conflicts: int = 0, retries: int = 0) -> None:
        with self._lock:
            self.refused_conflicts += conflicts
            self.confirmed_retries += retries


@dataclass
class Load:
    """Client threads deciding and rewarding against ``urls`` (several workers), until stopped or done.

    Each thread asks for decisions in batches and rewards each of them with 0 or 1; the same batch also
    carries a retry of an earlier reward (same value: 200 with the first answer), a conflicting retry
    (the other value: 409), and rewards for decisions of other threads sent with a random value, racing
    their owner's reward through another worker (exactly one value wins). A transport error (worker
    killed) sends the same rewards again to the next worker; a 503 (Redis down) or a 404 for a fallback
    decision not shipped yet sends them again later. So when the load ends every reward sent has been
    acknowledged, and :class:`Acknowledged` holds the truth the store must match.
    """

    urls: list[str]
    experiment: str
    threads: int = 8
    rewards_per_thread: int = 2000
    batch: int = 50
    seed: int = 0
    deadline_s: float = 60.0
    acknowledged: Acknowledged = field(default_factory=Acknowledged)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[BaseException] = field(default_factory=list)
    transport_errors: int = 0
    unavailable: int = 0
    fallbacks: int = 0

    def __post_init__(self) -> None:
        self._contested: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self.resolved: list[int] = []  # per thread: own decisions whose reward was answered

    def start(self) -> Load:
        self._deadline = time.monotonic() + self.deadline_s
        self.resolved = [0] * self.threads
        for index in range(self.threads):
            thread = threading.Thread(target=self._guarded, args=(index,), name=f"load-{index}", daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def rewards_acknowledged(self) -> int:
        return len(self.acknowledged.rewards)

    def join(self) -> Acknowledged:
        """Wait for every thread; a thread's failure (a wrong answer) fails the caller with it."""
        for thread in self._workers:
            thread.join(max(1.0, self._deadline - time.monotonic() + 30.0))
            assert not thread.is_alive(), f"{thread.name} still running at its deadline"
        if self.errors:
            raise self.errors[0]
        return self.acknowledged

    def run(self) -> Acknowledged:
        return self.start().join()

    def _guarded(self, index: int) -> None:
        try:
            self._client(index)
        except BaseException as error:  # reported by join()
            self.errors.append(error)
            self.stop.set()

    def _post(self, http: httpx.Client, route: list[int], path: str, body: dict) -> httpx.Response | None:
        try:
            return http.post(f"{self.urls[route[0]]}/v1/experiments/{self.experiment}/{path}", json=body)
        except httpx.TransportError:
            self.transport_errors += 1
            route[0] = (route[0] + 1) % len(self.urls)
            return None

    def _client(self, index: int) -> None:
        rng = np.random.default_rng([self.seed, index])
        route = [index % len(self.urls)]
        mine: list[tuple[str, float]] = []  # own decisions and the value sent for each
        waiting: list[tuple[str, float, str]] = []  # (decision id, value, kind) not answered yet
        with httpx.Client(timeout=15.0) as http:
            while time.monotonic() < self._deadline:
                if self.resolved[index] >= self.rewards_per_thread or self.stop.is_set():
                    if not waiting:
                        return
                else:
                    response = self._post(
                        http,
                        route,
                        "decisions/batch",
                        {"requests": [{"unit": f"u{index}-{len(mine) + i}"} for i in range(self.batch)]},
                    )
                    if response is None:
                        continue
                    assert response.status_code == 200, response.text
                    answers = response.json()["decisions"]
                    self.acknowledged.decided(answers)
                    self.fallbacks += sum(answer["fallback"] for answer in answers)
                    values = rng.integers(0, 2, len(answers)).astype(float)
                    fresh = [
                        (answer["decision_id"], float(value)) for answer, value in zip(answers, values, strict=True)
                    ]
                    for decision_id, _ in fresh[:3]:
                        self._contested.put(decision_id)
                    if mine:
                        for position in rng.integers(0, len(mine), 2):
                            decision_id, value = mine[position]
                            waiting.append((decision_id, value, "retry"))
                            waiting.append((decision_id, 1.0 - value, "conflict"))
                    mine += fresh
                    waiting += [(decision_id, value, "own") for decision_id, value in fresh]
                    for _ in range(3):
                        try:
                            waiting.append((self._contested.get_nowait(), float(rng.integers(0, 2)), "race"))
                        except queue.Empty:
                            break
                waiting = self._reward(http, route, waiting, index)
        raise AssertionError(
            f"load thread {index}: deadline of {self.deadline_s} s passed with {len(waiting)} "
            f"rewards never answered (first: {waiting[:3]}) and {self.resolved[index]} of "
            f"{self.rewards_per_thread} own rewards answered"
        )

    def _reward(
        self, http: httpx.Client, route: list[int], items: list[tuple[str, float, str]], index: int
    ) -> list[tuple[str, float, str]]:
        """Send ``items`` once; returns those to send again (no answer, Redis down, decision not shipped)."""
        if not items:
            return items
        items, later = items[:MAX_BATCH], items[MAX_BATCH:]
        response = self._post(
            http, route, "rewards/batch", {"rewards": [{"decision_id": d, "value": v} for d, v, _ in items]}
        )
        if response is None:
            return items + later
        if response.status_code == 503:
            self.unavailable += 1
            time.sleep(0.05)
            return items + later
        assert response.status_code == 200, response.text
        again = []
        conflicts = retries = 0
        for (decision_id, value, kind), result in zip(items, response.json()["results"], strict=True):
            assert result["decision_id"] == decision_id
            status = result["status"]
            if status == 200:
                assert result["value"] == value, (kind, value, result)  # 200 only for the value accepted
                self.acknowledged.rewarded(decision_id, value)
                if kind == "own":
                    self.resolved[index] += 1
                retries += kind == "retry"
            elif status == 409:  # another value came first (a conflict, or a race lost)
                conflicts += 1
                if kind == "own":
                    self.resolved[index] += 1
            elif status in (404, 503) and (status == 503 or self.acknowledged.decisions[decision_id]["fallback"]):
                again.append((decision_id, value, kind))  # Redis down, or a spooled decision not shipped yet
            else:
                raise AssertionError(f"reward {kind} {decision_id}={value}: {result}")
        self.acknowledged.count(conflicts, retries)
        if again:
            time.sleep(0.02)
        return again + later


# ---- reading the store back ------------------------------------------------------------------------
def meta(client, prefix: str, experiment: str) -> dict[str, Any]:
    """The experiment's meta hash (model, state, version, reward offset): ``str`` values, the packed state ``bytes``."""
    raw = read_meta(client, Keys.of(prefix, experiment).meta)
    return {key.decode(): value if key == b"state" else value.decode() for key, value in raw.items()}


def stored_rewards(client, prefix: str, experiment: str) -> dict[str, RewardRecord]:
    """Every accepted reward (the rewards hash): decision id -> record."""
    return {
        decision_id: reward_from_json(text)
        for decision_id, text in client.hgetall(Keys.of(prefix, experiment).rewards).items()
    }


def stored_decisions(client, prefix: str, experiment: str) -> dict[str, DecisionRecord]:
    """Every logged decision (the decision stream); a decision logged twice fails."""
    found: dict[str, DecisionRecord] = {}
    for _, fields in client.xrange(Keys.of(prefix, experiment).decisions):
        record = decision_from_row(json.loads(fields["row"]))
        assert record.decision_id not in found, f"decision {record.decision_id} logged twice"
        found[record.decision_id] = record
    return found


def reward_stream_ids(client, prefix: str, experiment: str) -> list[str]:
    """The ids of the reward stream's entries (one per accepted reward)."""
    return [entry_id for entry_id, _ in client.xrange(Keys.of(prefix, experiment).reward_stream)]


def reference_arrays(spec: dict, arms: list[str], values: list[float]) -> tuple[dict, dict[str, np.ndarray]]:
    """The model and arrays :func:`~banditkit.service.model.split` gives after ``Bandit.update_many``."""
    bandit = build_bandit(ExperimentCreate.model_validate(spec))
    if arms:
        bandit.update_many(arms, np.asarray(values, dtype=np.float64))
    return split(bandit)


def assert_model_is_reference(
    client, prefix: str, spec: dict, rewards: dict[str, float], decisions: dict[str, str]
) -> dict[str, Any]:
    """The stored state equals, bit for bit, the reference Bandit updated with ``rewards`` (decision id ->
    value) on the arms of ``decisions`` (decision id -> arm); returns the meta hash."""
    stored = meta(client, prefix, spec["name"])
    ids = sorted(rewards)
    model, expected = reference_arrays(spec, [decisions[i] for i in ids], [rewards[i] for i in ids])
    state = unpack_state(stored["state"])
    assert sorted(state) == sorted(expected), (sorted(state), sorted(expected))
    for key, value in expected.items():
        assert state[key].dtype == value.dtype and state[key].shape == value.shape, key
        assert np.array_equal(state[key], value), (key, state[key], value)
    assert json.loads(stored["model"]) == json.loads(json.dumps(model))
    return stored


def create_experiment(base_url: str, spec: dict) -> dict:
    """Create ``spec`` and check the 201; a 503 (the store is just back, not seen yet) is retried after 0.1 s."""
    deadline = time.monotonic() + 10
    while True:
        response = httpx.post(f"{base_url}/v1/experiments", json=spec, timeout=30.0)
        if response.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert response.status_code == 201, response.text
    return response.json()


@contextlib.contextmanager
def serving_on_shared_redis(directory: Path, *, workers: int = 2, env: dict[str, str] | None = None):
    """``banditkit serve --workers N`` on a key prefix of its own on the shared Redis; yields
    (store URL, prefix, client, server). For module fixtures: one server start serves several rounds,
    each on an experiment of its own."""
    prefix = unique_prefix()
    store = f"redis://127.0.0.1:6379/0?prefix={prefix}"
    client = redis.Redis(host="127.0.0.1", port=6379, decode_responses=True)
    serve = ServeProcess(store, Path(directory) / "serve.log", workers=workers, env=env)
    try:
        yield store, prefix, client, serve.start()
    finally:
        serve.stop()
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
        client.close()


@pytest.fixture
def shared_store():
    """A unique key prefix on the shared Redis (127.0.0.1:6379, db 0): yields (store URL, prefix, client);
    the prefix's keys are deleted at the end (never a FLUSHDB there)."""
    prefix = unique_prefix()
    client = redis.Redis(host="127.0.0.1", port=6379, decode_responses=True)
    yield f"redis://127.0.0.1:6379/0?prefix={prefix}", prefix, client
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        client.delete(key)
    client.close()


def assert_log_matches(client, prefix: str, experiment: str, acknowledged: Acknowledged) -> None:
    """Every acknowledged decision is logged as answered; the rewards kept are exactly those acknowledged,
    each once in the reward stream; the counters agree with both."""
    logged = stored_decisions(client, prefix, experiment)
    for decision_id, answer in acknowledged.decisions.items():
        assert decision_id in logged, f"acknowledged decision {decision_id} not in the decision stream"
        record = logged[decision_id]
        assert (record.arm, record.propensity, record.policy_version, record.fallback) == (
            answer["arm"],
            answer["propensity"],
            answer["policy_version"],
            answer["fallback"],
        ), (record, answer)
    rewards = stored_rewards(client, prefix, experiment)
    assert {i: r.value for i, r in rewards.items()} == acknowledged.rewards
    for decision_id, reward in rewards.items():
        assert reward.arm == logged[decision_id].arm, (reward, logged[decision_id])
    streamed = [
        json.loads(fields["reward"])[0] for _, fields in client.xrange(Keys.of(prefix, experiment).reward_stream)
    ]
    assert len(streamed) == len(set(streamed)) and set(streamed) == set(rewards), "reward stream != rewards kept"
    counts = client.hgetall(Keys.of(prefix, experiment).counts)
    assert int(counts["rewards"]) == len(rewards) and int(counts["decisions"]) == len(logged), counts


def assert_drained(client, prefix: str, experiment: str) -> dict[str, Any]:
    """The learners' group has nothing pending and the model holds every reward of the stream."""
    keys = Keys.of(prefix, experiment)
    stored = meta(client, prefix, experiment)
    last = client.xrevrange(keys.reward_stream, count=1)
    if last:
        assert stored["reward_offset"] == last[0][0], (stored["reward_offset"], last[0][0])
    assert client.xpending(keys.reward_stream, LEARNERS)["pending"] == 0
    return stored


def drain(store: str) -> None:
    """Learn everything due now, in this process, with the learner ``banditkit learn --once`` runs (no
    interpreter start-up: the subprocess path is tested by :func:`learn_once`)."""
    learner = Learner.from_url(store)
    try:
        learner.run(once=True)
    finally:
        learner.close()
        learner.client.close()


def check_against_acknowledged(client, prefix: str, spec: dict, acknowledged: Acknowledged) -> dict[str, Any]:
    """After a drain: the log holds what was acknowledged, and the model is the reference over it."""
    assert_log_matches(client, prefix, spec["name"], acknowledged)
    arms = {decision_id: answer["arm"] for decision_id, answer in acknowledged.decisions.items()}
    assert_model_is_reference(client, prefix, spec, acknowledged.rewards, arms)
    return assert_drained(client, prefix, spec["name"])


def wait_for(condition, timeout_s: float, what: str) -> None:
    """Poll ``condition`` every 50 ms; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.05)

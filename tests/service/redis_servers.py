"""Real processes for the Redis tests: redis-server (single or a 3-master cluster) and the banditkit CLI.

Everything here is started as a child process on a free port in a temporary
directory and stopped by its PID, so a test can kill -9 exactly the process it
means to (a Redis with its append-only file, a serving worker, a learner) and
start it again. Nothing touches the shared Redis on port 6379.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINT = "sudo apt-get install -y redis-server redis-tools"


def redis_binary(name: str) -> str:
    """Path of ``redis-server`` or ``redis-cli``; a missing binary fails the test (never skips it)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed, so the Redis fault tests cannot run; install it with: {INSTALL_HINT}",
                    pytrace=False)
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
    raise RuntimeError("no free port (with its bus port) found in 20000-40000")


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

    def __init__(self, directory: Path, *, aof: bool = True, port: int | None = None,
                 extra: tuple[str, ...] = ()) -> None:
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
        return [redis_binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                str(self.directory), "--save", "", "--logfile", "redis.log", "--daemonize", "no",
                *persistence, *self.extra]

    def start(self, timeout_s: float = 20.0) -> RedisServer:
        """Start and wait until it answers PING (and has finished loading its append-only file)."""
        self.process = subprocess.Popen(self.arguments(), cwd=self.directory, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited with {self.process.returncode}: "
                                   f"{self.log()[-2000:]}")
            try:
                with self.client(socket_timeout=1.0) as client:
                    if client.ping():
                        return self
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING in {timeout_s} s: "
                           f"{self.log()[-2000:]}")

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
        self.nodes = [RedisServer(self.directory / f"node-{port}", aof=False, port=port,
                                  extra=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                         "--cluster-node-timeout", "5000"))
                      for port in self.ports]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def start(self, timeout_s: float = 30.0) -> RedisCluster3:
        """Start the masters, create the cluster and wait until every node reports ``cluster_state:ok``."""
        for node in self.nodes:
            node.start()
        created = subprocess.run(
            [redis_binary("redis-cli"), "--cluster", "create", *(f"127.0.0.1:{port}" for port in self.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=timeout_s)
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

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.args = [str(arg) for arg in args]
        self.log_path = Path(log_path)
        self.env = env or {}
        self.process: subprocess.Popen | None = None

    def start(self) -> BanditkitProcess:
        environment = {key: value for key, value in os.environ.items() if not key.startswith("BANDITKIT_")}
        environment.update({"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **self.env})
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "banditkit.cli", *self.args], cwd=ROOT,
                                            env=environment, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self, timeout_s: float) -> int:
        """Wait for the exit code; a process still running after ``timeout_s`` is killed and the test fails."""
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"banditkit {' '.join(self.args)} still running after {timeout_s} s:\n{self.output()[-3000:]}")

    def kill(self) -> None:
        """kill -9 the process group (the child and anything it forked)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the process group, wait, then kill -9 whatever is left."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


class ServeProcess(BanditkitProcess):
    """``banditkit serve --store URL --workers N --port P``, waited for until ``/v1/health`` answers 200."""

    def __init__(self, store: str, log_path: Path, *, workers: int = 1, port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        super().__init__(["serve", "--store", store, "--workers", workers, "--port", self.port, "--log-level",
                          "warning"], log_path, env)

    def start(self, timeout_s: float = 60.0) -> ServeProcess:
        super().start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"banditkit serve exited with {self.process.returncode}:\n{self.output()[-3000:]}")
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

    def __init__(self, store: str, log_path: Path, *, every: float | None = None, once: bool = False,
                 env: dict[str, str] | None = None) -> None:
        args = ["learn", "--store", store]
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

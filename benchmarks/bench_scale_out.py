"""The learning loop on Redis: serving workers against SQLite, the learner alone, and Redis memory.

One table per part, on this machine (2 cores shared by the server, Redis and the load generator):

1. POST decisions, wrk with 32 connections, Thompson sampling K=10, for SQLite with one worker and
   Redis with one and two workers, after 2 s of the same load unmeasured (warm-up): decisions/s,
   p50/p99, and CPU per decision of the serving workers and of Redis (from /proc; summed for "total"),
   and the same server's CPU per no-op request (GET /v1/health) under the same load.
2. The learner alone: rewards applied per second from a pre-filled reward stream, and reward-to-model
   latency (p50/p99) while rewards arrive at a steady rate.
3. Redis memory per pending decision: ``INFO memory`` before and after N pending decisions.

    python benchmarks/bench_scale_out.py [--seconds 10] [--repeats 1] [--redis redis://127.0.0.1:6379/0]
                                         [--rewards 200000] [--rate 2000] [--pending 100000]
    python benchmarks/bench_scale_out.py --floor [--floor-modes bare,redis,service] [--seconds 10] [--repeats 4]

``--floor`` measures only the floor under the serving table's two-worker ratio: CPU per request with one and
two workers of a bare ASGI app served exactly as ``banditkit serve --workers N`` serves (the same uvicorn
config class, protocol, loop, supervisor and interpreter tuning), under the same load, answering a fixed JSON
body at once (``bare``), and after one Redis round trip per loop turn made the way the Redis store makes its
writes (the turn's requests joined by ``Coalescer``, a pipelined ``EVALSHA`` from a writer thread with
synchronous redis-py, the answer handed back through ``settled``) (``redis``), or from the event loop through
``redis.asyncio`` (``redis-async``); ``service`` is ``banditkit serve`` itself on POST decisions, in the same
rounds. Rounds interleave the configurations; each row prints its median and range, and each app the
two-worker ratio of every round with the load average.

Every run uses its own key prefix and deletes its keys at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_service import WRK_SCRIPT, process_cpu_seconds, run_asyncio, run_wrk  # noqa: E402

from banditkit.service.runner import free_port  # noqa: E402

EXPERIMENT = {"name": "bench", "arms": [f"arm{i}" for i in range(10)], "policy": {"name": "thompson", "params": {}}}


def tree_pids(pid: int) -> list[int]:
    """``pid`` and every process below it (uvicorn's supervisor and its workers)."""
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").iterdir():
            children = (task / "children").read_text().split()
            queue.extend(int(child) for child in children)
    return pids


def tree_cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):
            total += process_cpu_seconds(pid)
    return total


class Server:
    """``banditkit serve`` in a child process (several workers possible), stopped by PID."""

    def __init__(self, store: str, workers: int) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "banditkit.cli",
                "serve",
                "--store",
                store,
                "--workers",
                str(workers),
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait(workers, "/v1/health")

    def _wait(self, workers: int, path: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited: {self.process.stderr.read().decode()}")
            try:
                if httpx.get(f"{self.base_url}{path}", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        time.sleep(0.5 * workers)  # every worker up, not only the first to answer
        self.pids = tree_pids(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


FLOOR_ANSWER = (
    b'{"decision_id":"0123456789abcdef0123456789abcdef","arm":"arm3","propensity":0.1,"policy_version":1,'
    b'"fallback":false}'
)
FLOOR_SCRIPT = "return redis.call('INCR', KEYS[1])"


def create_floor_app():
    """The floor's ASGI app: ``$FLOOR_MODE`` bare, redis or redis-async (``$FLOOR_REDIS``, ``$FLOOR_KEY``)."""
    import queue

    from banditkit.service.app import _tune_interpreter as tune_interpreter
    from banditkit.service.coalesce import Coalescer
    from banditkit.service.stores.base import settled

    mode = os.environ["FLOOR_MODE"]
    durable = None
    if mode == "redis":
        from concurrent.futures import Future

        from banditkit.service.stores import redis_keys as rk

        client, _ = rk.connect(os.environ["FLOOR_REDIS"])
        sha = client.script_load(FLOOR_SCRIPT)
        key = os.environ["FLOOR_KEY"]
        jobs: queue.SimpleQueue = queue.SimpleQueue()

        def writer() -> None:  # the Redis store's writer thread: gather what is queued, one pipeline
            while True:
                group = [jobs.get()]
                with contextlib.suppress(queue.Empty):
                    while len(group) < 256:
                        group.append(jobs.get_nowait())
                pipe = client.pipeline(transaction=False)
                for _ in group:
                    pipe.execute_command("EVALSHA", sha, 1, key)
                for future, reply in zip(group, pipe.execute(raise_on_error=False), strict=True):
                    future.set_result(reply)

        threading.Thread(target=writer, name="floor-redis-writer", daemon=True).start()

        async def write(_key, items: list) -> list:
            future: Future = Future()
            jobs.put(future)
            await settled(future)
            return items

        durable = Coalescer(write)
    elif mode == "redis-async":
        import redis.asyncio

        from banditkit.service.stores import redis_keys as rk

        sync, location = rk.connect(os.environ["FLOOR_REDIS"])
        sha = sync.script_load(FLOOR_SCRIPT)
        sync.close()
        key = os.environ["FLOOR_KEY"]
        aclient = redis.asyncio.Redis(host=location.host, port=location.port, db=location.db, decode_responses=True)

        async def write_async(_key, items: list) -> list:
            pipe = aclient.pipeline(transaction=False)
            pipe.execute_command("EVALSHA", sha, 1, key)
            await pipe.execute(raise_on_error=False)
            return items

        durable = Coalescer(write_async)
    elif mode != "bare":
        raise ValueError(f"FLOOR_MODE: bare, redis or redis-async, not {mode!r}")
    tune_interpreter()  # as the service tunes itself
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(FLOOR_ANSWER))]

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["method"] == "POST":
            more = True
            while more:
                more = (await receive()).get("more_body", False)
        if durable is not None:
            await durable.submit("floor", None)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": FLOOR_ANSWER})

    return app


def serve_floor(port: int, workers: int) -> None:
    """Serve :func:`create_floor_app` the way ``banditkit.service.runner.serve`` serves the service."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from banditkit.service.config import Settings
    from banditkit.service.connections import ServerConfig, raise_descriptor_limit

    raise_descriptor_limit()
    settings = Settings()
    options = {"host": "127.0.0.1", "port": port, "log_level": "warning"}
    if workers == 1:
        uvicorn.Server(ServerConfig(create_floor_app(), settings, **options)).run()
        return
    config = ServerConfig("bench_scale_out:create_floor_app", settings, factory=True, workers=workers, **options)
    Multiprocess(config, sockets=[config.bind_socket()]).run()


class FloorServer(Server):
    """:func:`serve_floor` in a child process, ``mode`` ``bare``, ``redis`` or ``redis-async``."""

    def __init__(self, mode: str, workers: int, redis_url: str, key: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        here = str(Path(__file__).resolve().parent)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([here, str(ROOT)]),
            "FLOOR_MODE": mode,
            "FLOOR_REDIS": redis_url,
            "FLOOR_KEY": key,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-c", f"import bench_scale_out; bench_scale_out.serve_floor({self.port}, {workers})"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait(workers, "/floor")


def floor_rows(args, redis_url: str, client: redis.Redis, folder: Path) -> list[dict]:
    """CPU per request of the floor apps (module docstring), one and two workers, rounds interleaved."""
    script = folder / "bench.lua"
    script.write_text(WRK_SCRIPT)
    rows = []
    for _ in range(args.repeats):
        for mode in args.floor_modes.split(","):
            for workers in (1, 2):
                prefix = f"bench-{uuid.uuid4().hex[:8]}"
                key, path = f"{prefix}:floor", "/floor"
                if mode == "service":  # banditkit serve itself, as in the serving table, for the same rounds
                    server: Server = Server(f"{redis_url}?prefix={prefix}", workers)
                    path = "/v1/experiments/bench/decisions"
                else:
                    server = FloorServer(mode, workers, redis_url, key)
                env = {"BENCH_METHOD": "POST", "BENCH_PATH": path, "BENCH_BODY": "{}"}
                try:
                    if mode == "service":
                        httpx.post(f"{server.base_url}/v1/experiments", json=EXPERIMENT, timeout=30).raise_for_status()
                        time.sleep(1.5)  # the other workers pick the new experiment up
                    run_wrk(server.base_url + path, 2, args.connections, env, script)  # warm-up
                    cpu_before = tree_cpu_seconds(server.pids)
                    redis_before = process_cpu_seconds(redis_pid(client))
                    switches_before, calls_before = context_switches(server.pids), redis_calls(client)
                    result = run_wrk(server.base_url + path, args.seconds, args.connections, env, script)
                    workers_cpu = tree_cpu_seconds(server.pids) - cpu_before
                    redis_cpu = process_cpu_seconds(redis_pid(client)) - redis_before
                    switches = context_switches(server.pids) - switches_before
                    calls = redis_calls(client) - calls_before
                finally:
                    server.stop()
                    drop_prefix(client, prefix)
                requests = max(result["requests"], 1)
                rows.append(
                    {
                        "label": f"floor, {mode}, {workers} worker{'s' if workers > 1 else ''}",
                        "mode": mode,
                        "workers": workers,
                        **result,
                        "workers_ms": 1e3 * workers_cpu / requests,
                        "redis_ms": 1e3 * redis_cpu / requests if mode != "bare" else 0.0,
                        "per_call": calls and requests / calls,
                        "switches": switches / requests,
                        "load": os.getloadavg()[0],
                    }
                )
    return rows


def print_floor(rows: list[dict]) -> None:
    print(
        f"{'configuration':<28}{'requests/s':>11}{'p99 ms':>9}{'worker CPU ms/req [range]':>28}"
        f"{'Redis ms/req':>13}{'req/call':>10}{'switches/req':>14}"
    )
    for label in dict.fromkeys(row["label"] for row in rows):
        mine = [row for row in rows if row["label"] == label]
        cpu = [row["workers_ms"] for row in mine]
        print(
            f"{label:<28}{statistics.median(r['rps'] for r in mine):>11.0f}"
            f"{statistics.median(r['p99_ms'] for r in mine):>9.2f}"
            f"{f'{statistics.median(cpu):.4f} [{min(cpu):.4f}-{max(cpu):.4f}]':>28}"
            f"{statistics.median(r['redis_ms'] for r in mine):>13.4f}"
            f"{statistics.median(r['per_call'] for r in mine):>10.1f}"
            f"{statistics.median(r['switches'] for r in mine):>14.2f}"
        )
    for mode in dict.fromkeys(row["mode"] for row in rows):
        one = [row["workers_ms"] for row in rows if row["mode"] == mode and row["workers"] == 1]
        two = [row["workers_ms"] for row in rows if row["mode"] == mode and row["workers"] == 2]
        ratios = [b / a - 1 for a, b in zip(one, two, strict=True)]
        loads = [row["load"] for row in rows if row["mode"] == mode and row["workers"] == 2]
        print(
            f"floor, {mode}: 2 workers vs 1, CPU per request {statistics.median(two) / statistics.median(one) - 1:+.0%}"
            f" (medians); per round {', '.join(f'{r:+.0%}' for r in ratios)}; load average "
            f"{', '.join(f'{load:.1f}' for load in loads)}"
        )


def redis_calls(client: redis.Redis) -> int:
    """Script calls Redis has run so far (EVALSHA and EVAL, from INFO commandstats).

    The commands a script runs inside count apart in commandstats, so the scripts alone are the round trips a
    worker's writes make.
    """
    stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


def context_switches(pids: list[int]) -> int:
    """Voluntary plus involuntary context switches of ``pids`` so far (every thread, from /proc)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if "ctxt_switches:" in line:
                    total += int(line.split()[1])
    return total


def redis_pid(client: redis.Redis) -> int:
    return int(client.info("server")["process_id"])


def drop_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=10_000))
    for start in range(0, len(keys), 10_000):
        client.delete(*keys[start : start + 10_000])


def serving_rows(args, redis_url: str, client: redis.Redis, folder: Path) -> list[dict]:
    """POST decisions on SQLite x1, Redis x1, Redis x2; each configuration in its own server.

    A last configuration, one Redis worker with half the connections, is the control for two workers:
    each of two workers sees about half the concurrent requests, so it groups fewer decisions into one
    store call per loop turn; the control shows what that alone costs one worker.
    """
    script = folder / "bench.lua"
    script.write_text(WRK_SCRIPT)
    use_wrk = shutil.which("wrk") is not None
    full, half = args.connections, args.connections // 2
    configurations = [
        ("SQLite, 1 worker", "sqlite", 1, full),
        ("Redis, 1 worker", None, 1, full),
        ("Redis, 2 workers", None, 2, full),
        (f"Redis, 1 worker, {half} conn.", None, 1, half),
    ]
    rows = []
    for _ in range(args.repeats):
        for label, store, workers, connections in configurations:
            prefix = f"bench-{uuid.uuid4().hex[:8]}"
            url = f"sqlite:///{folder}/{prefix}.db" if store == "sqlite" else f"{redis_url}?prefix={prefix}"
            server = Server(url, workers)
            try:
                httpx.post(f"{server.base_url}/v1/experiments", json=EXPERIMENT, timeout=30).raise_for_status()
                time.sleep(1.5)  # the other workers pick the new experiment up
                path = "/v1/experiments/bench/decisions"
                env = {"BENCH_METHOD": "POST", "BENCH_PATH": path, "BENCH_BODY": "{}"}
                if use_wrk:  # every worker past its first requests (compiled kernels loaded, caches warm)
                    run_wrk(server.base_url + path, 2, connections, env, script)
                else:
                    run_asyncio(server.base_url, "POST", path, ["{}"], 2, connections)
                cpu_before = tree_cpu_seconds(server.pids)
                redis_before = process_cpu_seconds(redis_pid(client))
                calls_before, switches_before = redis_calls(client), context_switches(server.pids)
                if use_wrk:
                    result = run_wrk(server.base_url + path, args.seconds, connections, env, script)
                else:
                    result = run_asyncio(server.base_url, "POST", path, ["{}"], args.seconds, connections)
                workers_cpu = tree_cpu_seconds(server.pids) - cpu_before
                redis_cpu = process_cpu_seconds(redis_pid(client)) - redis_before
                calls = redis_calls(client) - calls_before
                switches = context_switches(server.pids) - switches_before
                # The same server's no-op (GET /v1/health, no store): what a request costs the HTTP stack alone
                # with this many worker processes on this machine.
                noop_env = {"BENCH_METHOD": "GET", "BENCH_PATH": "/v1/health", "BENCH_BODY": ""}
                cpu_before = tree_cpu_seconds(server.pids)
                if use_wrk:
                    noop = run_wrk(server.base_url + "/v1/health", args.seconds, connections, noop_env, script)
                else:
                    noop = run_asyncio(server.base_url, "GET", "/v1/health", [""], args.seconds, connections)
                noop_ms = 1e3 * (tree_cpu_seconds(server.pids) - cpu_before) / max(noop["requests"], 1)
            finally:
                server.stop()
                drop_prefix(client, prefix)
            requests = max(result["requests"], 1)
            rows.append(
                {
                    "label": label,
                    **result,
                    "workers_ms": 1e3 * workers_cpu / requests,
                    "redis_ms": 1e3 * redis_cpu / requests if store is None else 0.0,
                    "noop_ms": noop_ms,
                    "per_call": requests / calls if store is None and calls else 0.0,
                    "switches": switches / requests,
                }
            )
    return rows


def print_serving(rows: list[dict]) -> None:
    print(
        f"{'configuration':<28}{'decisions/s':>13}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'worker CPU ms/dec':>19}{'Redis CPU ms/dec':>18}{'total ms/dec':>14}{'no-op CPU ms/req':>18}"
        f"{'dec/script call':>16}{'switches/dec':>14}"
    )
    for label in dict.fromkeys(row["label"] for row in rows):
        mine = [row for row in rows if row["label"] == label]

        def median(key: str, mine: list[dict] = mine) -> float:
            return statistics.median(row[key] for row in mine)

        print(
            f"{label:<28}{median('rps'):>13.0f}{median('p50_ms'):>9.2f}{median('p99_ms'):>9.2f}"
            f"{sum(row['errors'] for row in mine):>8d}{median('workers_ms'):>19.3f}{median('redis_ms'):>18.3f}"
            f"{median('workers_ms') + median('redis_ms'):>14.3f}{median('noop_ms'):>18.3f}"
            f"{median('per_call'):>16.2f}{median('switches'):>14.2f}"
        )


def memory_per_pending(redis_url: str, client: redis.Redis, count: int) -> tuple[float, int]:
    """Bytes of Redis memory per pending decision: ``count`` decisions logged through the store, no rewards."""
    import asyncio

    from banditkit.service.engine import Engine
    from banditkit.service.schemas import DecisionRequest, ExperimentCreate
    from banditkit.service.stores import open_store

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    store = open_store(f"{redis_url}?prefix={prefix}")

    async def fill() -> int:
        engine = Engine(store, refresh_s=0)
        try:
            await engine.create(ExperimentCreate.model_validate(EXPERIMENT))
            before = client.info("memory")["used_memory"]
            for _ in range(count // 1000):
                await engine.decide("bench", [DecisionRequest()] * 1000)
            return client.info("memory")["used_memory"] - before
        finally:
            engine.close()

    try:
        grown = asyncio.run(fill())
    finally:
        store.close()
        drop_prefix(client, prefix)
    return grown / count, grown


def learner_throughput(redis_url: str, rewards: int, repeats: int) -> list[float]:
    """Rewards applied per second by one learner draining a pre-filled stream (see bench_learner.py)."""
    from bench_learner import fill, reset

    from banditkit.service.learner import Learner
    from banditkit.service.stores.redis_keys import connect

    client, _ = connect(redis_url)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    rates = []
    try:
        meta, _ = fill(client, prefix, rewards)
        for repeat in range(repeats):
            reset(client, prefix, meta)
            learner = Learner(client, prefix, f"bench-{repeat}", batch_size=10_000)
            started = time.perf_counter()
            report = learner.step()
            rates.append(report.applied / (time.perf_counter() - started))
            learner.close()
    finally:
        drop_prefix(client, prefix)
    return rates


def reward_latency(redis_url: str, rate: int, seconds: float) -> tuple[float, float, int]:
    """Reward-to-model latency: rewards claimed at ``rate`` per second (as workers do) while a streaming
    ``banditkit learn`` process learns; a reward is in the model once the stored ledger counts it."""
    from bench_learner import fill

    from banditkit.service.stores.redis_keys import (
        CLAIM_REWARDS,
        LOG_DECISIONS,
        Keys,
        claim_args,
        claim_keys,
        connect,
        log_args,
        log_keys,
        parse_meta,
        read_meta,
    )

    client, _ = connect(redis_url)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    keys = Keys.of(prefix, "bench")
    total = int(rate * seconds)
    try:
        fill(client, prefix, 0)
        meta_pulls = lambda: parse_meta(read_meta(client, keys.meta)).state["ledger/pulls"].sum()
        from banditkit.service.stores.base import DecisionRecord, Probabilities

        probabilities = Probabilities({f"arm{i}": 0.1 for i in range(10)})
        now = time.time()
        records = [
            DecisionRecord(
                f"{int(now * 1000):012x}{i:05x}{uuid.uuid4().int >> 68:015x}",
                now,
                "bench",
                None,
                None,
                f"arm{i % 10}",
                0.1,
                probabilities,
                0,
                False,
            )
            for i in range(total)
        ]
        log = client.register_script(LOG_DECISIONS)
        for first in range(0, total, 1000):
            log(keys=log_keys(keys), args=log_args(records[first : first + 1000]))
        learner = subprocess.Popen(
            [sys.executable, "-m", "banditkit.cli", "learn", "--store", f"{redis_url}?prefix={prefix}"],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        claim = client.register_script(CLAIM_REWARDS)
        sent: list[float] = []
        applied: list[tuple[float, float]] = []
        done = threading.Event()

        def watch() -> None:
            watcher, _ = connect(redis_url)
            version = None
            while not done.is_set():
                current = watcher.hget(keys.meta, "version")
                if current != version:
                    version = current
                    pulls = parse_meta(read_meta(watcher, keys.meta)).state["ledger/pulls"].sum()
                    applied.append((time.perf_counter(), pulls))
                time.sleep(0.001)

        watcher = threading.Thread(target=watch)
        watcher.start()
        time.sleep(1.0)  # the learner is up and holds its lease
        per_tick = max(1, rate // 100)  # a claim every 10 ms
        started = time.perf_counter()
        for first in range(0, total, per_tick):
            tick = started + first / rate
            time.sleep(max(0.0, tick - time.perf_counter()))
            chunk = records[first : first + per_tick]
            claim(
                keys=claim_keys(keys),
                args=claim_args(time.time(), 3600.0, "bench", [(r.decision_id, 1.0, "client") for r in chunk]),
            )
            sent.extend([time.perf_counter()] * len(chunk))
        deadline = time.perf_counter() + 30
        while meta_pulls() < total and time.perf_counter() < deadline:
            time.sleep(0.01)
        done.set()
        watcher.join()
        learner.terminate()
        learner.wait(20)
    finally:
        drop_prefix(client, prefix)
    latencies = []
    position = 0
    for index, t in enumerate(sent):
        while position < len(applied) and applied[position][1] <= index:
            position += 1
        if position == len(applied):
            break
        latencies.append(applied[position][0] - t)
    latencies.sort()
    return latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)], len(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--rewards", type=int, default=200_000, help="pre-filled rewards for the learner row")
    parser.add_argument("--rate", type=int, default=2000, help="rewards/s for the latency row")
    parser.add_argument("--pending", type=int, default=100_000, help="pending decisions for the memory row")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--repeats-learner", type=int, default=3)
    parser.add_argument("--skip-serving", action="store_true")
    parser.add_argument("--floor", action="store_true", help="only the floor of the two-worker ratio (docstring)")
    parser.add_argument(
        "--floor-modes", default="bare,redis,service", help="of bare, redis, redis-async, service (banditkit serve)"
    )
    args = parser.parse_args()
    client = redis.Redis.from_url(args.redis)
    load = os.getloadavg()
    print(
        f"load average before {load[0]:.2f}; Redis {client.info('server')['redis_version']} at {args.redis}; "
        f"{args.connections} connections, {args.seconds} s per row, {args.repeats} round(s); Thompson K=10"
    )
    if args.floor:
        with tempfile.TemporaryDirectory() as folder:
            print_floor(floor_rows(args, args.redis, client, Path(folder)))
        print(f"load average after {os.getloadavg()[0]:.2f}")
        return
    if not args.skip_serving:
        with tempfile.TemporaryDirectory() as folder:
            print_serving(serving_rows(args, args.redis, client, Path(folder)))
    rates = learner_throughput(args.redis, args.rewards, args.repeats_learner)
    print(
        f"learner alone, {args.rewards:,} rewards pre-filled (Thompson K=10, batches of 10,000): "
        f"{statistics.median(rates):,.0f} rewards/s (runs: {', '.join(f'{r:,.0f}' for r in rates)}; "
        "target >= 50,000)"
    )
    p50, p99, count = reward_latency(args.redis, args.rate, args.latency_seconds)
    print(
        f"reward-to-model latency at {args.rate:,} rewards/s ({count:,} rewards, a streaming `banditkit learn` "
        f"process): p50 {p50 * 1e3:.0f} ms, p99 {p99 * 1e3:.0f} ms (target p99 < 1 s)"
    )
    per_decision, total = memory_per_pending(args.redis, client, args.pending)
    print(
        f"Redis memory per pending decision: {per_decision:.0f} bytes ({total / 2**20:.1f} MiB for "
        f"{args.pending:,} decisions, INFO used_memory before/after)"
    )
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

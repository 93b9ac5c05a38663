"""What GET /metrics costs: decisions with metrics on and off, and the scrape of 100 experiments x 10 arms.

Two servers (one uvicorn worker each, the same store kind) serve the same
Thompson-sampling experiment with 10 arms, one with ``metrics`` on and one with
it off; each is loaded in turn with POST decisions by the load generator of
``bench_service.py`` (wrk if installed, else its asyncio clients), the rounds
interleaved (each first in every other round), and the server's CPU time per
decision is compared: the overhead of counting requests, decisions and store
latencies. On a shared machine that comparison is noisy, so the instructions
per decision are also counted by callgrind (valgrind), for single decisions
sent as ASGI calls straight into an app (memory store, no HTTP parsing or
socket) with metrics off and on: a figure noise does not move, as in
``bench_instructions.py`` (about 7 minutes on 2 cores: valgrind runs the
imports too; skipped without valgrind). Then a third
server holds 100 experiments of 10 arms, each with decisions and rewards
behind it, and ``GET /metrics`` is timed over a kept-alive connection.

    python benchmarks/bench_metrics.py [--seconds 5] [--connections 32] [--repeats 3]
                                       [--store sqlite|memory] [--scrapes 50]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_service import WRK_SCRIPT, _spread, process_cpu_seconds, run_asyncio, run_wrk

from banditkit.service import Settings, create_app
from banditkit.service.runner import ServiceProcess
from banditkit.service.schemas import ExperimentCreate

ARMS = [f"arm{i}" for i in range(10)]


def start(store: str, metrics: bool) -> ServiceProcess:
    settings = Settings(store=store, port=0, admin_token=None, client_tokens=(), metrics=metrics)
    return ServiceProcess(settings).start()


def decisions_round(server: ServiceProcess, seconds: int, connections: int, script: Path, use_wrk: bool) -> dict:
    """POST decisions for ``seconds``: requests per second, and the server's CPU milliseconds per decision."""
    path = "/v1/experiments/bench/decisions"
    cpu_before = process_cpu_seconds(server.process.pid)
    if use_wrk:
        env = {"BENCH_METHOD": "POST", "BENCH_PATH": path, "BENCH_BODY": "{}"}
        result = run_wrk(server.base_url + path, seconds, connections, env, script)
    else:
        result = run_asyncio(server.base_url, "POST", path, ["{}"], seconds, connections)
    cpu = process_cpu_seconds(server.process.pid) - cpu_before
    return {**result, "cpu_ms": 1e3 * cpu / max(result["requests"], 1)}


def measure_overhead(args, folder: Path, use_wrk: bool) -> dict[str, list[dict]]:
    """Interleaved rounds of decisions on a server with metrics off and one with metrics on."""
    script = folder / "bench.lua"
    script.write_text(WRK_SCRIPT)
    servers = {}
    try:
        for label, on in (("metrics off", False), ("metrics on", True)):
            store = f"sqlite:///{folder}/{label.replace(' ', '-')}.db" if args.store == "sqlite" else "memory://"
            servers[label] = server = start(store, on)
            with httpx.Client(base_url=server.base_url, timeout=60.0) as client:
                client.post("/v1/experiments", json={"name": "bench", "arms": ARMS}).raise_for_status()
        rounds: dict[str, list[dict]] = {label: [] for label in servers}
        for index in range(args.repeats):
            # Each server goes first in every other round: the one measured second shares the machine with what
            # the first left running (its SQLite checkpoint, a few seconds later).
            for label in list(servers)[:: 1 if index % 2 == 0 else -1]:
                rounds[label].append(decisions_round(servers[label], args.seconds, args.connections, script, use_wrk))
        return rounds
    finally:
        for server in servers.values():
            server.stop()


async def _asgi_decisions(metrics: bool, count: int) -> None:
    """``count`` single decisions sent as ASGI calls to an app (memory store) with ``metrics`` on or off.

    A few decisions first (the first computes the distribution), then the garbage collector is off, so that
    callgrind counts the same instructions on every run.
    """
    app = create_app(Settings(store="memory://", metrics=metrics, tune_interpreter=False))
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/experiments/bench/decisions",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")],
    }
    statuses: list[int] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async with app.router.lifespan_context(app):
        await app.state.engine.create(ExperimentCreate(name="bench", arms=ARMS, seed=1))
        for _ in range(20):
            await app(dict(scope), receive, send)
        gc.collect()
        gc.disable()
        for _ in range(count):
            await app(dict(scope), receive, send)
        gc.enable()
    assert set(statuses) == {200}, set(statuses)


def instructions(metrics: bool, count: int) -> int:
    """Instructions callgrind counts for a process that serves ``count`` decisions (see :func:`_asgi_decisions`)."""
    with tempfile.TemporaryDirectory() as folder:
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={folder}/callgrind.out",
            sys.executable,
            __file__,
            "--asgi-decisions",
            str(count),
            "--metrics",
            "on" if metrics else "off",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
    match = re.search(r"Collected : (\d+)", result.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count from callgrind: {result.stderr[-500:]}")
    return int(match.group(1))


def measure_instructions(count: int = 1000, base: int = 200) -> dict[str, float] | None:
    """Instructions per decision with metrics off and on: the count for ``base + count`` less that for ``base``.

    Start-up and imports cancel out; noise does not move the figure. None without valgrind.
    """
    if shutil.which("valgrind") is None:
        return None
    cases = [(metrics, n) for metrics in (False, True) for n in (base, base + count)]
    with ThreadPoolExecutor(2) as pool:
        counts = dict(zip(cases, pool.map(lambda case: instructions(*case), cases), strict=True))
    return {
        label: (counts[metrics, base + count] - counts[metrics, base]) / count
        for label, metrics in (("metrics off", False), ("metrics on", True))
    }


def measure_scrape(args, folder: Path) -> dict:
    """``GET /metrics`` of 100 experiments x 10 arms, each with 200 decisions and 100 rewards behind it."""
    store = f"sqlite:///{folder}/scrape.db" if args.store == "sqlite" else "memory://"
    server = start(store, True)
    try:
        with httpx.Client(base_url=server.base_url, timeout=60.0) as client:
            for index in range(100):
                name = f"experiment-{index:03d}"
                client.post("/v1/experiments", json={"name": name, "arms": ARMS}).raise_for_status()
                answers = client.post(f"/v1/experiments/{name}/decisions/batch", json={"requests": [{}] * 200})
                rewards = [
                    {"decision_id": d["decision_id"], "value": float(i % 2)}
                    for i, d in enumerate(answers.json()["decisions"][:100])
                ]
                client.post(f"/v1/experiments/{name}/rewards/batch", json={"rewards": rewards}).raise_for_status()
                client.post(f"/v1/experiments/{name}/decisions", json={}).raise_for_status()  # the new model's shares
            client.get("/metrics").raise_for_status()  # warm
            times, size, samples = [], 0, 0
            cpu_before = process_cpu_seconds(server.process.pid)
            for _ in range(args.scrapes):
                started = time.perf_counter()
                response = client.get("/metrics")
                times.append(time.perf_counter() - started)
                response.raise_for_status()
                size = len(response.content)
                samples = sum(1 for line in response.text.splitlines() if line and not line.startswith("#"))
            cpu = process_cpu_seconds(server.process.pid) - cpu_before
            # The server's own time per scrape, from its request histogram (the client's reading adds to the above).
            served = {
                sample.name: sample.value
                for family in text_string_to_metric_families(client.get("/metrics").text)
                for sample in family.samples
                if sample.labels.get("route") == "/metrics" and sample.name.endswith(("_sum", "_count"))
            }
    finally:
        server.stop()
    times.sort()
    return {
        "median_ms": 1e3 * statistics.median(times),
        "p95_ms": 1e3 * times[int(0.95 * (len(times) - 1))],
        "max_ms": 1e3 * times[-1],
        "bytes": size,
        "samples": samples,
        "cpu_ms": 1e3 * cpu / args.scrapes,
        "server_mean_ms": 1e3
        * served["banditkit_http_request_duration_seconds_sum"]
        / served["banditkit_http_request_duration_seconds_count"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--asgi-decisions", type=int, help=argparse.SUPPRESS)  # the process callgrind counts
    parser.add_argument("--metrics", choices=["on", "off"], help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of each server, interleaved")
    parser.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--generator", choices=["auto", "wrk", "asyncio"], default="auto")
    args = parser.parse_args()
    if args.asgi_decisions is not None:
        asyncio.run(_asgi_decisions(args.metrics == "on", args.asgi_decisions))
        return
    load = os.getloadavg()
    use_wrk = args.generator == "wrk" or (args.generator == "auto" and shutil.which("wrk") is not None)
    with tempfile.TemporaryDirectory() as folder:
        rounds = measure_overhead(args, Path(folder), use_wrk)
        counted = measure_instructions()
        scrape = measure_scrape(args, Path(folder))
    print(
        f"load generator: {'wrk, 2 threads' if use_wrk else 'raw asyncio HTTP/1.1 clients (separate process)'}, "
        f"{args.connections} connections, {args.seconds} s per round, {args.repeats} rounds interleaved; one uvicorn "
        f"worker; {args.store} store; Thompson sampling, K=10; load average before {load[0]:.2f}, after "
        f"{os.getloadavg()[0]:.2f}"
    )
    print("median over the rounds, range in brackets")
    print(f"{'POST decisions':<16}{'requests/s':>24}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'server CPU ms/req':>26}")
    for label, rows in rounds.items():
        print(
            f"{label:<16}{_spread([r['rps'] for r in rows], '.0f'):>24}"
            f"{statistics.median(r['p50_ms'] for r in rows):>9.2f}{statistics.median(r['p99_ms'] for r in rows):>9.2f}"
            f"{sum(r['errors'] for r in rows):>8d}{_spread([r['cpu_ms'] for r in rows], '.4f'):>26}"
        )
    off, on = (statistics.median(r["cpu_ms"] for r in rounds[label]) for label in ("metrics off", "metrics on"))
    rps_off, rps_on = (statistics.median(r["rps"] for r in rounds[label]) for label in ("metrics off", "metrics on"))
    print(
        f"metrics overhead: CPU per decision {100 * (on / off - 1):+.1f}%, "
        f"throughput {100 * (rps_on / rps_off - 1):+.1f}%"
    )
    if counted is None:
        print("instructions per decision: skipped (needs valgrind: apt-get install valgrind)")
    else:
        added = counted["metrics on"] / counted["metrics off"] - 1
        print(
            f"instructions per decision (callgrind, ASGI calls into the app, memory store): "
            f"{counted['metrics off']:,.0f} off, {counted['metrics on']:,.0f} on ({100 * added:+.1f}%)"
        )
    print(
        f"GET /metrics, 100 experiments x 10 arms ({scrape['samples']} samples, {scrape['bytes'] / 1e3:.0f} kB), "
        f"{args.scrapes} scrapes: median {scrape['median_ms']:.1f} ms, p95 {scrape['p95_ms']:.1f} ms, "
        f"max {scrape['max_ms']:.1f} ms; in the server {scrape['server_mean_ms']:.1f} ms on average, "
        f"{scrape['cpu_ms']:.1f} ms of its CPU"
    )


if __name__ == "__main__":
    main()

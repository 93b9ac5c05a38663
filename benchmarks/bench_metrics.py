"""What GET /metrics costs: decisions with metrics on and off, and the scrape of 100 experiments x 10 arms.

Two servers (one uvicorn worker each, the same store kind) serve the same
Thompson-sampling experiment with 10 arms, one with ``metrics`` on and one with
it off; each is loaded in turn with POST decisions by the load generator of
``bench_service.py`` (wrk if installed, else its asyncio clients), the rounds
interleaved (each first in every other round), and the server's CPU time per
decision is compared: the overhead of counting requests, decisions and store
latencies. On a shared machine that comparison is noisy, so the same single
decision is also sent
as an ASGI call straight into two apps (memory store, no HTTP parsing or
socket), 1,000 calls a round, 15 rounds interleaved, and the fastest round of
each app gives the process CPU the counting adds per decision. Then a third
server holds 100 experiments of 10 arms, each with decisions and rewards
behind it, and ``GET /metrics`` is timed over a kept-alive connection.

    python benchmarks/bench_metrics.py [--seconds 5] [--connections 32] [--repeats 3]
                                       [--store sqlite|memory] [--scrapes 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
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


async def _asgi_decisions(app, count: int) -> float:
    """Process CPU seconds per decision for ``count`` single decisions sent to ``app`` as ASGI calls."""
    body = b"{}"
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
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    started = time.process_time()
    for _ in range(count):
        await app(dict(scope), receive, send)
    elapsed = time.process_time() - started
    assert set(statuses) == {200}, set(statuses)
    return elapsed / count


def measure_in_process(rounds: int = 15, calls: int = 1000) -> dict[str, float]:
    """The fastest round's process CPU per single decision, for an app with metrics off and one with them on."""

    async def run() -> dict[str, float]:
        apps, lifespans = {}, []
        for label, on in (("metrics off", False), ("metrics on", True)):
            app = create_app(Settings(store="memory://", metrics=on, tune_interpreter=False))
            lifespan = app.router.lifespan_context(app)
            await lifespan.__aenter__()
            lifespans.append(lifespan)
            await app.state.engine.create(ExperimentCreate(name="bench", arms=ARMS))
            apps[label] = app
        best = dict.fromkeys(apps, float("inf"))
        for _ in range(rounds):
            for label, app in apps.items():
                best[label] = min(best[label], await _asgi_decisions(app, calls))
        for lifespan in lifespans:
            await lifespan.__aexit__(None, None, None)
        return best

    return asyncio.run(run())


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
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of each server, interleaved")
    parser.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--generator", choices=["auto", "wrk", "asyncio"], default="auto")
    args = parser.parse_args()
    load = os.getloadavg()
    use_wrk = args.generator == "wrk" or (args.generator == "auto" and shutil.which("wrk") is not None)
    with tempfile.TemporaryDirectory() as folder:
        rounds = measure_overhead(args, Path(folder), use_wrk)
        in_process = measure_in_process()
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
    added = in_process["metrics on"] - in_process["metrics off"]
    print(
        f"in process (ASGI calls, memory store, fastest of 15 rounds of 1,000): "
        f"{1e6 * in_process['metrics off']:.1f} us per decision off, {1e6 * in_process['metrics on']:.1f} us on: "
        f"{1e6 * added:+.1f} us, {100 * added / (off / 1e3):+.1f}% of the server CPU per decision above"
    )
    print(
        f"GET /metrics, 100 experiments x 10 arms ({scrape['samples']} samples, {scrape['bytes'] / 1e3:.0f} kB), "
        f"{args.scrapes} scrapes: median {scrape['median_ms']:.1f} ms, p95 {scrape['p95_ms']:.1f} ms, "
        f"max {scrape['max_ms']:.1f} ms; in the server {scrape['server_mean_ms']:.1f} ms on average, "
        f"{scrape['cpu_ms']:.1f} ms of its CPU"
    )


if __name__ == "__main__":
    main()

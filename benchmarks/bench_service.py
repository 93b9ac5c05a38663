"""Decision service throughput and latency: one uvicorn worker, loopback, 32 concurrent clients.

Measures POST decisions and POST rewards on a Thompson-sampling experiment with
10 arms (SQLite store, group commit), the same server's no-op endpoint
(GET /v1/health) under the same load, and decisions and rewards at once (half
the connections and one of the two wrk threads each, so the policy changes
while it serves); prints a table with the server's CPU time per request
(robust to other load on the machine; for the mixed rows, per request of
either kind) and the load average. The load generator is wrk (``apt-get
install wrk``) when present, else keep-alive HTTP/1.1 clients on raw asyncio
streams in a separate process.

    python benchmarks/bench_service.py [--seconds 10] [--connections 32] [--repeats 1]
                                       [--synchronous FULL|NORMAL] [--store sqlite|memory]

``--store memory`` serves from the in-memory store (nothing durable): the
difference to SQLite is the cost of durability.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from banditkit.service import Settings  # noqa: E402
from banditkit.service.runner import ServiceProcess  # noqa: E402

WRK_SCRIPT = textwrap.dedent("""
    -- POST bodies for wrk: a fixed body, or one reward per decision id from a file.
    local counter, ids = 0, nil
    local next_thread = 0
    function setup(thread) thread:set("tid", next_thread); next_thread = next_thread + 1 end
    function init(args)
      if os.getenv("BENCH_IDS") then
        ids = {}
        for line in io.lines(os.getenv("BENCH_IDS")) do ids[#ids + 1] = line end
        counter = tid * math.floor(#ids / 4)
      end
    end
    function request()
      if ids == nil then
        return wrk.format(os.getenv("BENCH_METHOD"), os.getenv("BENCH_PATH"),
                          {["Content-Type"] = "application/json"}, os.getenv("BENCH_BODY"))
      end
      counter = counter + 1
      local body = '{"decision_id": "' .. ids[(counter % #ids) + 1] .. '", "value": ' .. (counter % 2) .. '.0}'
      return wrk.format("POST", os.getenv("BENCH_PATH"), {["Content-Type"] = "application/json"}, body)
    end
""")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _milliseconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def run_wrk(url: str, seconds: int, connections: int, env: dict, script: Path, threads: int = 2) -> dict:
    output = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", str(script), url],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", output, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "requests": requests,
        "p50_ms": _milliseconds(percentiles["50"]),
        "p99_ms": _milliseconds(percentiles["99"]),
        "errors": int(errors.group(1)) if errors else 0,
    }


async def _asyncio_load(base: str, method: str, path: str, bodies: list[str], seconds: float, connections: int):
    """Closed-loop HTTP/1.1 keep-alive clients on raw asyncio streams (httpx's pool is too slow to load a server)."""
    host, port = base.removeprefix("http://").split(":")
    latencies, errors, counter = [], 0, 0
    deadline = time.perf_counter() + seconds

    async def user() -> None:
        nonlocal errors, counter
        reader, writer = await asyncio.open_connection(host, int(port))
        while time.perf_counter() < deadline:
            counter += 1
            body = bodies[counter % len(bodies)].encode()
            request = (
                f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            started = time.perf_counter()
            writer.write(request)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            errors += status >= 300
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(user() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "requests": len(latencies),
        "p50_ms": latencies[len(latencies) // 2] * 1e3,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
        "errors": errors,
    }


def run_asyncio(base: str, method: str, path: str, bodies: list[str], seconds: int, connections: int) -> dict:
    """The fallback load generator, in a separate process so it does not share the server's interpreter."""
    here = str(Path(__file__).parent)
    code = (
        f"import asyncio, json, sys; sys.path.insert(0, {here!r}); from bench_service import _asyncio_load; "
        "print(json.dumps(asyncio.run(_asyncio_load(*json.loads(sys.stdin.read())))))"
    )
    arguments = json.dumps([base, method, path, bodies, seconds, connections])
    return json.loads(
        subprocess.run([sys.executable, "-c", code], input=arguments, capture_output=True, text=True, check=True).stdout
    )


def decision_ids(client: httpx.Client, path: Path, count: int = 60_000) -> Path:
    """Make ``count`` decisions through the batch endpoint and write their ids to ``path``: one reward each."""
    ids = []
    for _ in range(count // 1000):
        batch = client.post("/v1/experiments/bench/decisions/batch", json={"requests": [{}] * 1000})
        ids += [d["decision_id"] for d in batch.json()["decisions"]]
    path.write_text("\n".join(ids))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1, help="rounds of every row, interleaved")
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    parser.add_argument("--commit-interval-ms", type=float, default=0.0)
    parser.add_argument("--generator", choices=["auto", "wrk", "asyncio"], default="auto")
    args = parser.parse_args()
    load = os.getloadavg()
    use_wrk = args.generator == "wrk" or (args.generator == "auto" and shutil.which("wrk") is not None)
    with tempfile.TemporaryDirectory() as folder:
        store = f"sqlite:///{folder}/bench.db" if args.store == "sqlite" else "memory://"
        server = ServiceProcess(
            Settings(
                store=store,
                port=0,
                admin_token=None,
                client_tokens=(),
                sqlite_synchronous=args.synchronous,
                commit_interval_ms=args.commit_interval_ms,
            )
        ).start()
        base = server.base_url
        try:
            with httpx.Client(base_url=base, timeout=60.0) as client:
                client.post(
                    "/v1/experiments",
                    json={
                        "name": "bench",
                        "arms": [f"arm{i}" for i in range(10)],
                        "policy": {"name": "thompson", "params": {}},
                    },
                ).raise_for_status()
            script = Path(folder) / "bench.lua"
            script.write_text(WRK_SCRIPT)

            def generate(
                method: str, path: str, body: str | None, ids_file: Path | None, connections: int, threads: int
            ) -> dict:
                """One load generator on one endpoint; ``body`` None: one reward per id in ``ids_file``."""
                if use_wrk:
                    env = {"BENCH_METHOD": method, "BENCH_PATH": path, "BENCH_BODY": body or ""}
                    if body is None:
                        env["BENCH_IDS"] = str(ids_file)
                    return run_wrk(base + path, args.seconds, connections, env, script, threads)
                bodies = (
                    [body]
                    if body is not None
                    else [
                        json.dumps({"decision_id": d, "value": float(i % 2)})
                        for i, d in enumerate(ids_file.read_text().split())
                    ]
                )
                return run_asyncio(base, method, path, bodies, args.seconds, connections)

            rounds = [
                measure_round(server, generate, Path(folder) / f"round-{index}", args.connections)
                for index in range(args.repeats)
            ]
            with httpx.Client(base_url=base, timeout=60.0) as client:
                stats = client.get("/v1/experiments/bench/stats").json()
        finally:
            server.stop()
    print(
        f"load generator: {'wrk, 2 threads' if use_wrk else 'raw asyncio HTTP/1.1 clients (separate process)'}, "
        f"{args.connections} connections, {args.seconds} s per row, {args.repeats} round(s); one uvicorn worker; "
        + (
            f"SQLite synchronous={args.synchronous}, group commit wait {args.commit_interval_ms:g} ms; "
            if args.store == "sqlite"
            else "memory store; "
        )
        + f"Thompson sampling, K=10; load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}"
    )
    print_table(rounds, NOOP)
    print(
        f"rewards applied: {stats['rewards']}, policy version {stats['policy_version']}, "
        f"decisions logged {stats['decisions']}"
    )


NOOP = "no-op GET /v1/health"


def measure_round(server: ServiceProcess, generate, folder: Path, connections: int) -> dict[str, dict]:
    """Every row once: the no-op, decisions, rewards (to fresh decisions, so each is applied), both at once."""
    folder.mkdir()
    with httpx.Client(base_url=server.base_url, timeout=60.0) as client:
        ids_files = [decision_ids(client, folder / f"ids-{i}.txt") for i in range(2)]
    decide, reward = "/v1/experiments/bench/decisions", "/v1/experiments/bench/rewards"
    runs = [
        {NOOP: ("GET", "/v1/health", "", None)},
        {"POST decisions": ("POST", decide, "{}", None)},
        {"POST rewards": ("POST", reward, None, ids_files[0])},
        # Both at once: decisions while the policy keeps changing.
        {
            "mixed: POST decisions": ("POST", decide, "{}", None),
            "mixed: POST rewards": ("POST", reward, None, ids_files[1]),
        },
    ]
    results = {}
    for run in runs:
        cpu_before = process_cpu_seconds(server.process.pid)
        # Every row loads the server with the same generator: two wrk threads, split between endpoints.
        share, threads = connections // len(run), max(1, 2 // len(run))
        with ThreadPoolExecutor(len(run)) as pool:
            running = {label: pool.submit(generate, *case, share, threads) for label, case in run.items()}
        cpu = process_cpu_seconds(server.process.pid) - cpu_before
        requests = sum(future.result()["requests"] for future in running.values())
        for label, future in running.items():
            results[label] = {**future.result(), "cpu_ms": 1e3 * cpu / max(requests, 1)}
    return results


def print_table(rounds: list[dict[str, dict]], noop: str) -> None:
    """One line per endpoint: medians over the rounds with ranges; each round's ratio to its own ``noop`` row."""
    if len(rounds) > 1:
        print("median over the rounds, range in brackets; 'vs no-op' compares each round with its own no-op row")
    print(
        f"{'endpoint':<24}{'requests/s':>22}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'vs no-op':>18}"
        f"{'server CPU ms/req':>19}"
    )
    for label in rounds[0]:
        rows = [round_[label] for round_ in rounds]
        ratios = [round_[label]["rps"] / round_[noop]["rps"] for round_ in rounds]
        p50, p99 = (statistics.median(r[key] for r in rows) for key in ("p50_ms", "p99_ms"))
        print(
            f"{label:<24}{_spread([r['rps'] for r in rows], '.0f'):>22}{p50:>9.2f}{p99:>9.2f}"
            f"{sum(r['errors'] for r in rows):>8d}{_spread(ratios, '.2f'):>18}"
            f"{statistics.median(r['cpu_ms'] for r in rows):>19.3f}"
        )


def _spread(values: list[float], spec: str) -> str:
    """The median, and the range when there is more than one value."""
    median = format(statistics.median(values), spec)
    return median if len(values) == 1 else f"{median} [{min(values):{spec}}-{max(values):{spec}}]"


if __name__ == "__main__":
    main()

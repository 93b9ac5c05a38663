"""The floor under the decision service's figures: what this HTTP stack costs before any decision work.

A bare ASGI app on the same stack as ``banditkit serve`` (one uvicorn worker,
uvloop, httptools, no access log, the same interpreter tuning), loaded like
``bench_service.py`` (wrk, 32 connections). Its endpoints do no work at all
and differ only in when they answer:

* ``GET /noop``, ``POST /noop``: at once (the POST reads its body);
* ``POST /next-turn``: one turn of the event loop later, as every request
  that waits for anything does;
* ``POST /durable``: after a durable write, the way the service waits for
  its log: the single requests of a loop turn joined by banditkit's
  ``Coalescer``, one row per batch committed by its ``GroupCommitWriter`` on
  SQLite (``synchronous=FULL`` unless ``--synchronous NORMAL``).

The ratio of ``/durable`` to ``GET /noop`` bounds what any durable decision
endpoint on this stack can reach, before choosing an arm or logging it.

    python benchmarks/bench_service_floor.py [--seconds 10] [--connections 32] [--repeats 1]
                                             [--synchronous FULL|NORMAL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from bench_service import WRK_SCRIPT, print_table, process_cpu_seconds, run_wrk  # noqa: E402

ANSWER = (
    b'{"decision_id":"0123456789abcdef0123456789abcdef","arm":"arm3","propensity":0.1,"policy_version":1,'
    b'"fallback":false}'
)


def create_floor_app():
    """The ASGI app of the floor endpoints; its SQLite file is ``$FLOOR_DB``, synchronous ``$FLOOR_SYNCHRONOUS``."""
    from banditkit.service.app import _tune_interpreter as tune_interpreter
    from banditkit.service.coalesce import Coalescer
    from banditkit.service.stores.base import settled
    from banditkit.service.stores.writer import GroupCommitWriter

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(os.environ["FLOOR_DB"], isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={os.environ['FLOOR_SYNCHRONOUS']}")
        connection.execute("CREATE TABLE IF NOT EXISTS batches (size INTEGER NOT NULL)")
        return connection

    writer = GroupCommitWriter(connect)

    async def write(_key, items: list) -> list:
        def job(db, _after):
            db.execute("INSERT INTO batches VALUES (?)", (len(items),))

        await settled(writer.submit(job))
        return items

    durable = Coalescer(write)
    tune_interpreter()  # as the service tunes itself

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["method"] == "POST":
            more = True
            while more:
                more = (await receive()).get("more_body", False)
        path = scope["path"]
        if path == "/next-turn":
            await asyncio.sleep(0)
        elif path == "/durable":
            await durable.submit("floor", None)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(ANSWER))],
            }
        )
        await send({"type": "http.response.body", "body": ANSWER})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1, help="rounds of every endpoint, interleaved")
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    args = parser.parse_args()
    from banditkit.service.runner import free_port

    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        env = {
            **os.environ,
            "FLOOR_DB": f"{folder}/floor.db",
            "FLOOR_SYNCHRONOUS": args.synchronous,
            "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
        }
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "bench_service_floor:create_floor_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
                "--lifespan",
                "off",
            ],
            env=env,
        )
        script = Path(folder) / "bench.lua"
        script.write_text(WRK_SCRIPT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while subprocess.run(["curl", "-sf", f"{base}/noop"], capture_output=True).returncode != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("the floor server did not start")
                time.sleep(0.1)
            rounds = []
            for _ in range(args.repeats):
                results = {}
                for method, path in [("GET", "/noop"), ("POST", "/noop"), ("POST", "/next-turn"), ("POST", "/durable")]:
                    before = process_cpu_seconds(server.pid)
                    row = run_wrk(
                        base + path,
                        args.seconds,
                        args.connections,
                        {"BENCH_METHOD": method, "BENCH_PATH": path, "BENCH_BODY": "{}"},
                        script,
                    )
                    row["cpu_ms"] = 1e3 * (process_cpu_seconds(server.pid) - before) / max(row["requests"], 1)
                    results[f"{method} {path}"] = row
                rounds.append(results)
        finally:
            server.terminate()
            server.wait(15)
    print(
        f"load generator: wrk, 2 threads, {args.connections} connections, {args.seconds} s per row, "
        f"{args.repeats} round(s); one uvicorn worker; no decision work; SQLite synchronous={args.synchronous}; "
        f"load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}"
    )
    print_table(rounds, "GET /noop")


if __name__ == "__main__":
    main()

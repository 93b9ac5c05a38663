"""bench_service.py's mixed row (decisions and rewards at once, SQLite) against several checkouts, interleaved.

One ``banditkit serve`` per checkout (each its own ``PYTHONPATH``, its own SQLite file, one Thompson-sampling
experiment with K=10), all started first; then rounds in which every server takes the same load in turn
(A, B, then B, A in the next round, and so on), so the machine's drift and other load fall on every side alike,
after ``--warm-up`` unmeasured rounds.
A round of one side: 40,000 decisions made through the batch endpoint for the rewards to go to, then two wrk
processes at once for ``--seconds``, 16 connections and one thread each, one on POST decisions and one on POST
rewards (one reward per fresh decision), exactly as the mixed row of ``bench_service.py`` loads its server.

Per side it prints the medians and ranges of the server's CPU time per request of either kind (utime + stime
from /proc, robust to other load on the machine), decisions/s, rewards/s and their ratio, the server's
context switches per request, and the load average of each round.

    python benchmarks/bench_service_ab.py --side base=/path/to/checkout-a --side new=/path/to/checkout-b
                                          [--rounds 4] [--seconds 5] [--warm-up 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_scale_out import EXPERIMENT, context_switches  # noqa: E402
from bench_service import WRK_SCRIPT, decision_ids, process_cpu_seconds, run_wrk  # noqa: E402

DECIDE, REWARD = "/v1/experiments/bench/decisions", "/v1/experiments/bench/rewards"


class Side:
    """``banditkit serve`` from ``root`` (its own PYTHONPATH) on an SQLite file in ``folder``."""

    def __init__(self, name: str, root: str, folder: Path) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.name, self.root, self.base_url = name, root, f"http://127.0.0.1:{port}"
        env = {key: value for key, value in os.environ.items() if not key.startswith("BANDITKIT_")}
        env["PYTHONPATH"] = root
        command = [sys.executable, "-m", "banditkit.cli", "serve", "--store", f"sqlite:///{folder}/{name}.db"]
        self.process = subprocess.Popen(
            [*command, "--port", str(port), "--log-level", "warning"],
            env=env,
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.base_url}/v1/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server of {name} ({root}) did not start") from None
                time.sleep(0.1)
        httpx.post(f"{self.base_url}/v1/experiments", json=EXPERIMENT, timeout=30).raise_for_status()

    def mixed(self, seconds: int, connections: int, folder: Path, script: Path) -> dict:
        """One round of the mixed row on this side's server."""
        with httpx.Client(base_url=self.base_url, timeout=60.0) as client:
            ids = decision_ids(client, folder / f"ids-{self.name}-{time.monotonic_ns()}.txt", 40_000)
        decide_env = {"BENCH_METHOD": "POST", "BENCH_PATH": DECIDE, "BENCH_BODY": "{}"}
        reward_env = {"BENCH_METHOD": "POST", "BENCH_PATH": REWARD, "BENCH_BODY": "", "BENCH_IDS": str(ids)}
        pid, share = self.process.pid, connections // 2
        cpu, switches = process_cpu_seconds(pid), context_switches([pid])
        with ThreadPoolExecutor(2) as pool:
            decided = pool.submit(run_wrk, self.base_url + DECIDE, seconds, share, decide_env, script, 1)
            rewarded = pool.submit(run_wrk, self.base_url + REWARD, seconds, share, reward_env, script, 1)
        cpu, switches = process_cpu_seconds(pid) - cpu, context_switches([pid]) - switches
        decisions, rewards = decided.result(), rewarded.result()
        requests = max(decisions["requests"] + rewards["requests"], 1)
        return {
            "cpu_ms": 1e3 * cpu / requests,
            "decisions/s": decisions["rps"],
            "rewards/s": rewards["rps"],
            "ratio": rewards["rps"] / max(decisions["rps"], 1e-9),
            "switches": switches / requests,
            "errors": decisions["errors"] + rewards["errors"],
            "load": os.getloadavg()[0],
        }

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", action="append", required=True, help="NAME=CHECKOUT (twice or more)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warm-up", type=int, default=1, help="unmeasured rounds first (kernels, caches)")
    args = parser.parse_args()
    named = [tuple(side.split("=", 1)) for side in args.side]
    print(f"load average before {os.getloadavg()[0]:.2f}; {args.rounds} rounds of {args.seconds} s, interleaved")
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "bench.lua"
        script.write_text(WRK_SCRIPT)
        sides = [Side(name, root, Path(folder)) for name, root in named]
        results: dict[str, list[dict]] = {side.name: [] for side in sides}
        try:
            for _ in range(args.warm_up):
                for side in sides:
                    side.mixed(args.seconds, args.connections, Path(folder), script)
            for index in range(args.rounds):
                for side in sides if index % 2 == 0 else sides[::-1]:
                    results[side.name].append(side.mixed(args.seconds, args.connections, Path(folder), script))
        finally:
            for side in sides:
                side.stop()
    print(
        f"{'side':<10}{'server CPU ms/req':>26}{'decisions/s':>22}{'rewards/s':>22}{'rewards/decisions':>24}"
        f"{'switches/req':>14}{'errors':>8}  load average per round"
    )
    for side in sides:
        rows = results[side.name]

        def spread(key: str, spec: str, rows: list[dict] = rows) -> str:
            values = [row[key] for row in rows]
            return f"{statistics.median(values):{spec}} [{min(values):{spec}}-{max(values):{spec}}]"

        print(
            f"{side.name:<10}{spread('cpu_ms', '.4f'):>26}{spread('decisions/s', '.0f'):>22}"
            f"{spread('rewards/s', '.0f'):>22}{spread('ratio', '.2f'):>24}"
            f"{statistics.median(row['switches'] for row in rows):>14.2f}{sum(row['errors'] for row in rows):>8d}  "
            + ", ".join(f"{row['load']:.1f}" for row in rows)
        )
    for side in sides:
        print(f"{side.name}: {side.root}")


if __name__ == "__main__":
    main()

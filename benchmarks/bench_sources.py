"""Reward-source refresh: time from the reward service's change to the served distribution.

The reference reward service (``examples/reward_source.py``) and ``banditkit serve`` run as processes. An
experiment (Thompson sampling, K arms) takes its parameters from the source every ``refresh_s``. Each round
appends outcomes to the source's CSV at a random phase of the polling period and times, from the file's
replacement, until ``GET …/stats`` serves the exact Thompson distribution of the new Beta parameters (read
every 5 ms). A decision served then carries that distribution's propensity.

The time is at most ``refresh_s`` plus one poll (waiting for the next poll: the poller sleeps ``refresh_s``
after each poll ends) plus the poll (the GET, the checks, the model change written) plus the distribution
computed for the new version; ``max - refresh_s`` in the table bounds the latter two.

    python benchmarks/bench_sources.py [--rounds 20] [--refresh 0.25 1.0] [--stores sqlite redis] [--arms 10]
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]

from banditkit.policies.thompson import beta_max_probabilities  # noqa: E402
from banditkit.service import Settings  # noqa: E402
from banditkit.service.runner import ServiceProcess, free_port  # noqa: E402

EXAMPLE = HERE.parent / "examples" / "reward_source.py"


def expected(rows: list[tuple[str, int]], arms: list[str]) -> np.ndarray:
    alpha = np.array([[1.0 + sum(r for a, r in rows if a == arm) for arm in arms]])
    beta = np.array([[1.0 + sum(1 - r for a, r in rows if a == arm) for arm in arms]])
    return beta_max_probabilities(alpha, beta, np.ones_like(alpha, dtype=bool))[0]


def write(path: Path, rows: list[tuple[str, int]]) -> None:
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w", newline="") as file:
        csv.writer(file).writerows(rows)
    temporary.replace(path)


def served(http: httpx.Client, arms: list[str]) -> np.ndarray:
    rows = {row["arm"]: row["probability"] for row in http.get("/v1/experiments/hero/stats").json()["arms"]}
    return np.array([rows[arm] for arm in arms])


def measure(store: str, refresh_s: float, rounds: int, n_arms: int, folder: Path) -> list[float]:
    arms = [f"arm{i}" for i in range(n_arms)]
    draw = random.Random(7)
    rows = [(arm, draw.random() < 0.3) for arm in arms for _ in range(5)]
    rows = [(arm, int(success)) for arm, success in rows]
    path = folder / f"outcomes-{uuid.uuid4().hex[:8]}.csv"
    write(path, rows)
    port = free_port()
    source = subprocess.Popen(
        [sys.executable, str(EXAMPLE), str(path), "--port", str(port), "--arms", ",".join(arms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert source.stdout is not None and source.stdout.readline().startswith("serving")
    service = ServiceProcess(
        Settings(store=store, port=0, admin_token=None, client_tokens=(), model_poll_s=0.01, spool_dir=folder)
    ).start()
    times = []
    try:
        with httpx.Client(base_url=service.base_url, timeout=30.0) as http:
            spec = {"url": f"http://127.0.0.1:{port}/", "refresh_s": refresh_s, "timeout_s": 2.0}
            answer = http.post("/v1/experiments", json={"name": "hero", "arms": arms, "source": spec})
            assert answer.status_code == 201, answer.text
            _wait(http, arms, expected(rows, arms), 30.0)
            for _ in range(rounds):
                time.sleep(draw.uniform(0.0, refresh_s))  # a random phase of the polling period
                rows = [*rows, (draw.choice(arms), 1), (draw.choice(arms), 1)]
                target = expected(rows, arms)
                started = time.perf_counter()
                write(path, rows)
                _wait(http, arms, target, refresh_s * 4 + 10.0)
                times.append(time.perf_counter() - started)
    finally:
        service.stop()
        source.kill()
        source.wait()
    return times


def _wait(http: httpx.Client, arms: list[str], target: np.ndarray, timeout_s: float) -> None:
    deadline = time.perf_counter() + timeout_s
    while not np.allclose(served(http, arms), target, rtol=0, atol=1e-12):
        if time.perf_counter() > deadline:
            raise TimeoutError("the served distribution did not reach the source's")
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--refresh", type=float, nargs="+", default=[0.25, 1.0])
    parser.add_argument("--stores", nargs="+", default=["sqlite", "redis"])
    parser.add_argument("--arms", type=int, default=10)
    options = parser.parse_args()
    print("| store | refresh_s | changes | median | mean | p95 | max | max - refresh_s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for name in options.stores:
            for refresh_s in options.refresh:
                store = (
                    f"sqlite:///{folder}/bench-{uuid.uuid4().hex[:8]}.db"
                    if name == "sqlite"
                    else f"redis://127.0.0.1:6379/0?prefix=bench-sources-{uuid.uuid4().hex[:8]}"
                )
                times = measure(store, refresh_s, options.rounds, options.arms, Path(folder))
                if name == "redis":
                    _clean(store)
                ordered = sorted(times)
                p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
                print(
                    f"| {name} | {refresh_s:g} | {len(times)} | {statistics.median(times) * 1000:.0f} ms "
                    f"| {statistics.mean(times) * 1000:.0f} ms | {p95 * 1000:.0f} ms | {max(times) * 1000:.0f} ms "
                    f"| {(max(times) - refresh_s) * 1000:.0f} ms |",
                    flush=True,
                )


def _clean(store: str) -> None:
    import redis

    prefix = store.rsplit("prefix=", 1)[1]
    with redis.Redis(host="127.0.0.1", port=6379) as client:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)


if __name__ == "__main__":
    main()

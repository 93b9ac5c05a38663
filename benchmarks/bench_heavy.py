"""One heavy experiment beside a small one: what a large model state costs, and whom it stalls.

    python benchmarks/bench_heavy.py [--seconds 15] [--store sqlite|memory|redis] [--features 512] [--arms 2]
    python benchmarks/bench_heavy.py --sizes 64x2,256x2,512x2,512x4,1024x2 [--store sqlite]

The first form serves a LinUCB experiment of ``--features`` x ``--arms`` (its
state holds two d x d matrices per arm) and a small Thompson-sampling one from
a real ``banditkit serve`` process, and measures the small experiment's
decision latency alone, then while one client (in a process of its own) sends
the heavy experiment decisions and rewards as fast as they are answered. It prints, per phase, the
heavy experiment's reward latency, the small experiment's decision latency
(p50, p99, max), the largest SQLite WAL file and the server's resident memory
(largest sample, and the peak the kernel reports). With ``--store redis`` a
``banditkit learn`` process learns beside the server (on the Redis at
127.0.0.1:6379, under a key prefix of its own, deleted at the end).

The second form measures, for each ``FEATURESxARMS``, the state's size and the
median latency of a decision and of a reward (a decision, then its reward),
one size after the other on one server: the figures behind the largest
supported size (``docs/service.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from banditkit.service import Settings  # noqa: E402  (after sys.path: the checkout's banditkit)
from banditkit.service.runner import ServiceProcess  # noqa: E402


def resident_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory (``VmRSS``) or its peak (``VmHWM``), in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def quantiles(samples: list[float]) -> tuple[float, float, float]:
    """(p50, p99, max) of latencies in seconds, in milliseconds."""
    if not samples:
        return (float("nan"),) * 3
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return 1e3 * statistics.median(ordered), 1e3 * p99, 1e3 * ordered[-1]


def small_decisions(base_url: str, stop: threading.Event, latencies: list[float]) -> None:
    """Decisions of the small experiment, one after the other, until ``stop``."""
    with httpx.Client(base_url=base_url, timeout=60.0) as client:
        while not stop.is_set():
            started = time.perf_counter()
            response = client.post("/v1/experiments/small/decisions", json={})
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()


def heavy_rewards(base_url: str, features: int, seconds: float) -> list[float]:
    """A decision of the heavy experiment, then its reward, for ``seconds``; the rewards' latencies."""
    rng = np.random.default_rng(0)
    latencies = []
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=base_url, timeout=120.0) as client:
        while time.monotonic() < deadline:
            context = rng.standard_normal(features).round(6).tolist()
            decision = client.post("/v1/experiments/heavy/decisions", json={"context": context})
            decision.raise_for_status()
            body = {"decision_id": decision.json()["decision_id"], "value": float(rng.random() < 0.3)}
            started = time.perf_counter()
            reward = client.post("/v1/experiments/heavy/rewards", json=body)
            latencies.append(time.perf_counter() - started)
            reward.raise_for_status()
    return latencies


def heavy_process(base_url: str, features: int, seconds: float) -> subprocess.Popen:
    """:func:`heavy_rewards` in a process of its own (its work would delay the measuring thread's)."""
    return subprocess.Popen(
        [sys.executable, __file__, "--heavy-client", base_url, "--features", str(features), "--seconds", str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )


class Sampler(threading.Thread):
    """The largest WAL file size and resident memory seen, sampled every 0.1 s."""

    def __init__(self, pid: int, wal: Path | None) -> None:
        super().__init__(daemon=True)
        self.pid, self.wal = pid, wal
        self.wal_mb = self.rss_mb = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            self.rss_mb = max(self.rss_mb, resident_mb(self.pid))
            if self.wal is not None and self.wal.exists():
                self.wal_mb = max(self.wal_mb, self.wal.stat().st_size / 1e6)


def store_url(kind: str, folder: Path, prefix: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{folder / 'heavy.db'}"
    if kind == "memory":
        return "memory://"
    return f"redis://127.0.0.1:6379/0?prefix={prefix}"


def start_learner(url: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "banditkit.cli", "learn", "--store", url],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def forget_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=0)
    keys = list(client.scan_iter(f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def create(client: httpx.Client, name: str, arms: int, features: int | None) -> httpx.Response:
    body: dict = {"name": name, "arms": [f"arm{i}" for i in range(arms)], "attribution_window_s": 3600.0}
    if features is not None:
        body.update(policy={"name": "linucb", "params": {"alpha": 1.0}}, n_features=features)
    return client.post("/v1/experiments", json=body)


def stall(args: argparse.Namespace, folder: Path, prefix: str) -> None:
    url = store_url(args.store, folder, prefix)
    learner = start_learner(url) if args.store == "redis" else None
    try:
        with ServiceProcess(Settings(store=url, port=0, admin_token=None, client_tokens=())) as server:
            assert server.process is not None  # started by the with statement
            pid = server.process.pid
            with httpx.Client(base_url=server.base_url, timeout=60.0) as client:
                create(client, "small", 3, None).raise_for_status()
                created = create(client, "heavy", args.arms, args.features)
                if created.status_code != 201:
                    print(f"the heavy experiment was refused: {created.status_code} {created.text}")
                    return
            wal = folder / "heavy.db-wal" if args.store == "sqlite" else None
            rows = []
            for phase, heavy in (("small alone", False), ("small + heavy rewards", True)):
                sampler = Sampler(pid, wal)
                sampler.start()
                stop = threading.Event()
                small: list[float] = []
                rewards: list[float] = []
                thread = threading.Thread(target=small_decisions, args=(server.base_url, stop, small))
                heavy_client = heavy_process(server.base_url, args.features, args.seconds) if heavy else None
                thread.start()
                time.sleep(args.seconds if heavy else max(3.0, args.seconds / 3))
                stop.set()
                thread.join()
                if heavy_client is not None:
                    rewards = json.loads(heavy_client.communicate()[0])
                sampler.stop.set()
                sampler.join()
                rows.append((phase, rewards, small, sampler.wal_mb, sampler.rss_mb))
            peak = resident_mb(pid, "VmHWM")
    finally:
        if learner is not None:
            learner.terminate()
            learner.wait(30)
    state_mb = 8 * args.arms * (2 * args.features**2 + 2 * args.features) / 1e6
    print(
        f"store {args.store}, heavy LinUCB {args.features} features x {args.arms} arms "
        f"(policy state {state_mb:.1f} MB as numbers), {args.seconds:g} s with rewards"
    )
    header = (
        f"{'phase':<24}{'rewards':>8}{'reward p50':>11}{'p99':>9}{'max':>9}"
        f"{'decisions':>10}{'small p50':>10}{'p99':>8}{'max':>9}{'WAL MB':>8}{'RSS MB':>8}"
    )
    print(header)
    for phase, rewards, small, wal_mb, rss_mb in rows:
        r50, r99, rmax = quantiles(rewards)
        s50, s99, smax = quantiles(small)
        print(
            f"{phase:<24}{len(rewards):>8}{r50:>11.1f}{r99:>9.1f}{rmax:>9.1f}"
            f"{len(small):>10}{s50:>10.1f}{s99:>8.1f}{smax:>9.1f}{wal_mb:>8.1f}{rss_mb:>8.0f}"
        )
    print(f"server peak resident memory (VmHWM): {peak:.0f} MB; latencies in ms")


def sizes(args: argparse.Namespace, folder: Path, prefix: str) -> None:
    url = store_url(args.store, folder, prefix)
    learner = start_learner(url) if args.store == "redis" else None
    rng = np.random.default_rng(0)
    print(f"store {args.store}: LinUCB per size, medians of {args.repeats} calls, latencies in ms")
    print(f"{'features x arms':>16}{'state MB':>10}{'create':>9}{'decision':>10}{'reward':>9}{'RSS MB':>8}")
    try:
        with (
            ServiceProcess(Settings(store=url, port=0, admin_token=None, client_tokens=())) as server,
            httpx.Client(base_url=server.base_url, timeout=300.0) as client,
        ):
            assert server.process is not None  # started by the with statement
            for size in args.sizes.split(","):
                features, arms = (int(part) for part in size.split("x"))
                name = f"size-{features}x{arms}"
                started = time.perf_counter()
                created = create(client, name, arms, features)
                create_ms = 1e3 * (time.perf_counter() - started)
                state_mb = 8 * arms * (2 * features**2 + 2 * features) / 1e6
                if created.status_code != 201:
                    print(f"{size:>16}{state_mb:>10.1f}  refused: {created.json()['detail']}")
                    continue
                decisions, rewards = [], []
                for _ in range(args.repeats):
                    context = rng.standard_normal(features).round(6).tolist()
                    begun = time.perf_counter()
                    answer = client.post(f"/v1/experiments/{name}/decisions", json={"context": context})
                    decisions.append(time.perf_counter() - begun)
                    answer.raise_for_status()
                    begun = time.perf_counter()
                    client.post(
                        f"/v1/experiments/{name}/rewards",
                        json={"decision_id": answer.json()["decision_id"], "value": 1.0},
                    ).raise_for_status()
                    rewards.append(time.perf_counter() - begun)
                print(
                    f"{size:>16}{state_mb:>10.1f}{create_ms:>9.0f}{1e3 * statistics.median(decisions):>10.1f}"
                    f"{1e3 * statistics.median(rewards):>9.1f}{resident_mb(server.process.pid):>8.0f}"
                )
    finally:
        if learner is not None:
            learner.terminate()
            learner.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["sqlite", "memory", "redis"], default="sqlite")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--arms", type=int, default=2)
    parser.add_argument("--sizes", help="FEATURESxARMS,... : measure each size instead")
    parser.add_argument("--repeats", type=int, default=30, help="calls per size with --sizes")
    parser.add_argument("--heavy-client", metavar="URL", help=argparse.SUPPRESS)  # the heavy client's process
    args = parser.parse_args()
    if args.heavy_client:
        print(json.dumps(heavy_rewards(args.heavy_client, args.features, args.seconds)))
        return
    prefix = f"bench-heavy-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as directory:
        try:
            (sizes if args.sizes else stall)(args, Path(directory), prefix)
        finally:
            if args.store == "redis":
                forget_prefix(prefix)


if __name__ == "__main__":
    main()

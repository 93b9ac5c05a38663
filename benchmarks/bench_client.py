"""The Python client: local decisions per second, model refresh cost, remote decisions through the client vs raw httpx.

One served process (``banditkit serve``, SQLite store, loopback) with a Thompson-sampling experiment of 10 arms
trained on a few hundred rewards. Measured in this process, one thread:

- local decisions per second (``client.local(name).decide(unit=...)``, and without a unit), the decisions
  queued for the log included; then shipping them (``POST …/decisions/log``, 1,000 a call) per second;
- model refresh: an unchanged model (304 on the ETag), a changed one (200, rebuilt) and the first decision
  after it (the distribution computed again);
- remote decisions, one at a time on one keep-alive connection: ``Client.decide`` vs raw ``httpx.Client.post``
  with the same body (a ``request_id``), and raw without a ``request_id`` (what the service's deduplication
  costs), rounds interleaved; the client's overhead is its median over raw's with the same body.

    python benchmarks/bench_client.py [--local 200000] [--remote 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from banditkit.client import Client, Retry  # noqa: E402
from banditkit.service import Settings  # noqa: E402
from banditkit.service.runner import ServiceProcess  # noqa: E402

ARMS = [f"arm{i}" for i in range(10)]


def _trained(base_url: str, rewards: int) -> None:
    body = {"name": "bench", "arms": ARMS, "policy": {"name": "thompson"}}
    httpx.post(f"{base_url}/v1/experiments", json=body).raise_for_status()
    with Client(base_url) as client:
        decisions = client.decide_batch("bench", [{"unit": f"t{i}"} for i in range(rewards)])
        rates = {arm: (i + 1) / 12 for i, arm in enumerate(ARMS)}
        client.reward_batch(
            "bench", [(d.decision_id, float(hash(d.decision_id) % 1000 < rates[d.arm] * 1000)) for d in decisions]
        )


def local_rows(base_url: str, n: int) -> list[tuple[str, float, str]]:
    rows = []
    with Client(base_url) as client:
        local = client.local("bench", ship_interval_s=3600, ship_size=10**9)  # shipped after, measured apart
        units = [f"u{i}" for i in range(n)]
        local.decide(unit="warm")
        started = time.perf_counter()
        for unit in units:
            local.decide(unit=unit)
        elapsed = time.perf_counter() - started
        rows.append(("local decisions, with a unit", n / elapsed, f"{elapsed / n * 1e6:.2f} us each"))
        started = time.perf_counter()
        for _ in range(n):
            local.decide()
        elapsed = time.perf_counter() - started
        rows.append(("local decisions, no unit", n / elapsed, f"{elapsed / n * 1e6:.2f} us each"))
        queued = local.log.pending
        started = time.perf_counter()
        assert local.flush()
        elapsed = time.perf_counter() - started
        rows.append(("shipping them to decisions/log", queued / elapsed, f"{queued} decisions in {elapsed:.2f} s"))
        deciding = 2 / sum(1 / rate for _, rate, _ in rows[:2])
        rows.append(
            ("decided and shipped, end to end", 1 / (1 / deciding + 1 / (queued / elapsed)), "both costs added")
        )

        timings = []
        for _ in range(50):
            started = time.perf_counter()
            assert not local.refresh()
            timings.append(time.perf_counter() - started)
        rows.append(
            (
                "refresh, model unchanged (304)",
                1 / statistics.median(timings),
                f"{statistics.median(timings) * 1e3:.2f} ms",
            )
        )
        changed, first = [], []
        for i in range(10):
            decision = client.decide("bench", unit=f"r{i}")
            client.reward(decision, 1.0)
            started = time.perf_counter()
            assert local.refresh()
            changed.append(time.perf_counter() - started)
            started = time.perf_counter()
            local.decide(unit="x")
            first.append(time.perf_counter() - started)
        rows.append(
            (
                "refresh, model changed (200, rebuilt)",
                1 / statistics.median(changed),
                f"{statistics.median(changed) * 1e3:.2f} ms",
            )
        )
        rows.append(
            ("first decision after a refresh", 1 / statistics.median(first), f"{statistics.median(first) * 1e3:.2f} ms")
        )
        local.close()
    return rows


def remote_rows(base_url: str, n: int, rounds: int) -> list[tuple[str, float, str]]:
    path = "/v1/experiments/bench/decisions"
    client = Client(base_url, retry=Retry(attempts=1))
    raw = httpx.Client(base_url=base_url)
    client.decide("bench")
    raw.post(path, json={"unit": "warm"}).raise_for_status()

    def through_client() -> float:
        started = time.perf_counter()
        for i in range(n):
            client.decide("bench", unit=f"c{i}")
        return (time.perf_counter() - started) / n

    def raw_same_body() -> float:
        started = time.perf_counter()
        for i in range(n):
            raw.post(path, json={"request_id": uuid.uuid4().hex, "unit": f"h{i}"}).json()
        return (time.perf_counter() - started) / n

    def raw_no_request_id() -> float:
        started = time.perf_counter()
        for i in range(n):
            raw.post(path, json={"unit": f"n{i}"}).json()
        return (time.perf_counter() - started) / n

    times: dict[str, list[float]] = {"client": [], "raw": [], "plain": []}
    for _ in range(rounds):
        times["client"].append(through_client())
        times["raw"].append(raw_same_body())
        times["plain"].append(raw_no_request_id())
    client.close()
    raw.close()
    median = {key: statistics.median(value) for key, value in times.items()}
    overhead = median["client"] / median["raw"] - 1
    dedupe = median["raw"] / median["plain"] - 1
    return [
        (
            "remote: Client.decide",
            1 / median["client"],
            f"{median['client'] * 1e3:.3f} ms; overhead {overhead:+.1%} vs raw",
        ),
        ("remote: raw httpx, same body", 1 / median["raw"], f"{median['raw'] * 1e3:.3f} ms"),
        (
            "remote: raw httpx, no request_id",
            1 / median["plain"],
            f"{median['plain'] * 1e3:.3f} ms; request_id costs {dedupe:+.1%}",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", type=int, default=200_000, help="local decisions per row")
    parser.add_argument("--remote", type=int, default=2000, help="remote decisions per round and kind")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rewards", type=int, default=500, help="rewards the experiment is trained on first")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            store=f"sqlite:///{folder}/bench.db",
            port=0,
            admin_token=None,
            client_tokens=(),
            spool_dir=Path(folder) / "spool",
        )
        with ServiceProcess(settings) as process:
            _trained(process.base_url, args.rewards)
            rows = local_rows(process.base_url, args.local) + remote_rows(process.base_url, args.remote, args.rounds)
    print("Thompson sampling, K=10, SQLite store, one uvicorn worker on loopback, one client thread")
    print(f"{'what':42} {'per second':>12}  detail")
    for what, rate, detail in rows:
        print(f"{what:42} {rate:12,.0f}  {detail}")


if __name__ == "__main__":
    main()

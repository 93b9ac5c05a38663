"""From serving to a decision about the next policy, end to end, in well under a minute.

1. Start the decision service (`banditkit serve`) on a free port with a temporary SQLite store.
2. Create an experiment: three banner layouts served by linear Thompson sampling on the
   visitor's device (it randomises, and logs each decision's propensity, so the log supports
   evaluating other policies).
3. Simulated visitors, each on a phone or a desktop, get a layout through `banditkit.client` and
   click with a rate that depends on layout and device; every outcome goes back as a reward.
4. Archive the decision log to Parquet (the service's log export, the columns `banditkit archive`
   writes for a Redis store), as experiment=E/date=D/part-0.parquet.
5. Evaluate three candidate policies on the archive with `bk.ope.evaluate(log, {...})`: one
   layout for everybody, a layout per device, and a uniform mix.
6. Write the HTML report, print the recommendation, stop the service.

    PYTHONPATH=. python examples/end_to_end.py [OUT_DIR]      # default ./banditkit-end-to-end

Needs the service and io extras (`pip install banditkit[service,io,viz]`).
"""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

import banditkit as bk
from banditkit.client import Client

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "banner"
LAYOUTS = ("grid", "hero", "list")
#: Click rate of each layout on a phone (context [1, 0]) and on a desktop (context [0, 1]).
CLICK_RATES = {"phone": (0.04, 0.10, 0.16), "desktop": (0.14, 0.10, 0.05)}
VISITORS = 3000
BATCH = 250


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_service(store: str, port: int) -> subprocess.Popen:
    """`banditkit serve` in a child process; returns once GET /v1/health answers."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for name in ("BANDITKIT_ADMIN_TOKEN", "BANDITKIT_CLIENT_TOKENS"):  # an open service on 127.0.0.1 only
        env.pop(name, None)
    command = [sys.executable, "-m", "banditkit.cli", "serve", "--store", store, "--port", str(port)]
    server = subprocess.Popen([*command, "--log-level", "warning"], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the service exited: {server.stderr.read().decode() if server.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.terminate()
    raise RuntimeError(f"the service did not start on port {port}")


def simulate(client: Client, rng: np.random.Generator) -> int:
    """Visitors in batches: a decision per visitor, a click drawn from its device's rates, the reward sent back."""
    clicks = 0
    for _ in range(VISITORS // BATCH):
        devices = rng.random(BATCH) < 0.5  # True: phone
        requests = [{"unit": f"visitor-{rng.integers(1 << 30)}", "context": [float(p), float(not p)]} for p in devices]
        decisions = client.decide_batch(EXPERIMENT, requests)
        rewards = []
        for decision, phone in zip(decisions, devices, strict=True):
            rate = CLICK_RATES["phone" if phone else "desktop"][LAYOUTS.index(decision.arm)]
            click = float(rng.random() < rate)
            clicks += int(click)
            rewards.append((decision.decision_id, click))
        client.reward_batch(EXPERIMENT, rewards)
    return clicks


def archive(base_url: str, folder: Path) -> Path:
    """The experiment's decision log as Parquet, in the archive's layout (one partition for today)."""
    response = httpx.get(f"{base_url}/v1/experiments/{EXPERIMENT}/log", params={"format": "parquet"}, timeout=60)
    response.raise_for_status()
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    partition = folder / f"experiment={EXPERIMENT}" / f"date={today}"
    partition.mkdir(parents=True, exist_ok=True)
    (partition / "part-0.parquet").write_bytes(response.content)
    return folder / f"experiment={EXPERIMENT}"


def candidates(arm_names: tuple[str, ...]) -> dict[str, object]:
    """Three policies to weigh, as distributions over the log's arms (columns in ``arm_names`` order)."""
    column = {name: k for k, name in enumerate(arm_names)}

    def one_hot(layout: str) -> np.ndarray:
        row = np.zeros((1, len(arm_names)))
        row[0, column[layout]] = 1.0
        return row

    def by_device(contexts: np.ndarray, n_rows: int) -> np.ndarray:
        """'list' on a phone, 'grid' on a desktop: a callable of the contexts (n, 2) giving an arm per row."""
        return np.where(contexts[:, 0] > 0.5, column["list"], column["grid"])

    return {"hero for all": one_hot("hero"), "by device": by_device, "uniform": np.full((1, len(arm_names)), 1 / 3)}


def true_values() -> dict[str, float]:
    """Each candidate's click rate, known to the simulation (half the visitors on a phone)."""
    phone, desktop = (np.array(CLICK_RATES[device]) for device in ("phone", "desktop"))
    hero, grid, listing = (LAYOUTS.index(name) for name in ("hero", "grid", "list"))
    return {
        "hero for all": (phone[hero] + desktop[hero]) / 2,
        "by device": (phone[listing] + desktop[grid]) / 2,
        "uniform": (phone.mean() + desktop.mean()) / 2,
    }


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "banditkit-end-to-end").resolve()
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="banditkit-e2e-") as folder:
        port = free_port()
        server = start_service(f"sqlite:///{folder}/decisions.db", port)
        base_url = f"http://127.0.0.1:{port}"
        try:
            httpx.post(
                f"{base_url}/v1/experiments",
                json={
                    "name": EXPERIMENT,
                    "arms": list(LAYOUTS),
                    "policy": {"name": "lints", "params": {}},
                    "n_features": 2,
                    "seed": 1,
                },
                timeout=30,
            ).raise_for_status()
            with Client(base_url) as client:
                clicks = simulate(client, rng)
            print(f"served {VISITORS:,} decisions over HTTP, {clicks} clicks")
            log_path = archive(base_url, out / "archive")
        finally:
            server.terminate()  # SIGTERM: the service closes its store and exits
            server.wait(timeout=30)
    log = bk.ope.load_log(log_path)
    print(f"archived {log.n_rows:,} decisions to {log_path} (mean reward {log.rewards.mean():.4f})")
    comparison = bk.ope.evaluate(log, candidates(log.arm_names), ["ips", "snips", "dr"], n_bootstrap=500, rng=0)
    truth = true_values()
    for name in comparison:
        dr = comparison[name]["dr"]
        print(f"  {name:>12}: DR {dr.value:.4f} [{dr.low:.4f}, {dr.high:.4f}]; true value {truth[name]:.4f}")
    report = out / "report.html"
    comparison.to_html(report)
    print(f"report: {report}")
    print(comparison.recommendation)
    print(f"done in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

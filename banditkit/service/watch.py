"""``banditkit watch URL``: the supervisor's checks run out of process, through the HTTP API.

The same checks as the service's own supervisor (:mod:`.supervisor`), read from the API: the experiments
and their ``supervisor`` blocks (``GET /v1/experiments``), ``/stats``, ``/events`` and the decision log
(``/log``, CSV, the rows already settled skipped), and written through the admin endpoint
``POST /v1/experiments/{name}/alerts``, which applies the remediation once whoever raises it. Store
latency is the time of the ``/stats`` call, so it includes the network.
"""

from __future__ import annotations

import csv
import itertools
import time
from collections.abc import Iterator

import httpx

from .._csv import unescape_cell
from ..policies import make_policy
from .alerts import open_alerts
from .schemas import StatsOut, SupervisorSpec
from .supervisor import LogFollower, level_alerts, transitions


class Watcher:
    """Checks every experiment of the service at ``client``'s base URL; keeps what it read of each log.

    ``client`` carries the base URL and the admin token (an ``httpx.Client``).
    """

    def __init__(self, client: httpx.Client, interval_s: float) -> None:
        self.client = client
        self.interval_s = interval_s
        self.followers: dict[str, LogFollower] = {}

    def experiments(self) -> Iterator[dict]:
        """Every experiment the service serves, a page at a time."""
        cursor = None
        while True:
            page = self._get("/v1/experiments", params={"limit": 1000, **({"cursor": cursor} if cursor else {})})
            yield from page["experiments"]
            cursor = page["next_cursor"]
            if cursor is None:
                return

    def check_all(self) -> list[dict]:
        """Check every experiment once; the alert events written."""
        return [event for experiment in list(self.experiments()) for event in self.check(experiment)]

    def check(self, experiment: dict) -> list[dict]:
        """Check one experiment (as ``GET /v1/experiments/{name}`` describes it); the alert events written."""
        name = experiment["name"]
        spec = SupervisorSpec.model_validate(experiment.get("supervisor") or {})
        follower = self.followers.get(name)
        if follower is None or follower.spec != spec:
            follower = self.followers[name] = LogFollower(spec)
        now = time.time()
        started = time.perf_counter()
        stats = StatsOut.model_validate(self._get(f"/v1/experiments/{name}/stats"))
        latency = time.perf_counter() - started
        opened = open_alerts(self._get(f"/v1/experiments/{name}/events"))
        bounds = make_policy(experiment["policy"]).reward_bounds
        settled_before = now - experiment["attribution_window_s"] - 2 * self.interval_s
        with self.client.stream("GET", f"/v1/experiments/{name}/log", params={"format": "csv"}) as response:
            _raise_for(response)
            rows = _log_rows(_lines(response.iter_text()), follower.position)
            found, decisions, fallbacks = follower.feed(rows, now, settled_before, bounds)
        found += level_alerts(spec, stats, decisions, fallbacks, latency)
        written = []
        for alert in transitions(found, opened, {row.arm for row in stats.arms if row.active}):
            response = self.client.post(f"/v1/experiments/{name}/alerts", json=alert.model_dump(mode="json"))
            _raise_for(response)
            if response.json()["written"]:
                written.append(response.json()["event"])
        return written

    def _get(self, path: str, **kwargs):
        response = self.client.get(path, **kwargs)
        _raise_for(response)
        return response.json()


class WatchError(Exception):
    """The service answered a call of the watcher with an error (the message names the call and the answer)."""


def _raise_for(response: httpx.Response) -> None:
    if response.status_code >= 400:
        response.read()
        raise WatchError(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text}"
        )


def _lines(chunks: Iterator[str]) -> Iterator[str]:
    """Text chunks as lines with their ends kept: what :func:`csv.reader` needs for a quoted cell's line break."""
    rest = ""
    for chunk in chunks:
        lines = (rest + chunk).splitlines(keepends=True)
        rest = lines.pop() if lines and not lines[-1].endswith("\n") else ""  # a CRLF may straddle two chunks
        yield from lines
    if rest:
        yield rest


def _log_rows(lines: Iterator[str], skip: int) -> Iterator[tuple]:
    """The CSV log's rows after the first ``skip``, as the columns the checks read (see :data:`.supervisor.ID`)."""
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        return
    column = {name: index for index, name in enumerate(header)}
    for cells in itertools.islice(reader, skip, None):
        reward = cells[column["reward"]]
        yield (
            cells[column["decision_id"]],
            float(cells[column["time"]]),
            None,
            None,
            None,
            unescape_cell(cells[column["arm"]]),
            None,
            None,
            None,
            cells[column["fallback"]] in ("1", "True", "true"),
            None if reward == "" else float(reward),
        )

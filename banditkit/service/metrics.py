"""Prometheus metrics (``GET /metrics``): plain numbers counted on the hot paths, turned into metric families at scrape.

A decision costs the server about 0.2 ms of CPU, so nothing on its path calls
``prometheus_client``: requests, decisions, fallbacks, rewards and store
latencies are added to dicts of plain numbers (:class:`Counts`), once per
request or per batch, and the model's gauges (policy version, selection
share, entropy, exploration share, reward rate) are read off the served
experiments when Prometheus asks. A scrape turns all of it into
``prometheus_client`` metric families and writes them in the text format
(:func:`exposition`), off the event loop.

Several worker processes (``banditkit serve --workers N``) each count their own
requests. Each writes its :class:`Counts` to a small JSON file in
``metrics_dir`` once a second when they changed, and the worker that answers a
scrape adds the other workers' files to its own live counts. The gauges need no
summing: every worker serves the same stored models. Counts are exact up to the
last second of the other workers; a worker that is restarted leaves its file,
so counters never go down. docs/monitoring.md lists every metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from .experiment import Experiment
from .stores.base import CURRENT_POLICY, DecisionRecord, LoopHealth, Store, StoreUnavailableError

logger = logging.getLogger("banditkit.service")

#: The text format's media type, as Prometheus asks for it.
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: Upper bounds of the latency histograms' buckets in seconds (``+Inf`` follows): a decision takes about a
#: millisecond, a group commit with an fsync a few.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: The ``arm`` label of the arms beyond ``metrics_max_arms`` (their numbers summed).
OTHER_ARMS = "__other__"
#: The ``route`` label of a request that matched no route (an unknown path), or that was refused before routing.
UNMATCHED_ROUTE = "unmatched"
#: Why a decision served the default arm: the policy raised, the store could not log it, the abort rule
#: fired, no allowed arm was active.
FALLBACK_REASONS = ("policy_error", "store_unavailable", "aborted", "no_active_arm")
#: What became of a reward: recorded (``applied``; ``ignored`` when its arm was removed since the decision),
#: a retry with the same value (``repeated``), 409 (``conflicting``), 410 (``late``), the default reward at
#: window close (``defaulted``), 404 (``not_found``), 422 (``invalid``).
REWARD_OUTCOMES = ("applied", "ignored", "repeated", "conflicting", "late", "defaulted", "not_found", "invalid")
#: How often a worker writes its counts to ``metrics_dir`` (when they changed).
FLUSH_S = 1.0
_WORKER_FILE = "banditkit-worker-"


def new_histogram() -> list[float]:
    """Bucket counts (one per bound of :data:`BUCKETS`, then ``+Inf``) followed by the sum of the observations."""
    return [0.0] * (len(BUCKETS) + 2)


def observe(histogram: list[float], seconds: float) -> None:
    """Count one observation in its bucket (the first bound at or above it, as ``le`` means)."""
    histogram[bisect_left(BUCKETS, seconds)] += 1
    histogram[-1] += seconds


class Counts:
    """What one server process counted since it started, in dicts of plain numbers.

    ``requests`` maps (route, method, status) and ``store`` an operation to a histogram
    (:func:`new_histogram`); ``decisions`` maps experiment to arm to count, ``fallbacks`` experiment to
    reason, ``rewards`` experiment to outcome, ``alerts`` experiment to "kind/state" (an alert written as
    opened or resolved: once, by the process that wrote it), ``sources`` experiment to the outcome of each poll
    of its reward source (``sources.FETCH_OUTCOMES``), ``policies`` experiment to the serving policy
    ("current" or "candidate") of its decisions, ``candidates`` experiment to "event/reason" (a candidate rolled
    back, by the process that wrote it).
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], list[float]] = {}
        self.store: dict[str, list[float]] = {}
        self.decisions: dict[str, Counter[str]] = {}
        self.fallbacks: dict[str, Counter[str]] = {}
        self.rewards: dict[str, Counter[str]] = {}
        self.alerts: dict[str, Counter[str]] = {}
        self.sources: dict[str, Counter[str]] = {}
        self.policies: dict[str, Counter[str]] = {}
        self.candidates: dict[str, Counter[str]] = {}

    def to_json(self) -> dict:
        return {
            "requests": [[*key, values] for key, values in self.requests.items()],
            "store": self.store,
            "decisions": self.decisions,
            "fallbacks": self.fallbacks,
            "rewards": self.rewards,
            "alerts": self.alerts,
            "sources": self.sources,
            "policies": self.policies,
            "candidates": self.candidates,
        }

    @classmethod
    def from_json(cls, data: dict) -> Counts:
        counts = cls()
        counts.requests = {(route, method, status): values for route, method, status, values in data["requests"]}
        counts.store = dict(data["store"])
        for name in ("decisions", "fallbacks", "rewards", "alerts", "sources", "policies", "candidates"):
            setattr(counts, name, {key: Counter(value) for key, value in data.get(name, {}).items()})
        return counts

    def copy(self) -> Counts:
        """A deep copy (taken on the event loop, so that the scrape reads numbers nobody is changing)."""
        copied = Counts()
        copied.add(self)
        return copied

    def add(self, other: Counts) -> None:
        """Add ``other``'s counts to these (histograms bucket by bucket)."""
        for mine, theirs in ((self.requests, other.requests), (self.store, other.store)):
            for key, values in list(theirs.items()):
                total = mine.setdefault(key, new_histogram())  # type: ignore[arg-type]
                for index, value in enumerate(values):
                    total[index] += value
        for mine_by_experiment, theirs_by_experiment in (
            (self.decisions, other.decisions),
            (self.fallbacks, other.fallbacks),
            (self.rewards, other.rewards),
            (self.alerts, other.alerts),
            (self.sources, other.sources),
            (self.policies, other.policies),
            (self.candidates, other.candidates),
        ):
            for experiment, counter in list(theirs_by_experiment.items()):
                mine_by_experiment.setdefault(experiment, Counter()).update(dict(counter))


@dataclass(frozen=True)
class ExperimentView:
    """What the gauges of one experiment are computed from, read on the event loop.

    ``pulls`` and ``reward_sums`` are the reward ledger, shape (K,); ``served`` the arms and action
    probabilities last served to requests without ``allowed`` (None before the first such decision here).
    """

    name: str
    version: int
    arms: tuple[str, ...]
    pulls: np.ndarray
    reward_sums: np.ndarray
    served: tuple[tuple[str, ...], np.ndarray] | None


class Metrics:
    """The metrics of one server process: counted by the engine and the app, rendered by :meth:`scrape`.

    Parameters
    ----------
    max_arms : int
        Arms with a label of their own per experiment: the first ``max_arms`` by name; the others are
        summed under ``arm="__other__"`` (bounded label cardinality).
    folder : path, optional
        Where the workers of one server keep their counts (``metrics_dir``); None for a single process.
    """

    def __init__(self, max_arms: int = 20, folder: Path | None = None) -> None:
        self.max_arms = max_arms
        self.folder = folder
        self.counts = Counts()
        self.served: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
        self._path = None if folder is None else folder / f"{_WORKER_FILE}{os.getpid()}.json"
        self._changes = 0
        self._flushed = 0
        #: Seconds since each experiment's reward source last answered well (set by :mod:`.sources`).
        self.source_ages: Callable[[], dict[str, float]] | None = None

    # ---- counting (hot paths: plain dict and list operations) ------------------------------------
    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One HTTP request answered with ``status`` after ``seconds``."""
        self.answered((route, method, status), seconds)

    def answered(self, key: tuple[str, str, int], seconds: float) -> None:
        """:meth:`request` by its ``(route, method, status)`` key: the fast front keeps one per endpoint."""
        histogram = self.counts.requests.get(key)
        if histogram is None:
            histogram = self.counts.requests[key] = new_histogram()
        histogram[bisect_left(BUCKETS, seconds)] += 1  # observe(), inlined: once per request
        histogram[-1] += seconds
        self._changes += 1

    def store_latency(self, operation: str, seconds: float) -> None:
        """One store round trip (a batch of decisions logged, a batch of rewards committed) of ``seconds``."""
        histogram = self.counts.store.get(operation)
        if histogram is None:
            histogram = self.counts.store[operation] = new_histogram()
        observe(histogram, seconds)

    def decided(self, experiment: str, records: list[DecisionRecord], fallbacks: dict[str, int]) -> None:
        """Decisions answered (counted per arm), and how many of them fell back, by reason."""
        counter = self.counts.decisions.get(experiment)
        if counter is None:
            counter = self.counts.decisions[experiment] = Counter()
        if len(records) == 1:  # most calls (single decisions not coalesced): skip Counter.update's type checks
            counter[records[0].arm] += 1
        else:
            counter.update(record.arm for record in records)
        if fallbacks:
            self.counts.fallbacks.setdefault(experiment, Counter()).update(fallbacks)
        served = self.counts.policies.get(experiment)
        if served is None:
            served = self.counts.policies[experiment] = Counter()
        if len(records) == 1:
            served["current" if records[0].policy == CURRENT_POLICY else "candidate"] += 1
        else:
            served.update("current" if record.policy == CURRENT_POLICY else "candidate" for record in records)
        self._changes += 1

    def rewarded(self, experiment: str, outcomes: Iterable[str]) -> None:
        """Rewards handled, one outcome of :data:`REWARD_OUTCOMES` each."""
        counter = self.counts.rewards.get(experiment)
        if counter is None:
            counter = self.counts.rewards[experiment] = Counter()
        counter.update(outcomes)
        self._changes += 1

    def defaulted(self, experiment: str, count: int) -> None:
        """Default rewards applied at window close by this process."""
        if count:
            self.counts.rewards.setdefault(experiment, Counter())["defaulted"] += count
            self._changes += 1

    def candidate_event(self, experiment: str, event: str, reason: str) -> None:
        """A candidate of ``experiment`` rolled back (``event``), for ``reason``, by this process."""
        self.counts.candidates.setdefault(experiment, Counter())[f"{event}/{reason}"] += 1
        self._changes += 1

    def alerted(self, experiment: str, kind: str, state: str) -> None:
        """A supervisor alert of ``experiment`` written as ``state`` ("open" or "resolved")."""
        self.counts.alerts.setdefault(experiment, Counter())[f"{kind}/{state}"] += 1
        self._changes += 1

    def sourced(self, experiment: str, outcome: str) -> None:
        """One poll of ``experiment``'s reward source ended with ``outcome`` (``sources.FETCH_OUTCOMES``)."""
        self.counts.sources.setdefault(experiment, Counter())[outcome] += 1
        self._changes += 1

    def serving(self, experiment: str, arms: tuple[str, ...], probabilities: np.ndarray) -> None:
        """The action distribution just served to requests without ``allowed`` (mean over a batch's contexts)."""
        self.served[experiment] = (arms, probabilities)

    # ---- several workers ------------------------------------------------------------------------
    def flush(self) -> None:
        """Write this process's counts to its file in ``folder`` if they changed since the last write."""
        if self._path is None or self._changes == self._flushed:
            return
        changes = self._changes
        temporary = self._path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.counts.to_json()))
        os.replace(temporary, self._path)
        self._flushed = changes

    async def flush_forever(self) -> None:
        """:meth:`flush` every :data:`FLUSH_S` seconds; a failure (a full disk) is logged and retried."""
        while True:
            await asyncio.sleep(FLUSH_S)
            try:
                self.flush()
            except OSError as error:
                logger.warning("metrics of this worker not written to %s: %s", self.folder, error)

    def totals(self, own: Counts) -> Counts:
        """``own`` plus the counts the other workers wrote to ``folder``."""
        if self.folder is None:
            return own
        for path in self.folder.glob(f"{_WORKER_FILE}*.json"):
            if path == self._path:
                continue
            try:
                own.add(Counts.from_json(json.loads(path.read_text())))
            except (OSError, ValueError, KeyError) as error:  # replaced atomically: only a foreign file fails
                logger.warning("metrics file %s skipped: %s", path, error)
        return own

    @staticmethod
    def clear_folder(folder: Path) -> None:
        """Remove the worker files a previous server left in ``folder`` (its counts are not this server's)."""
        for path in folder.glob(f"{_WORKER_FILE}*"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # ---- scraping -----------------------------------------------------------------------------
    async def scrape(self, experiments: Iterable[Experiment], store: Store) -> bytes:
        """The text exposition of every metric.

        ``experiments`` are the engine's served experiments. Their numbers are copied here, on the event
        loop; reading the other workers' files, the learning loop's state from the store and rendering run
        in a thread.
        """
        own = self.counts.copy()
        views = [self.view(experiment) for experiment in experiments]
        ages = self.source_ages() if self.source_ages is not None else {}
        return await asyncio.to_thread(self._render, own, views, store, ages)

    def view(self, experiment: Experiment) -> ExperimentView:
        """What the gauges of ``experiment`` are computed from, as served now."""
        bandit = experiment.bandit
        return ExperimentView(
            experiment.name,
            bandit.version,
            tuple(bandit.arms),
            bandit.pulls,
            bandit.reward_sums,
            self.served.get(experiment.name),
        )

    def _render(
        self, own: Counts, views: list[ExperimentView], store: Store, ages: dict[str, float] | None = None
    ) -> bytes:
        counts = self.totals(own)
        try:
            loops = store.learning_loop([view.name for view in views])
        except StoreUnavailableError:
            loops = {}  # the store does not answer: its gauges are left out of this scrape
        return exposition(MetricFamilies(counts, views, loops, self.max_arms, ages or {}))


class MetricFamilies(Collector):
    """The metric families of one scrape.

    From the summed ``counts``, the served experiments' ``views`` and the shared store's learning ``loops``,
    with at most ``max_arms`` arm labels per experiment (plus :data:`OTHER_ARMS`).
    """

    def __init__(
        self,
        counts: Counts,
        views: list[ExperimentView],
        loops: dict[str, LoopHealth],
        max_arms: int,
        source_ages: dict[str, float] | None = None,
    ) -> None:
        self.counts = counts
        self.views = {view.name: view for view in views}
        self.loops = loops
        self.max_arms = max_arms
        self.source_ages = source_ages or {}

    def collect(self) -> Iterator[Metric]:
        counts = self.counts
        requests = CounterMetricFamily(
            "banditkit_http_requests", "HTTP requests answered", labels=["route", "method", "status"]
        )
        durations = HistogramMetricFamily(
            "banditkit_http_request_duration_seconds",
            "Time from a request's arrival to its answer's last byte",
            labels=["route", "method", "status"],
        )
        for (route, method, status), histogram in sorted(counts.requests.items()):
            labels = [route, method, str(status)]
            requests.add_metric(labels, sum(histogram[:-1]))
            durations.add_metric(labels, _buckets(histogram), histogram[-1])
        yield requests
        yield durations
        store = HistogramMetricFamily(
            "banditkit_store_latency_seconds",
            "One store write: a batch of decisions logged, a batch of rewards committed",
            labels=["operation"],
        )
        for operation, histogram in sorted(counts.store.items()):
            store.add_metric([operation], _buckets(histogram), histogram[-1])
        yield store

        # Every arm of a served experiment starts at 0, so that rate() sees its first decision. Fallback reasons
        # and reward outcomes appear once they happen (12 series per experiment would add a quarter to a scrape).
        served = set(self.views)
        decisions = CounterMetricFamily("banditkit_decisions", "Decisions answered", labels=["experiment", "arm"])
        for experiment in sorted(served | set(counts.decisions)):
            counter = counts.decisions.get(experiment, Counter())
            labelled = self._labelled(experiment, counter)
            capped: Counter[str] = Counter(dict.fromkeys(labelled, 0))
            if experiment in served and len(labelled) < len(self.views[experiment].arms):
                capped[OTHER_ARMS] = 0
            for arm, count in counter.items():
                capped[arm if arm in labelled else OTHER_ARMS] += count
            for arm, count in sorted(capped.items()):
                decisions.add_metric([experiment, arm], count)
        yield decisions
        yield _per_experiment(
            "banditkit_fallbacks", "Decisions that served the default arm, by reason", ["reason"], counts.fallbacks
        )
        rewarded = {experiment: Counter(counter) for experiment, counter in counts.rewards.items()}
        for experiment, loop in self.loops.items():  # a shared store's learner applies the default rewards
            rewarded.setdefault(experiment, Counter())["defaulted"] += loop.defaulted
        yield _per_experiment("banditkit_rewards", "Rewards by outcome", ["outcome"], rewarded)
        yield _per_experiment(
            "banditkit_alerts",
            "Supervisor alerts written, by kind and state (open, resolved)",
            ["kind", "state"],
            counts.alerts,
            lambda kind_state: kind_state.split("/", 1),
        )
        yield _per_experiment(
            "banditkit_source_fetches",
            "Polls of an experiment's reward source, by outcome (changed, unchanged, timeout, unreachable, "
            "http_error, invalid, store_error)",
            ["outcome"],
            counts.sources,
        )
        age = GaugeMetricFamily(
            "banditkit_source_age_seconds",
            "Seconds since the reward source last gave valid parameters (since polling started, before it did)",
            labels=["experiment"],
        )
        for experiment, seconds in sorted(self.source_ages.items()):
            age.add_metric([experiment], seconds)
        yield age
        yield _per_experiment(
            "banditkit_decisions_by_policy",
            "Decisions answered, by the policy that served them (current, or the candidate of a policy canary)",
            ["policy"],
            counts.policies,
        )
        yield _per_experiment(
            "banditkit_candidate_rollbacks",
            "Candidate policies rolled back automatically, by reason (credibly_worse, guardrail)",
            ["reason"],
            counts.candidates,
            lambda event_reason: [event_reason.split("/", 1)[1]],
        )
        yield from self._model_families()
        yield from self._loop_families()

    def _labelled(self, experiment: str, counted: Iterable[str]) -> set[str]:
        """The arms of ``experiment`` with a label of their own: its first ``max_arms`` arms by name.

        The served arms when this process serves the experiment, else those ``counted``.
        """
        view = self.views.get(experiment)
        arms = view.arms if view is not None else tuple(counted)
        return set(sorted(arms)[: self.max_arms])

    def _groups(self, arms: tuple[str, ...]) -> tuple[list[str], np.ndarray]:
        """The arm labels, and for each arm the position of its label (sums per label: ``np.bincount``).

        The first ``max_arms`` arms by name have a label each, in name order; the others share
        :data:`OTHER_ARMS`, last.
        """
        ordered = sorted(range(len(arms)), key=arms.__getitem__)
        labels = [arms[index] for index in ordered[: self.max_arms]]
        group_of = np.empty(len(arms), dtype=np.intp)
        group_of[ordered] = np.minimum(np.arange(len(arms)), self.max_arms)
        if len(arms) > self.max_arms:
            labels.append(OTHER_ARMS)
        return labels, group_of

    def _model_families(self) -> Iterator[Metric]:
        version = GaugeMetricFamily("banditkit_policy_version", "Policy version served", labels=["experiment"])
        share = GaugeMetricFamily(
            "banditkit_selection_share",
            "Probability of each arm in the action distribution last served (requests without allowed)",
            labels=["experiment", "arm"],
        )
        entropy = GaugeMetricFamily(
            "banditkit_selection_entropy", "Entropy of that distribution, in nats", labels=["experiment"]
        )
        exploration = GaugeMetricFamily(
            "banditkit_exploration_share",
            "Share of that distribution away from the arm with the highest mean reward",
            labels=["experiment"],
        )
        rate = GaugeMetricFamily(
            "banditkit_reward_rate", "Mean reward per rewarded decision, per arm", labels=["experiment", "arm"]
        )
        for name, view in sorted(self.views.items()):
            version.add_metric([name], view.version)
            labels, group_of = self._groups(view.arms)
            pulls = np.bincount(group_of, weights=view.pulls, minlength=len(labels))
            sums = np.bincount(group_of, weights=view.reward_sums, minlength=len(labels))
            for arm, arm_pulls, arm_sum in zip(labels, pulls.tolist(), sums.tolist(), strict=True):
                if arm_pulls > 0:
                    rate.add_metric([name, arm], arm_sum / arm_pulls)
            if view.served is None or view.served[0] != view.arms:
                continue  # nothing served here yet, or the arms changed since: no distribution to report
            probabilities = view.served[1]
            shares = np.bincount(group_of, weights=probabilities, minlength=len(labels))
            for arm, arm_share in zip(labels, shares.tolist(), strict=True):
                share.add_metric([name, arm], arm_share)
            positive = probabilities[probabilities > 0]
            entropy.add_metric([name], float(-(positive * np.log(positive)).sum()))
            rewarded = view.pulls > 0
            if rewarded.any():
                means = np.where(rewarded, view.reward_sums / np.where(rewarded, view.pulls, 1.0), -np.inf)
                exploration.add_metric([name], float(1.0 - probabilities[int(np.argmax(means))]))
        yield from (version, share, entropy, exploration, rate)

    def _loop_families(self) -> Iterator[Metric]:
        length = GaugeMetricFamily(
            "banditkit_reward_stream_length", "Entries in the reward stream (Redis)", labels=["experiment"]
        )
        pending = GaugeMetricFamily(
            "banditkit_reward_stream_pending",
            "Rewards delivered to a learner and not yet acknowledged (Redis)",
            labels=["experiment"],
        )
        lag = GaugeMetricFamily(
            "banditkit_learner_lag_rewards",
            "Rewards in the stream not yet delivered to any learner (Redis)",
            labels=["experiment"],
        )
        age = GaugeMetricFamily(
            "banditkit_reward_to_model_seconds",
            "Age of the oldest reward not yet in the stored model; 0 when every reward is (Redis)",
            labels=["experiment"],
        )
        for name, loop in sorted(self.loops.items()):
            length.add_metric([name], loop.stream_length)
            pending.add_metric([name], loop.pending)
            if loop.lag is not None:
                lag.add_metric([name], loop.lag)
            age.add_metric([name], loop.unlearned_age_s)
        yield from (length, pending, lag, age)


def _per_experiment(
    name: str,
    documentation: str,
    labels: list[str],
    counters: dict[str, Counter[str]],
    split: Callable[[str], list[str]] | None = None,
) -> CounterMetricFamily:
    """A counter family of one series per experiment and key of ``counters``, both in sorted order.

    A key is the value of the one label in ``labels`` after ``experiment``, or ``split`` turns it into the
    values of all of them (``"kind/state"`` into two).
    """
    family = CounterMetricFamily(name, documentation, labels=["experiment", *labels])
    for experiment, counter in sorted(counters.items()):
        for key, count in sorted(counter.items()):
            family.add_metric([experiment, key] if split is None else [experiment, *split(key)], count)
    return family


def exposition(collector: Collector) -> bytes:
    """The text format of ``collector``'s families: the bytes ``prometheus_client.generate_latest`` writes.

    For the families of this module only: their metric and label names are valid as they are, so only label
    values are escaped (backslash, double quote, line feed), and none has a timestamp or an OpenMetrics-only
    sample. ``generate_latest`` checks and escapes every name of every sample: 13 ms of CPU for 100 experiments
    of 10 arms (3,400 samples), 4 ms here. tests/service/test_metrics.py checks that both write the same bytes.
    """
    lines: list[str] = []
    quoted: dict[tuple[str, str], str] = {}  # ``key="value"`` per label: names and arms repeat in every family
    for family in collector.collect():
        name = family.name + "_total" if family.type == "counter" else family.name
        lines.append(f"# HELP {name} {family.documentation}\n# TYPE {name} {family.type}\n")
        for sample in family.samples:
            parts = []
            for pair in sorted(sample.labels.items()):
                part = quoted.get(pair)
                if part is None:
                    part = quoted[pair] = f'{pair[0]}="{_escaped(pair[1])}"'
                parts.append(part)
            value = floatToGoString(sample.value)
            lines.append(f"{sample.name}{{{','.join(parts)}}} {value}\n" if parts else f"{sample.name} {value}\n")
    return "".join(lines).encode()


def _escaped(value: str) -> str:
    """A label value as the text format quotes it."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _buckets(histogram: list[float]) -> list[tuple[str, float]]:
    """Cumulative (``le``, count) pairs, as :class:`HistogramMetricFamily` takes them."""
    bounds = [*(repr(bound) for bound in BUCKETS), "+Inf"]
    return list(zip(bounds, np.cumsum(histogram[:-1]).tolist(), strict=True))


def reward_outcome(status: int, applied: bool | None, first: bool) -> str:
    """The :data:`REWARD_OUTCOMES` entry of a reward answered ``status`` (``first``: recorded by this call)."""
    if status == 200:
        if not first:
            return "repeated"
        return "applied" if applied else "ignored"
    return {409: "conflicting", 410: "late", 404: "not_found"}.get(status, "invalid")

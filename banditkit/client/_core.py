"""What the sync and async clients share, without I/O: errors, retries, the breaker, and each operation once.

Each operation (deciding with its fallback, reporting fallbacks, rewarding, flushing a batch, refreshing a local
model) is a generator of the HTTP calls it needs (:class:`_Call`): :class:`~.sync.Client` makes each call and
sends the answer back in (:func:`_drive`), :class:`~.aio.AsyncClient` awaits it (:func:`_adrive`). A call that
failed is thrown in, where the operation decides what it means.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

import httpx
import numpy as np

from ..assign import assign_one, assign_rows, contextual_probabilities, cumulative
from ..bandit import Bandit

logger = logging.getLogger("banditkit.client")
#: Rows of one batch call at most (the service's limit).
MAX_BATCH = 1000
_ID_BITS = random.Random(os.urandom(32))
#: Decision ids remembered with their experiment (for rewards given by id) before the memory is cleared.
_RECENT = 100_000


def new_decision_id(now: float) -> str:
    """A client-made decision id in the service's format: 12 hex digits of milliseconds, 20 random hex digits.

    >>> len(new_decision_id(time.time()))
    32
    """
    return f"{int(now * 1000):012x}{_ID_BITS.getrandbits(80):020x}"


class ServiceError(Exception):
    """An answer the service gave that retrying cannot change (4xx): ``status`` and the service's ``detail``.

    >>> ServiceError(409, "request_id 'r1' was used with another unit").status
    409
    """

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class Unavailable(Exception):
    """The service could not be reached (or kept answering 5xx) within the retries.

    >>> str(Unavailable("connection refused"))
    'connection refused'
    """


class Decision(NamedTuple):
    """A served arm: pass it, or its id, to :meth:`Client.reward`.

    >>> Decision("hero", "0190a1b2c3d4", "a", 0.5, 3, False).arm
    'a'
    """

    experiment: str
    decision_id: str
    arm: str
    propensity: float
    policy_version: int
    fallback: bool


@dataclass(frozen=True)
class Retry:
    """How calls are retried: ``attempts`` in all, waiting ``backoff_s`` doubling up to ``max_backoff_s``.

    A ``Retry-After`` answer is waited for instead (capped at ``max_retry_after_s``).

    >>> Retry().delay(2, None)
    0.2
    >>> Retry().delay(0, "1.5")
    1.5
    """

    attempts: int = 4
    backoff_s: float = 0.05
    max_backoff_s: float = 2.0
    max_retry_after_s: float = 10.0

    def delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (0-based ``attempt`` just failed)."""
        if retry_after:
            try:
                return min(max(float(retry_after), 0.0), self.max_retry_after_s)
            except ValueError:
                when = email.utils.parsedate_to_datetime(retry_after).timestamp()
                return min(max(when - time.time(), 0.0), self.max_retry_after_s)
        return min(self.backoff_s * 2**attempt, self.max_backoff_s)


class CircuitBreaker:
    """Stops calling a service that keeps failing: open after ``failures`` failed calls in a row, for ``reset_s``.

    While open, :meth:`allow` is False (callers fall back at once instead of waiting out retries); after
    ``reset_s`` one call is let through, and its success closes the breaker.

    >>> b = CircuitBreaker(failures=1, reset_s=60)
    >>> b.failure(); b.allow()
    False
    >>> b.success()  # it was open: the service is back
    True
    >>> b.allow()
    True
    """

    def __init__(self, failures: int = 2, reset_s: float = 2.0) -> None:
        self.failures = failures
        self.reset_s = reset_s
        self._failed = 0
        self._opened_at: float | None = None

    @property
    def open(self) -> bool:
        return self._opened_at is not None

    def allow(self) -> bool:
        opened = self._opened_at
        return opened is None or time.monotonic() - opened >= self.reset_s

    def success(self) -> bool:
        """Record a success; True when it closed an open breaker (the service is back)."""
        was_open = self._opened_at is not None
        self._failed = 0
        self._opened_at = None
        return was_open

    def failure(self) -> None:
        self._failed += 1
        if self._failed >= self.failures:
            self._opened_at = time.monotonic()


@dataclass
class _Info:
    """What a client must know of an experiment to answer for it while the service is unreachable."""

    default_arm: str
    arms: list[str]
    version: int


def _retryable(response: httpx.Response) -> bool:
    return response.status_code >= 500


def _detail(response: httpx.Response) -> Any:
    try:
        return response.json().get("detail", response.text)
    except ValueError:
        return response.text


def _decision(experiment: str, body: dict) -> Decision:
    return Decision(
        experiment, body["decision_id"], body["arm"], body["propensity"], body["policy_version"], body["fallback"]
    )


def _request_body(unit: str | None, context: Iterable[float] | None, allowed: Iterable[str] | None) -> dict:
    body: dict[str, Any] = {"request_id": uuid.uuid4().hex}
    if unit is not None:
        body["unit"] = unit
    if context is not None:
        body["context"] = [float(x) for x in context]
    if allowed is not None:
        body["allowed"] = list(allowed)
    return body


def _info(body: dict) -> _Info:
    """What a fallback needs of an experiment, from its description (``GET /v1/experiments/{name}``)."""
    arms = [arm["name"] for arm in body["arms"]]
    return _Info(body.get("default_arm") or arms[0], arms, body["policy_version"])


# ---- the logic both clients share (see the module docstring) ----------------------------------------------


class _Call(NamedTuple):
    """One HTTP call an operation needs.

    ``mode``: ``json``, retried, a 4xx raised as :class:`ServiceError`, the JSON answer sent back;
    ``response``, retried, the response sent back; ``once``, one attempt, the response sent back (a transport
    error thrown in).
    """

    method: str
    path: str
    body: Any = None
    headers: dict | None = None
    mode: str = "json"


class _Pause(NamedTuple):
    """A wait between two attempts of a call: ``time.sleep``, or ``asyncio.sleep`` awaited."""

    seconds: float


T = TypeVar("T")
#: An operation: yields what to do next (a :class:`_Call`, a :class:`_Pause`, or a batch to send), is sent the
#: outcome, returns T.
Steps = Generator[Any, Any, T]


def _drive(steps: Steps[T], perform: Callable[[Any], Any]) -> T:
    """Run ``steps`` to its end, doing each thing it yields with ``perform``; its result."""
    try:
        wanted = next(steps)
        while True:
            try:
                outcome = perform(wanted)
            except Exception as error:  # the operation decides what a failure means
                wanted = steps.throw(error)
            else:
                wanted = steps.send(outcome)
    except StopIteration as stop:
        return stop.value


async def _adrive(steps: Steps[T], perform: Callable[[Any], Awaitable[Any]]) -> T:
    """:func:`_drive`, with ``perform`` awaited."""
    try:
        wanted = next(steps)
        while True:
            try:
                outcome = await perform(wanted)
            except Exception as error:
                wanted = steps.throw(error)
            else:
                wanted = steps.send(outcome)
    except StopIteration as stop:
        return stop.value


class _Attempts:
    """The retry decisions of one call: what an answer or an error means, and how long to wait before the next.

    :meth:`judge` gives None when the response is the answer (not a 5xx), else the seconds to wait; after the
    last attempt it records a failure on the breaker and raises :class:`Unavailable`.
    """

    def __init__(self, retry: Retry, breaker: CircuitBreaker, method: str, path: str) -> None:
        self.retry, self.breaker, self.what = retry, breaker, f"{method} {path}"
        self.attempt = 0

    def judge(self, response: httpx.Response | None, error: BaseException | None = None) -> float | None:
        if response is not None and not _retryable(response):
            return None
        retry_after = None
        if response is not None:
            error = Unavailable(f"{response.status_code}: {_detail(response)}")
            retry_after = response.headers.get("retry-after")
        self.attempt += 1
        if self.attempt >= self.retry.attempts:
            self.breaker.failure()
            raise Unavailable(f"{self.what}: {error}") from error
        return self.retry.delay(self.attempt - 1, retry_after)


def _answer(response: httpx.Response) -> Any:
    """The JSON of a response that is not an error; :class:`ServiceError` for a 4xx."""
    if response.status_code >= 400:
        raise ServiceError(response.status_code, _detail(response))
    return response.json()


class _Base:
    """What the sync and async clients share: settings, known experiments, unreported fallbacks, operations."""

    def __init__(
        self, url: str, token: str | None, timeout_s: float, retry: Retry | None, breaker: CircuitBreaker | None
    ) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout_s = timeout_s
        self.retry = retry or Retry()
        self.breaker = breaker or CircuitBreaker()
        self._info: dict[str, _Info] = {}
        self._unreported: dict[str, list[dict]] = {}  # experiment -> fallback decisions not yet logged
        self._recent: dict[str, str] = {}  # decision id -> experiment, for rewards given by id
        self._lock = threading.Lock()

    def _remember(self, decisions: list[Decision]) -> None:
        recent = self._recent
        if len(recent) > _RECENT:
            recent.clear()
        for d in decisions:
            recent[d.decision_id] = d.experiment

    def _experiment_of(self, decision: Decision | str, experiment: str | None) -> tuple[str, str]:
        if isinstance(decision, Decision):
            return decision.experiment, decision.decision_id
        name = experiment or self._recent.get(decision)
        if name is None:
            raise ValueError(f"experiment: decision {decision!r} was not served by this client; name its experiment")
        return name, decision

    def _fallback(self, experiment: str, bodies: list[dict], cause: BaseException) -> list[Decision]:
        """The default arm for each request, logged later: what the service would have served without a store."""
        info = self._info.get(experiment)
        if info is None:
            raise Unavailable(f"{cause}; and experiment {experiment!r} was never reached to learn its default arm")
        now = time.time()
        probabilities = {arm: float(arm == info.default_arm) for arm in info.arms}
        decisions, rows = [], []
        for body in bodies:
            decision_id = new_decision_id(now)
            decisions.append(Decision(experiment, decision_id, info.default_arm, 1.0, info.version, True))
            rows.append(
                {
                    "decision_id": decision_id,
                    "time": now,
                    "unit": body.get("unit"),
                    "context": body.get("context"),
                    "arm": info.default_arm,
                    "propensity": 1.0,
                    "probabilities": probabilities,
                    "policy_version": info.version,
                    "fallback": True,
                }
            )
        with self._lock:
            self._unreported.setdefault(experiment, []).extend(rows)
        self._remember(decisions)
        return decisions

    def _take_unreported(self) -> dict[str, list[dict]]:
        with self._lock:
            taken, self._unreported = self._unreported, {}
        return taken

    def _restore_unreported(self, taken: dict[str, list[dict]]) -> None:
        with self._lock:
            for name, rows in taken.items():
                self._unreported.setdefault(name, [])[:0] = rows

    @property
    def unreported(self) -> int:
        """Fallback decisions answered locally and not yet logged to the service."""
        return sum(len(rows) for rows in self._unreported.values())

    # ---- operations (see _drive) -------------------------------------------------------------
    def _requesting(self, method: str, path: str, body: Any, headers: dict | None) -> Steps[httpx.Response]:
        """One call, its attempts paused and retried as :class:`_Attempts` judges them; the response.

        An answer that closes the breaker first logs the fallback decisions answered while it was open.
        """
        attempts = _Attempts(self.retry, self.breaker, method, path)
        while True:
            try:
                response = yield _Call(method, path, body, headers, mode="once")
            except httpx.TransportError as error:
                wait = attempts.judge(None, error)
            else:
                wait = attempts.judge(response)
                if wait is None:
                    if self.breaker.success():
                        yield from self._reporting()
                    return response
            yield _Pause(wait)  # type: ignore[arg-type]  # judge gives a delay unless it answered

    def _learning(self, experiment: str) -> Steps[None]:
        """Learn the default arm, arms and version of ``experiment`` once: what a fallback needs."""
        if experiment not in self._info:
            self._info[experiment] = _info((yield _Call("GET", f"/v1/experiments/{experiment}")))

    def _deciding(self, experiment: str, requests: list[dict], single: bool) -> Steps[list[Decision]]:
        """Decisions for ``requests`` in calls of 1,000 at most; the default arm for a call that cannot be made."""
        bodies = [r if "request_id" in r else {**r, "request_id": uuid.uuid4().hex} for r in requests]
        decisions: list[Decision] = []
        for start in range(0, len(bodies), MAX_BATCH):
            chunk = bodies[start : start + MAX_BATCH]
            if not self.breaker.allow():
                decisions.extend(self._fallback(experiment, chunk, Unavailable("circuit breaker open")))
                continue
            try:
                yield from self._learning(experiment)
                if single:
                    answers = [(yield _Call("POST", f"/v1/experiments/{experiment}/decisions", chunk[0]))]
                else:
                    path = f"/v1/experiments/{experiment}/decisions/batch"
                    answers = (yield _Call("POST", path, {"requests": chunk}))["decisions"]
            except Unavailable as error:
                decisions.extend(self._fallback(experiment, chunk, error))
                continue
            decisions.extend(_decision(experiment, answer) for answer in answers)
        self._remember(decisions)
        return decisions

    def _reporting(self) -> Steps[int]:
        """Log the fallback decisions not yet logged, one attempt per call; how many were logged.

        Those the service refuses (4xx: e.g. past the attribution window) are dropped with a warning; when it
        cannot be reached, what is left is kept for the next report.
        """
        taken = self._take_unreported()
        done = 0
        try:
            while taken:
                name, rows = next(iter(taken.items()))
                chunk = rows[:MAX_BATCH]
                path = f"/v1/experiments/{name}/decisions/log"
                response = yield _Call("POST", path, {"decisions": chunk}, mode="once")
                if response.status_code >= 500:
                    raise Unavailable(f"{response.status_code}: {_detail(response)}")
                if response.status_code >= 400:
                    logger.warning("fallback decisions of %r not logged: %s", name, _detail(response))
                else:
                    done += len(chunk)
                del rows[:MAX_BATCH]
                if not rows:
                    del taken[name]
        except (httpx.TransportError, Unavailable):
            self._restore_unreported(taken)
        return done

    def _rewarding(self, decision: Decision | str, value: float, experiment: str | None) -> Steps[dict]:
        name, decision_id = self._experiment_of(decision, experiment)
        if self._unreported:
            yield from self._reporting()  # a fallback decision must be logged before its reward can join it
        return (yield _Call("POST", f"/v1/experiments/{name}/rewards", {"decision_id": decision_id, "value": value}))

    def _rewarding_batch(self, experiment: str, rewards: list[tuple[str, float]]) -> Steps[list[dict]]:
        if self._unreported:
            yield from self._reporting()
        results: list[dict] = []
        for start in range(0, len(rewards), MAX_BATCH):
            body = {"rewards": [{"decision_id": d, "value": v} for d, v in rewards[start : start + MAX_BATCH]]}
            results.extend((yield _Call("POST", f"/v1/experiments/{experiment}/rewards/batch", body))["results"])
        return results


class _Queue(Protocol):
    """Where rows wait to be sent: a :class:`~.sync.BatchSender` or an :class:`~.aio.AsyncBatchSender`."""

    def add(self, key: str, row: Any) -> None: ...


class _Batches:
    """Rows waiting to be sent, per key, in order; what both batch senders keep (no I/O, thread-safe).

    :meth:`flushing` takes every row and yields ``(key, rows)`` batches of at most ``chunk`` rows for the
    sender to send; a batch whose sending raised :class:`Unavailable` (thrown in) is kept, with every batch
    after it, ahead of the rows added meanwhile; one refused (:class:`ServiceError`) is dropped and logged.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.chunk = min(max_size, MAX_BATCH)
        self._rows: dict[str, list] = {}
        self.count = 0
        self._lock = threading.Lock()

    def add(self, key: str, row: Any) -> bool:
        """Queue ``row``; True when ``max_size`` rows are waiting (time to send)."""
        with self._lock:
            self._rows.setdefault(key, []).append(row)
            self.count += 1
            return self.count >= self.max_size

    def flushing(self) -> Steps[bool]:
        with self._lock:
            taken, self._rows, self.count = self._rows, {}, 0
        left: dict[str, list] = {}
        for key, rows in taken.items():
            for start in range(0, len(rows), self.chunk):
                chunk = rows[start : start + self.chunk]
                if left:
                    left.setdefault(key, []).extend(chunk)
                    continue
                try:
                    yield key, chunk
                except Unavailable:
                    left.setdefault(key, []).extend(chunk)
                except ServiceError as error:
                    logger.warning("%d rows of %r refused: %s", len(chunk), key, error)
        if left:
            with self._lock:
                for key, rows in left.items():
                    self._rows.setdefault(key, [])[:0] = rows
                    self.count += len(rows)
        return not left


class _RewardQueue:
    """Queueing a reward for a batch sender: what :class:`RewardSender` and :class:`AsyncRewardSender` share."""

    client: _Base
    batches: _Queue

    def reward(self, decision: Decision | str, value: float, *, experiment: str | None = None) -> None:
        """Queue one reward (sent within ``interval_s``)."""
        name, decision_id = self.client._experiment_of(decision, experiment)
        self.batches.add(name, (decision_id, float(value)))


class _Entry(NamedTuple):
    """One allowed-set's distribution of the local model (what the service's cache keeps)."""

    arms: tuple[str, ...]
    values: list[float]  # the probabilities as Python floats (the same doubles as the service's)
    sums: list[float]
    last: int
    probabilities: dict[str, float]
    fallback: bool


#: A queued local decision's fields, in the order :meth:`LocalDecider.decide` queues them.
_LOGGED_FIELDS: tuple[str, ...] = ("decision_id", "time", "unit", "context", "arm", "propensity")
_LOGGED_FIELDS += ("probabilities", "policy_version", "fallback")


class _LocalModel:
    """What the sync and async local deciders share: the model pulled by ETag, the draws, the log's rows."""

    client: _Base
    log: _Queue

    def __init__(self, client: _Base, experiment: str, refresh_s: float) -> None:
        self.client = client
        self.experiment = experiment
        self.refresh_s = refresh_s
        self._etag: str | None = None
        self._entries: dict[tuple[str, ...] | None, _Entry] = {}
        self.bandit: Bandit
        self.version = -1
        self._refreshed = time.monotonic()

    def _refreshing(self) -> Steps[bool]:
        """Pull the model if its version changed (a 304 otherwise); True when a new one was loaded."""
        headers = {"If-None-Match": self._etag} if self._etag else None
        response = yield _Call("GET", f"/v1/experiments/{self.experiment}/model", None, headers, mode="response")
        self._refreshed = time.monotonic()
        if response.status_code == 304:
            return False
        body = _answer(response)
        bandit = Bandit.from_dict(body["model"])
        self.bandit, self.version, self._entries = bandit, body["version"], {}
        self._contextual = bandit.policy.contextual
        self._etag = response.headers.get("etag")
        arms = list(bandit.arms)
        active = bandit.active_arms
        default = bandit.guardrails.default_arm or (active[0] if active else arms[0])
        self.client._info[self.experiment] = _Info(default, arms, body["version"])
        return True

    def _refresh_due(self) -> bool:
        return time.monotonic() - self._refreshed >= self.refresh_s

    def _shipping(self, name: str, rows: list) -> Steps[None]:
        body = {"decisions": [dict(zip(_LOGGED_FIELDS, row, strict=True)) for row in rows]}
        yield _Call("POST", f"/v1/experiments/{name}/decisions/log", body)

    def _entry(self, allowed: tuple[str, ...] | None) -> _Entry:
        bandit = self.bandit
        probabilities = bandit.probabilities(allowed=None if allowed is None else list(allowed))
        vector = np.fromiter(probabilities.values(), dtype=np.float64, count=len(probabilities))
        sums, last = cumulative(vector)
        active = set(bandit.active_arms if allowed is None else set(allowed) & set(bandit.active_arms))
        fallback = bool(bandit.aborted or not active)
        entry = _Entry(tuple(bandit.arms), vector.tolist(), sums, last, probabilities, fallback)
        self._entries[allowed] = entry
        return entry

    def decide(
        self, unit: str | None = None, context: Iterable[float] | None = None, allowed: Iterable[str] | None = None
    ) -> Decision:
        """One decision, made here and queued for the log (no I/O: also in the async decider)."""
        key = None if allowed is None else tuple(sorted(set(allowed)))
        bandit = self.bandit
        now = time.time()
        decision_id = f"{int(now * 1000):012x}{_ID_BITS.getrandbits(80):020x}"  # new_decision_id, inlined
        if self._contextual:
            if context is None:
                raise ValueError(f"context: policy {bandit.policy.name!r} needs {bandit.n_features} numbers")
            row = [float(x) for x in context]
            matrix = contextual_probabilities(bandit, np.array([row], dtype=np.float64), key)
            index = int(assign_rows(matrix, self.experiment, [unit], bandit.rng)[0])
            arms = tuple(bandit.arms)
            probabilities = dict(zip(arms, matrix[0].tolist(), strict=True))
            propensity = float(matrix[0, index])
            fallback = bool(bandit.aborted or not (set(bandit.active_arms) & set(key or arms)))
        else:
            entry = self._entries.get(key) or self._entry(key)
            index = assign_one(entry.sums, entry.last, self.experiment, unit, bandit.rng)
            arms, probabilities, fallback = entry.arms, entry.probabilities, entry.fallback
            propensity = entry.values[index]
            row = None
        arm = arms[index]
        self.log.add(
            self.experiment, (decision_id, now, unit, row, arm, propensity, probabilities, self.version, fallback)
        )
        recent = self.client._recent  # so that ``client.reward(decision_id, value)`` finds its experiment
        if len(recent) > _RECENT:
            recent.clear()
        recent[decision_id] = self.experiment
        return Decision(self.experiment, decision_id, arm, propensity, self.version, fallback)

"""Python client of the decision service: safe retries, a circuit breaker, batched rewards, local decisions.

    from banditkit.client import Client
    c = Client("http://bandits:8000", token="…")
    d = c.decide("hero", unit="u42")          # retried safely: the request_id makes it one logged decision
    c.reward(d, 1.0)                          # idempotent: retried safely too
    local = c.local("hero")                   # pulls the model, decides in-process, ships the log
    local.decide(unit="u42")                  # the arm and propensity the server would give, bit for bit

Retries: connection errors, timeouts and 5xx answers are retried with exponential backoff (``Retry-After``
honoured). That is safe because a reward is accepted once per decision (a retry gets the same answer) and a
decision carries a ``request_id`` the service answers from its log on a retry, in any worker and after a
restart. When the service stays unreachable, the circuit breaker opens and decisions are answered locally
with the experiment's default arm and ``fallback=True`` (never a random arm); they are logged to the service
(``POST …/decisions/log``) once it answers again, so rewards for them join like any other.

Needs httpx (the ``service`` extra); ``import banditkit`` does not import this module.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import email.utils
import logging
import os
import random
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import httpx
import numpy as np

from .assign import assign_one, assign_rows, contextual_probabilities, cumulative
from .bandit import Bandit

__all__ = [
    "AsyncClient",
    "BatchSender",
    "CircuitBreaker",
    "Client",
    "Decision",
    "LocalDecider",
    "Retry",
    "ServiceError",
    "Unavailable",
]

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


class _Base:
    """What the sync and async clients share: settings, known experiments, unreported fallbacks."""

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


class Client(_Base):
    """Decisions and rewards over HTTP, retried safely; the default arm locally while the service is down.

    ``timeout_s`` bounds each attempt; ``retry`` and ``breaker`` tune retries and the circuit breaker.

    >>> c = Client("http://127.0.0.1:9", token="secret", retry=Retry(attempts=1))
    >>> c.url
    'http://127.0.0.1:9'
    >>> c.close()
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout_s: float = 5.0,
        retry: Retry | None = None,
        breaker: CircuitBreaker | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, token, timeout_s, retry, breaker)
        self.http = httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout_s, transport=transport)
        self._senders: list[BatchSender | RewardSender] = []

    # ---- transport -------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, headers: dict | None = None) -> httpx.Response:
        """One call, retried on connection errors, timeouts and 5xx; :class:`Unavailable` when all failed.

        4xx answers are returned (the caller decides); the breaker records the outcome.
        """
        cause: BaseException | None = None
        for attempt in range(self.retry.attempts):
            retry_after = None
            try:
                response = self.http.request(method, path, json=body, headers=headers)
            except httpx.TransportError as error:
                cause = error
            else:
                if not _retryable(response):
                    if self.breaker.success():
                        self.report()
                    return response
                cause = Unavailable(f"{response.status_code}: {_detail(response)}")
                retry_after = response.headers.get("retry-after")
            if attempt + 1 < self.retry.attempts:
                time.sleep(self.retry.delay(attempt, retry_after))
        self.breaker.failure()
        raise Unavailable(f"{method} {path}: {cause}") from cause

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        response = self.request(method, path, body)
        if response.status_code >= 400:
            raise ServiceError(response.status_code, _detail(response))
        return response.json()

    def _learn(self, experiment: str) -> None:
        """Learn the default arm, arms and version of ``experiment`` once: what a fallback needs."""
        if experiment not in self._info:
            body = self._json("GET", f"/v1/experiments/{experiment}")
            arms = [arm["name"] for arm in body["arms"]]
            default = body.get("default_arm") or arms[0]
            self._info[experiment] = _Info(default, arms, body["policy_version"])

    # ---- decisions -------------------------------------------------------------------------
    def decide(
        self,
        experiment: str,
        unit: str | None = None,
        context: Iterable[float] | None = None,
        allowed: Iterable[str] | None = None,
    ) -> Decision:
        """One decision; retried with one ``request_id``, so at most one is logged; the default arm if unreachable."""
        return self.decide_batch(experiment, [_request_body(unit, context, allowed)], _single=True)[0]

    def decide_batch(self, experiment: str, requests: list[dict], *, _single: bool = False) -> list[Decision]:
        """Decisions for ``requests`` (dicts of ``unit``, ``context``, ``allowed``), in calls of 1,000 at most."""
        bodies = [r if "request_id" in r else {**r, "request_id": uuid.uuid4().hex} for r in requests]
        decisions: list[Decision] = []
        for start in range(0, len(bodies), MAX_BATCH):
            chunk = bodies[start : start + MAX_BATCH]
            if not self.breaker.allow():
                decisions.extend(self._fallback(experiment, chunk, Unavailable("circuit breaker open")))
                continue
            try:
                self._learn(experiment)
                if _single:
                    answers = [self._json("POST", f"/v1/experiments/{experiment}/decisions", chunk[0])]
                else:
                    path = f"/v1/experiments/{experiment}/decisions/batch"
                    answers = self._json("POST", path, {"requests": chunk})["decisions"]
            except Unavailable as error:
                decisions.extend(self._fallback(experiment, chunk, error))
                continue
            decisions.extend(_decision(experiment, answer) for answer in answers)
        self._remember(decisions)
        return decisions

    def report(self) -> int:
        """Log the fallback decisions answered while the service was unreachable; how many were logged.

        Those the service refuses (422: e.g. past the attribution window) are dropped with a warning.
        """
        taken = self._take_unreported()
        done = 0
        try:
            while taken:
                name, rows = next(iter(taken.items()))
                chunk = rows[:MAX_BATCH]
                response = self.http.post(f"/v1/experiments/{name}/decisions/log", json={"decisions": chunk})
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

    def local(self, experiment: str, *, refresh_s: float = 1.0, ship_size: int = 1000, ship_interval_s: float = 1.0):
        """A :class:`LocalDecider` for ``experiment``: decides in this process, ships the log in batches."""
        return LocalDecider(self, experiment, refresh_s=refresh_s, ship_size=ship_size, ship_interval_s=ship_interval_s)

    # ---- rewards ---------------------------------------------------------------------------
    def reward(self, decision: Decision | str, value: float, *, experiment: str | None = None) -> dict:
        """Reward one decision (idempotent: a retry gets the same answer); the service's answer.

        :class:`ServiceError` for 404 (unknown decision), 409 (another value), 410 (past its window).
        """
        name, decision_id = self._experiment_of(decision, experiment)
        if self._unreported:
            self.report()  # a fallback decision must be logged before its reward can join it
        return self._json("POST", f"/v1/experiments/{name}/rewards", {"decision_id": decision_id, "value": value})

    def reward_batch(self, experiment: str, rewards: list[tuple[str, float]]) -> list[dict]:
        """Reward many decisions of ``experiment`` (``(decision_id, value)`` pairs); one result each."""
        if self._unreported:
            self.report()
        results: list[dict] = []
        for start in range(0, len(rewards), MAX_BATCH):
            body = {"rewards": [{"decision_id": d, "value": v} for d, v in rewards[start : start + MAX_BATCH]]}
            results.extend(self._json("POST", f"/v1/experiments/{experiment}/rewards/batch", body)["results"])
        return results

    def sender(self, *, max_size: int = 500, interval_s: float = 1.0) -> RewardSender:
        """A :class:`RewardSender`: rewards batched by size or interval, flushed at :meth:`close` and at exit."""
        sender = RewardSender(self, max_size=max_size, interval_s=interval_s)
        self._senders.append(sender)
        return sender

    def close(self) -> None:
        """Flush the senders, log the fallbacks that can be, close the connections."""
        for sender in self._senders:
            sender.close()
        if self._unreported:
            self.report()
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BatchSender:
    """Rows sent in batches by a background thread: at ``max_size`` rows, every ``interval_s``, at exit.

    Each call sends 1,000 rows at most (the service's limit).

    ``send(key, rows)`` sends one batch of one key; when it raises :class:`Unavailable` the rows are kept
    and sent again later (what is sent must be idempotent: rewards and client-made decisions are). Nothing
    is dropped unless the service refuses it (4xx), which is logged.

    >>> sent = []
    >>> s = BatchSender(lambda key, rows: sent.append((key, rows)), max_size=2, interval_s=60)
    >>> s.add("hero", 1); s.add("hero", 2); s.close()
    >>> sent
    [('hero', [1, 2])]
    """

    def __init__(
        self, send: Callable[[str, list], None], *, max_size: int = 500, interval_s: float = 1.0, tick=None
    ) -> None:
        self._send = send
        self.max_size = max_size
        self._chunk = min(max_size, MAX_BATCH)
        self.interval_s = interval_s
        self._tick = tick
        self._rows: dict[str, list] = {}
        self._count = 0
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="banditkit-sender", daemon=True)
        self._thread.start()
        atexit.register(_close_at_exit, weakref.ref(self))

    def add(self, key: str, row: Any) -> None:
        with self._lock:
            self._rows.setdefault(key, []).append(row)
            self._count += 1
            full = self._count >= self.max_size
        if full:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Rows not yet sent."""
        return self._count

    def flush(self) -> bool:
        """Send everything pending now; True when nothing is left (False: the service is unreachable).

        One flush at a time: a flush waits for one under way in the background thread, so that when it
        returns True every row added before it was sent.
        """
        with self._flushing:
            return self._flush()

    def _flush(self) -> bool:
        with self._lock:
            taken, self._rows, self._count = self._rows, {}, 0
        left: dict[str, list] = {}
        for key, rows in taken.items():
            for start in range(0, len(rows), self._chunk):
                chunk = rows[start : start + self._chunk]
                if left:
                    left.setdefault(key, []).extend(chunk)
                    continue
                try:
                    self._send(key, chunk)
                except Unavailable:
                    left.setdefault(key, []).extend(chunk)
                except ServiceError as error:
                    logger.warning("%d rows of %r refused: %s", len(chunk), key, error)
        if left:
            with self._lock:
                for key, rows in left.items():
                    self._rows.setdefault(key, [])[:0] = rows
                    self._count += len(rows)
        return not left

    def close(self) -> None:
        """Stop the thread and send what is pending (one last try)."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._thread.join()
        self.flush()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._closed:
                return
            try:
                if self._tick is not None:
                    self._tick()
                self.flush()
            except Exception:  # the thread must outlive any one failure
                logger.exception("batch sender failed")


def _close_at_exit(ref: weakref.ref) -> None:
    sender = ref()
    if sender is not None:
        sender.close()


class RewardSender:
    """Rewards batched per experiment and sent by a background thread (:meth:`Client.sender`).

    Flushed at ``max_size`` rewards, every ``interval_s``, at :meth:`close` and at interpreter exit; rewards
    that could not be sent (the service down) are kept and sent again: rewards are idempotent.

    >>> sender = Client("http://bandits:8000").sender(max_size=500, interval_s=1.0)  # doctest: +SKIP
    >>> sender.reward(decision, 1.0)  # doctest: +SKIP
    """

    def __init__(self, client: Client, *, max_size: int = 500, interval_s: float = 1.0) -> None:
        self.client = client
        self.batches = BatchSender(self._send, max_size=max_size, interval_s=interval_s)

    def reward(self, decision: Decision | str, value: float, *, experiment: str | None = None) -> None:
        """Queue one reward (sent within ``interval_s``)."""
        name, decision_id = self.client._experiment_of(decision, experiment)
        self.batches.add(name, (decision_id, float(value)))

    def _send(self, name: str, rows: list) -> None:
        self.client.reward_batch(name, rows)

    def flush(self) -> bool:
        return self.batches.flush()

    def close(self) -> None:
        self.batches.close()


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


class LocalDecider:
    """Decisions made in this process from the served model: the service's arm and propensity, bit for bit.

    The model comes from ``GET /v1/experiments/{name}/model`` (re-asked every ``refresh_s`` with its ETag:
    a 304 costs one small round trip); each decision draws with the service's own functions
    (:mod:`banditkit.assign`), so a unit gets the arm the service would give at the same version. Decisions
    are shipped to ``POST …/decisions/log`` in batches (idempotent by id), so rewards join them as usual.
    A sticky experiment's stored assignments are the service's: local decisions do not read them.

    >>> local = Client("http://bandits:8000").local("hero")  # doctest: +SKIP
    >>> local.decide(unit="u42").arm  # doctest: +SKIP
    'b'
    """

    def __init__(
        self,
        client: Client,
        experiment: str,
        *,
        refresh_s: float = 1.0,
        ship_size: int = 1000,
        ship_interval_s: float = 1.0,
    ) -> None:
        self.client = client
        self.experiment = experiment
        self.refresh_s = refresh_s
        self._etag: str | None = None
        self._entries: dict[tuple[str, ...] | None, _Entry] = {}
        self.bandit: Bandit
        self.version = -1
        self.refresh()
        self._refreshed = time.monotonic()
        self.log = BatchSender(self._ship, max_size=ship_size, interval_s=ship_interval_s, tick=self._maybe_refresh)
        client._senders.append(self.log)

    def refresh(self) -> bool:
        """Pull the model if its version changed; True when a new one was loaded."""
        headers = {"If-None-Match": self._etag} if self._etag else None
        response = self.client.request("GET", f"/v1/experiments/{self.experiment}/model", headers=headers)
        if response.status_code == 304:
            return False
        if response.status_code >= 400:
            raise ServiceError(response.status_code, _detail(response))
        body = response.json()
        bandit = Bandit.from_dict(body["model"])
        self.bandit, self.version, self._entries = bandit, body["version"], {}
        self._contextual = bandit.policy.contextual
        self._etag = response.headers.get("etag")
        arms = list(bandit.arms)
        active = bandit.active_arms
        default = bandit.guardrails.default_arm or (active[0] if active else arms[0])
        self.client._info[self.experiment] = _Info(default, arms, body["version"])
        return True

    def _maybe_refresh(self) -> None:
        if time.monotonic() - self._refreshed >= self.refresh_s:
            self._refreshed = time.monotonic()
            with contextlib.suppress(Unavailable):  # keep deciding with the model we have
                self.refresh()

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
        """One decision, made here and queued for the log."""
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

    def _ship(self, name: str, rows: list) -> None:
        body = {"decisions": [dict(zip(_LOGGED_FIELDS, row, strict=True)) for row in rows]}
        self.client._json("POST", f"/v1/experiments/{name}/decisions/log", body)

    def flush(self) -> bool:
        """Ship every queued decision now; True when none is left."""
        return self.log.flush()

    def close(self) -> None:
        self.log.close()


class AsyncClient(_Base):
    """:class:`Client` for asyncio (httpx.AsyncClient): the same retries, ``request_id`` and fallback.

    >>> async def main():
    ...     async with AsyncClient("http://127.0.0.1:9", retry=Retry(attempts=1)) as c:
    ...         return c.url
    >>> asyncio.run(main())
    'http://127.0.0.1:9'
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout_s: float = 5.0,
        retry: Retry | None = None,
        breaker: CircuitBreaker | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(url, token, timeout_s, retry, breaker)
        self.http = httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=timeout_s, transport=transport)

    async def request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """:meth:`Client.request`, awaited."""
        cause: BaseException | None = None
        for attempt in range(self.retry.attempts):
            retry_after = None
            try:
                response = await self.http.request(method, path, json=body)
            except httpx.TransportError as error:
                cause = error
            else:
                if not _retryable(response):
                    if self.breaker.success():
                        await self.report()
                    return response
                cause = Unavailable(f"{response.status_code}: {_detail(response)}")
                retry_after = response.headers.get("retry-after")
            if attempt + 1 < self.retry.attempts:
                await asyncio.sleep(self.retry.delay(attempt, retry_after))
        self.breaker.failure()
        raise Unavailable(f"{method} {path}: {cause}") from cause

    async def _json(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.request(method, path, body)
        if response.status_code >= 400:
            raise ServiceError(response.status_code, _detail(response))
        return response.json()

    async def _learn(self, experiment: str) -> None:
        if experiment not in self._info:
            body = await self._json("GET", f"/v1/experiments/{experiment}")
            arms = [arm["name"] for arm in body["arms"]]
            self._info[experiment] = _Info(body.get("default_arm") or arms[0], arms, body["policy_version"])

    async def decide(
        self,
        experiment: str,
        unit: str | None = None,
        context: Iterable[float] | None = None,
        allowed: Iterable[str] | None = None,
    ) -> Decision:
        """:meth:`Client.decide`, awaited."""
        return (await self.decide_batch(experiment, [_request_body(unit, context, allowed)], _single=True))[0]

    async def decide_batch(self, experiment: str, requests: list[dict], *, _single: bool = False) -> list[Decision]:
        """:meth:`Client.decide_batch`, awaited."""
        bodies = [r if "request_id" in r else {**r, "request_id": uuid.uuid4().hex} for r in requests]
        decisions: list[Decision] = []
        for start in range(0, len(bodies), MAX_BATCH):
            chunk = bodies[start : start + MAX_BATCH]
            if not self.breaker.allow():
                decisions.extend(self._fallback(experiment, chunk, Unavailable("circuit breaker open")))
                continue
            try:
                await self._learn(experiment)
                if _single:
                    answers = [await self._json("POST", f"/v1/experiments/{experiment}/decisions", chunk[0])]
                else:
                    path = f"/v1/experiments/{experiment}/decisions/batch"
                    answers = (await self._json("POST", path, {"requests": chunk}))["decisions"]
            except Unavailable as error:
                decisions.extend(self._fallback(experiment, chunk, error))
                continue
            decisions.extend(_decision(experiment, answer) for answer in answers)
        self._remember(decisions)
        return decisions

    async def report(self) -> int:
        """:meth:`Client.report`, awaited."""
        taken = self._take_unreported()
        done = 0
        try:
            while taken:
                name, rows = next(iter(taken.items()))
                chunk = rows[:MAX_BATCH]
                response = await self.http.post(f"/v1/experiments/{name}/decisions/log", json={"decisions": chunk})
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

    async def reward(self, decision: Decision | str, value: float, *, experiment: str | None = None) -> dict:
        """:meth:`Client.reward`, awaited."""
        name, decision_id = self._experiment_of(decision, experiment)
        if self._unreported:
            await self.report()
        body = {"decision_id": decision_id, "value": value}
        return await self._json("POST", f"/v1/experiments/{name}/rewards", body)

    async def reward_batch(self, experiment: str, rewards: list[tuple[str, float]]) -> list[dict]:
        """:meth:`Client.reward_batch`, awaited."""
        if self._unreported:
            await self.report()
        results: list[dict] = []
        for start in range(0, len(rewards), MAX_BATCH):
            body = {"rewards": [{"decision_id": d, "value": v} for d, v in rewards[start : start + MAX_BATCH]]}
            results.extend((await self._json("POST", f"/v1/experiments/{experiment}/rewards/batch", body))["results"])
        return results

    async def close(self) -> None:
        if self._unreported:
            await self.report()
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

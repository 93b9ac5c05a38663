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
from collections.abc import Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import httpx
import numpy as np

from .assign import assign_one, assign_rows, contextual_probabilities, cumulative
from .bandit import Bandit

__all__ = [
    "AsyncBatchSender",
    "AsyncClient",
    "AsyncLocalDecider",
    "AsyncRewardSender",
    "BatchSender",
    "CircuitBreaker",
    "Client",
    "Decision",
    "LocalDecider",
    "Retry",
    "RewardSender",
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


def _info(body: dict) -> _Info:
    """What a fallback needs of an experiment, from its description (``GET /v1/experiments/{name}``)."""
    arms = [arm["name"] for arm in body["arms"]]
    return _Info(body.get("default_arm") or arms[0], arms, body["policy_version"])


# ---- the logic both clients share, without I/O ----------------------------------------------------------
# Each operation is written once, as a generator of the calls it needs (:class:`_Call`): the sync client
# makes each call and sends the answer back in (:func:`_drive`), the async client awaits it (:func:`_adrive`).
# A call that failed is thrown in, where the operation decides (a fallback, a batch kept for later).


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


T = TypeVar("T")
#: An operation: yields what to do next (a :class:`_Call`, or a batch to send), is sent the outcome, returns T.
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
        attempts = _Attempts(self.retry, self.breaker, method, path)
        while True:
            try:
                response = self.http.request(method, path, json=body, headers=headers)
            except httpx.TransportError as error:
                wait = attempts.judge(None, error)
            else:
                wait = attempts.judge(response)
                if wait is None:
                    if self.breaker.success():
                        self.report()
                    return response
            time.sleep(wait)  # type: ignore[arg-type]  # judge gives a delay unless it answered

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        return _answer(self.request(method, path, body))

    def _perform(self, call: _Call) -> Any:
        if call.mode == "json":
            return self._json(call.method, call.path, call.body)
        if call.mode == "response":
            return self.request(call.method, call.path, call.body, call.headers)
        return self.http.request(call.method, call.path, json=call.body, headers=call.headers)

    def _run(self, steps: Steps[T]) -> T:
        return _drive(steps, self._perform)

    # ---- decisions -------------------------------------------------------------------------
    def decide(
        self,
        experiment: str,
        unit: str | None = None,
        context: Iterable[float] | None = None,
        allowed: Iterable[str] | None = None,
    ) -> Decision:
        """One decision; retried with one ``request_id``, so at most one is logged; the default arm if unreachable."""
        return self._run(self._deciding(experiment, [_request_body(unit, context, allowed)], True))[0]

    def decide_batch(self, experiment: str, requests: list[dict]) -> list[Decision]:
        """Decisions for ``requests`` (dicts of ``unit``, ``context``, ``allowed``), in calls of 1,000 at most."""
        return self._run(self._deciding(experiment, requests, False))

    def report(self) -> int:
        """Log the fallback decisions answered while the service was unreachable; how many were logged.

        Those the service refuses (422: e.g. past the attribution window) are dropped with a warning.
        """
        return self._run(self._reporting())

    def local(
        self, experiment: str, *, refresh_s: float = 1.0, ship_size: int = 1000, ship_interval_s: float = 1.0
    ) -> LocalDecider:
        """A :class:`LocalDecider` for ``experiment``: decides in this process, ships the log in batches."""
        return LocalDecider(self, experiment, refresh_s=refresh_s, ship_size=ship_size, ship_interval_s=ship_interval_s)

    # ---- rewards ---------------------------------------------------------------------------
    def reward(self, decision: Decision | str, value: float, *, experiment: str | None = None) -> dict:
        """Reward one decision (idempotent: a retry gets the same answer); the service's answer.

        :class:`ServiceError` for 404 (unknown decision), 409 (another value), 410 (past its window).
        """
        return self._run(self._rewarding(decision, value, experiment))

    def reward_batch(self, experiment: str, rewards: list[tuple[str, float]]) -> list[dict]:
        """Reward many decisions of ``experiment`` (``(decision_id, value)`` pairs); one result each."""
        return self._run(self._rewarding_batch(experiment, rewards))

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


class BatchSender:
    """Rows sent in batches by a background thread: at ``max_size`` rows, every ``interval_s``, at exit.

    Each call sends 1,000 rows at most (the service's limit).

    ``send(key, rows)`` sends one batch of one key; when it raises :class:`Unavailable` the rows are kept
    and sent again later (what is sent must be idempotent: rewards and client-made decisions are). Nothing
    is dropped unless the service refuses it (4xx), which is logged. ``tick()``, if given, is called before
    each background flush.

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
        self._batches = _Batches(max_size)
        self.max_size = max_size
        self.interval_s = interval_s
        self._tick = tick
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="banditkit-sender", daemon=True)
        self._thread.start()
        atexit.register(_close_at_exit, weakref.ref(self))

    def add(self, key: str, row: Any) -> None:
        if self._batches.add(key, row):
            self._wake.set()

    @property
    def pending(self) -> int:
        """Rows not yet sent."""
        return self._batches.count

    def flush(self) -> bool:
        """Send everything pending now; True when nothing is left (False: the service is unreachable).

        One flush at a time: a flush waits for one under way in the background thread, so that when it
        returns True every row added before it was sent.
        """
        with self._flushing:
            return _drive(self._batches.flushing(), self._send_batch)

    def _send_batch(self, batch: tuple[str, list]) -> None:
        self._send(*batch)

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


class AsyncBatchSender:
    """:class:`BatchSender` for asyncio: a task of the running loop sends the batches, ``send`` is awaited.

    Flushed at ``max_size`` rows, every ``interval_s`` and at :meth:`close` (an event loop cannot run at
    interpreter exit: close it, as ``async with AsyncClient(...)`` does). ``tick()``, if given, is awaited
    before each background flush. Made inside a running loop.

    >>> sent = []
    >>> async def send(key, rows):
    ...     sent.append((key, rows))
    >>> async def main():
    ...     s = AsyncBatchSender(send, max_size=2, interval_s=60)
    ...     s.add("hero", 1); s.add("hero", 2); s.add("hero", 3)
    ...     await s.close()
    >>> asyncio.run(main()); sent
    [('hero', [1, 2]), ('hero', [3])]
    """

    def __init__(
        self,
        send: Callable[[str, list], Awaitable[None]],
        *,
        max_size: int = 500,
        interval_s: float = 1.0,
        tick: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._send = send
        self._batches = _Batches(max_size)
        self.max_size = max_size
        self.interval_s = interval_s
        self._tick = tick
        self._flushing = asyncio.Lock()
        self._wake = asyncio.Event()
        self._closed = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="banditkit-async-sender")

    def add(self, key: str, row: Any) -> None:
        if self._batches.add(key, row):
            self._wake.set()

    @property
    def pending(self) -> int:
        """Rows not yet sent."""
        return self._batches.count

    async def flush(self) -> bool:
        """:meth:`BatchSender.flush`, awaited."""
        async with self._flushing:
            return await _adrive(self._batches.flushing(), self._send_batch)

    async def _send_batch(self, batch: tuple[str, list]) -> None:
        await self._send(*batch)

    async def close(self) -> None:
        """Stop the task and send what is pending (one last try)."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        await self._task
        await self.flush()

    async def _run(self) -> None:
        while not self._closed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
            if self._closed:
                return
            try:
                if self._tick is not None:
                    await self._tick()
                await self.flush()
            except Exception:  # the task must outlive any one failure
                logger.exception("batch sender failed")


class _RewardQueue:
    """Queueing a reward for a batch sender: what :class:`RewardSender` and :class:`AsyncRewardSender` share."""

    client: _Base
    batches: BatchSender | AsyncBatchSender

    def reward(self, decision: Decision | str, value: float, *, experiment: str | None = None) -> None:
        """Queue one reward (sent within ``interval_s``)."""
        name, decision_id = self.client._experiment_of(decision, experiment)
        self.batches.add(name, (decision_id, float(value)))


class RewardSender(_RewardQueue):
    """Rewards batched per experiment and sent by a background thread (:meth:`Client.sender`).

    Flushed at ``max_size`` rewards, every ``interval_s``, at :meth:`close` and at interpreter exit; rewards
    that could not be sent (the service down) are kept and sent again: rewards are idempotent.

    >>> sender = Client("http://bandits:8000").sender(max_size=500, interval_s=1.0)  # doctest: +SKIP
    >>> sender.reward(decision, 1.0)  # doctest: +SKIP
    """

    client: Client
    batches: BatchSender

    def __init__(self, client: Client, *, max_size: int = 500, interval_s: float = 1.0) -> None:
        self.client = client
        self.batches = BatchSender(self._send, max_size=max_size, interval_s=interval_s)

    def _send(self, name: str, rows: list) -> None:
        self.client.reward_batch(name, rows)

    def flush(self) -> bool:
        return self.batches.flush()

    def close(self) -> None:
        self.batches.close()


class AsyncRewardSender(_RewardQueue):
    """:class:`RewardSender` for :class:`AsyncClient` (:meth:`AsyncClient.sender`): ``reward`` queues at once.

    Sent by a task of the loop at ``max_size`` rewards, every ``interval_s`` and at ``await close()`` (which
    ``await client.close()`` does).

    >>> sender = async_client.sender(max_size=500, interval_s=1.0)  # doctest: +SKIP
    >>> sender.reward(decision, 1.0)  # doctest: +SKIP
    >>> await sender.flush()  # doctest: +SKIP
    True
    """

    client: AsyncClient
    batches: AsyncBatchSender

    def __init__(self, client: AsyncClient, *, max_size: int = 500, interval_s: float = 1.0) -> None:
        self.client = client
        self.batches = AsyncBatchSender(self._send, max_size=max_size, interval_s=interval_s)

    async def _send(self, name: str, rows: list) -> None:
        await self.client.reward_batch(name, rows)

    async def flush(self) -> bool:
        return await self.batches.flush()

    async def close(self) -> None:
        await self.batches.close()


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
    log: BatchSender | AsyncBatchSender

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


class LocalDecider(_LocalModel):
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

    client: Client
    log: BatchSender

    def __init__(
        self,
        client: Client,
        experiment: str,
        *,
        refresh_s: float = 1.0,
        ship_size: int = 1000,
        ship_interval_s: float = 1.0,
    ) -> None:
        super().__init__(client, experiment, refresh_s)
        self.refresh()
        self.log = BatchSender(self._ship, max_size=ship_size, interval_s=ship_interval_s, tick=self._maybe_refresh)
        client._senders.append(self.log)

    def refresh(self) -> bool:
        """Pull the model if its version changed; True when a new one was loaded."""
        return self.client._run(self._refreshing())

    def _maybe_refresh(self) -> None:
        if self._refresh_due():
            with contextlib.suppress(Unavailable):  # keep deciding with the model we have
                self.refresh()

    def _ship(self, name: str, rows: list) -> None:
        self.client._run(self._shipping(name, rows))

    def flush(self) -> bool:
        """Ship every queued decision now; True when none is left."""
        return self.log.flush()

    def close(self) -> None:
        self.log.close()


class AsyncLocalDecider(_LocalModel):
    """:class:`LocalDecider` for :class:`AsyncClient`: ``decide`` makes no call; the model and log are awaited.

    Made by ``await client.local(name)`` (which pulls the model first); a task of the loop refreshes the model
    every ``refresh_s`` by its ETag and ships the decisions in batches, and ``await client.close()`` ships
    what is left.

    >>> local = await AsyncClient("http://bandits:8000").local("hero")  # doctest: +SKIP
    >>> local.decide(unit="u42").arm  # doctest: +SKIP
    'b'
    """

    client: AsyncClient
    log: AsyncBatchSender

    def __init__(
        self,
        client: AsyncClient,
        experiment: str,
        *,
        refresh_s: float = 1.0,
        ship_size: int = 1000,
        ship_interval_s: float = 1.0,
    ) -> None:
        super().__init__(client, experiment, refresh_s)
        self.log = AsyncBatchSender(
            self._ship, max_size=ship_size, interval_s=ship_interval_s, tick=self._maybe_refresh
        )

    async def refresh(self) -> bool:
        """:meth:`LocalDecider.refresh`, awaited."""
        return await self.client._run(self._refreshing())

    async def _maybe_refresh(self) -> None:
        if self._refresh_due():
            with contextlib.suppress(Unavailable):
                await self.refresh()

    async def _ship(self, name: str, rows: list) -> None:
        await self.client._run(self._shipping(name, rows))

    async def flush(self) -> bool:
        """Ship every queued decision now; True when none is left."""
        return await self.log.flush()

    async def close(self) -> None:
        await self.log.close()


class AsyncClient(_Base):
    """:class:`Client` for asyncio (httpx.AsyncClient): the same retries, ``request_id``, fallback and report.

    Also the same batched rewards (:meth:`sender`) and local decisions (:meth:`local`), sent by tasks of the
    running loop and flushed by :meth:`close`.

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
        self._senders: list[AsyncRewardSender | AsyncLocalDecider] = []

    async def request(self, method: str, path: str, body: Any = None, headers: dict | None = None) -> httpx.Response:
        """:meth:`Client.request`, awaited."""
        attempts = _Attempts(self.retry, self.breaker, method, path)
        while True:
            try:
                response = await self.http.request(method, path, json=body, headers=headers)
            except httpx.TransportError as error:
                wait = attempts.judge(None, error)
            else:
                wait = attempts.judge(response)
                if wait is None:
                    if self.breaker.success():
                        await self.report()
                    return response
            await asyncio.sleep(wait)  # type: ignore[arg-type]  # judge gives a delay unless it answered

    async def _json(self, method: str, path: str, body: Any = None) -> Any:
        return _answer(await self.request(method, path, body))

    async def _perform(self, call: _Call) -> Any:
        if call.mode == "json":
            return await self._json(call.method, call.path, call.body)
        if call.mode == "response":
            return await self.request(call.method, call.path, call.body, call.headers)
        return await self.http.request(call.method, call.path, json=call.body, headers=call.headers)

    async def _run(self, steps: Steps[T]) -> T:
        return await _adrive(steps, self._perform)

    async def decide(
        self,
        experiment: str,
        unit: str | None = None,
        context: Iterable[float] | None = None,
        allowed: Iterable[str] | None = None,
    ) -> Decision:
        """:meth:`Client.decide`, awaited."""
        return (await self._run(self._deciding(experiment, [_request_body(unit, context, allowed)], True)))[0]

    async def decide_batch(self, experiment: str, requests: list[dict]) -> list[Decision]:
        """:meth:`Client.decide_batch`, awaited."""
        return await self._run(self._deciding(experiment, requests, False))

    async def report(self) -> int:
        """:meth:`Client.report`, awaited."""
        return await self._run(self._reporting())

    async def local(
        self, experiment: str, *, refresh_s: float = 1.0, ship_size: int = 1000, ship_interval_s: float = 1.0
    ) -> AsyncLocalDecider:
        """An :class:`AsyncLocalDecider` for ``experiment``, its model pulled: :meth:`Client.local`, awaited."""
        local = AsyncLocalDecider(
            self, experiment, refresh_s=refresh_s, ship_size=ship_size, ship_interval_s=ship_interval_s
        )
        try:
            await local.refresh()
        except BaseException:
            await local.close()
            raise
        self._senders.append(local)
        return local

    async def reward(self, decision: Decision | str, value: float, *, experiment: str | None = None) -> dict:
        """:meth:`Client.reward`, awaited."""
        return await self._run(self._rewarding(decision, value, experiment))

    async def reward_batch(self, experiment: str, rewards: list[tuple[str, float]]) -> list[dict]:
        """:meth:`Client.reward_batch`, awaited."""
        return await self._run(self._rewarding_batch(experiment, rewards))

    def sender(self, *, max_size: int = 500, interval_s: float = 1.0) -> AsyncRewardSender:
        """An :class:`AsyncRewardSender`: rewards batched by size or interval, flushed at :meth:`close`."""
        sender = AsyncRewardSender(self, max_size=max_size, interval_s=interval_s)
        self._senders.append(sender)
        return sender

    async def close(self) -> None:
        """Flush the senders and local deciders, log the fallbacks that can be, close the connections."""
        for sender in self._senders:
            await sender.close()
        if self._unreported:
            await self.report()
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

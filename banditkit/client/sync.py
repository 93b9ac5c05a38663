"""The client for threads: :class:`Client`, its batch senders and its local decider."""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from ._core import (
    CircuitBreaker,
    Decision,
    Retry,
    Steps,
    T,
    Unavailable,
    _answer,
    _Base,
    _Batches,
    _Call,
    _drive,
    _LocalModel,
    _Pause,
    _request_body,
    _RewardQueue,
    logger,
)


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
        return self._run(self._requesting(method, path, body, headers))

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        return _answer(self.request(method, path, body))

    def _perform(self, call: _Call | _Pause) -> Any:
        if isinstance(call, _Pause):
            return time.sleep(call.seconds)
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

"""Reward sources: an experiment whose policy parameters come from a separate reward service.

An experiment created (or patched) with ``"source": {"url": …, "refresh_s": …}`` is polled here, in the
background of every server process: each poll is a GET of the URL with a time limit per attempt and retries
with backoff, its answer checked (:func:`parse_answer`: the shape, every number finite and positive, the arms
exactly the experiment's), and parameters that differ from the stored ones written as a model change (a new
policy version and a ``source`` event, by compare-and-set on the version), so every worker serves them and
several workers polling the same source write each change once. A poll that fails keeps the last good
parameters, counts the failure and opens the ``source_stale`` alert, resolved at the next good answer.

The answer (Beta-Bernoulli Thompson sampling, the one policy a source can feed)::

    {"arms": {"red": {"alpha": 3, "beta": 7}, "green": {"alpha": 1.5, "beta": 2}}}

With a source, the policy state comes only from it: rewards are still joined, logged, counted and exported
(for offline evaluation), with ``applied: false``, but not learned (``docs/service.md``, "Reward sources").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..bandit import Bandit
from ..policies import Policy
from .errors import InvalidRequestError
from .model import join, split
from .schemas import AlertRequest, ExperimentCreate, SourceSpec, SourceStatusOut
from .stores.base import POLICY_PREFIX, ModelChange, ModelMovedError, StoreUnavailableError

logger = logging.getLogger("banditkit.service")

#: The policies a source can feed.
SOURCE_POLICIES = ("thompson",)
#: The largest answer read from a source, in bytes: a thousand arms take about 50 kB.
MAX_ANSWER_BYTES = 1_000_000
#: The largest alpha or beta taken from a source (a Beta posterior of a trillion observations).
MAX_PARAMETER = 1e12
#: What became of one poll (the ``outcome`` label of ``banditkit_source_fetches``).
FETCH_OUTCOMES = ("changed", "unchanged", "timeout", "unreachable", "http_error", "invalid", "store_error")
#: How often the poller looks for experiments whose source was set, changed or cleared.
RECONCILE_S = 0.1
#: The first wait before a retry; it doubles at each retry, up to the source's ``refresh_s``.
RETRY_BACKOFF_S = 0.05


class SourceError(Exception):
    """A poll of a reward source that gave no usable parameters; ``outcome`` is one of :data:`FETCH_OUTCOMES`.

    Examples
    --------
    >>> SourceError("invalid", "arm 'red' is missing").outcome
    'invalid'
    """

    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


def check_source(spec: ExperimentCreate, policy: Policy) -> None:
    """422 on ``source`` when the experiment has a source its policy cannot take parameters from.

    Examples
    --------
    >>> from banditkit.policies import make_policy
    >>> spec = ExperimentCreate(name="hero", arms=["a"], source={"url": "http://rewards:8080/"})
    >>> check_source(spec, make_policy("thompson"))
    >>> try:
    ...     check_source(spec, make_policy("ucb1"))
    ... except InvalidRequestError as error:
    ...     print(error.field)
    source
    """
    if spec.source is not None and policy.name not in SOURCE_POLICIES:
        raise InvalidRequestError(
            f"a reward source feeds the alpha and beta of each arm of policy {' or '.join(SOURCE_POLICIES)!r}; "
            f"policy {policy.name!r} cannot take its parameters from one",
            "source",
        )


def parse_answer(body: bytes, arms: list[str]) -> dict[str, tuple[float, float]]:
    """The (alpha, beta) of every arm in a source's answer, or :class:`SourceError` saying what is wrong.

    ``body`` must be a JSON object with an ``arms`` object (other keys are ignored) that names each of
    ``arms`` exactly once and nothing else, each with a finite ``alpha`` and ``beta`` in (0, 1e12] and no other
    key. NaN and infinity are refused, as JSON numbers or as the non-standard literals.

    Examples
    --------
    >>> parse_answer(b'{"arms": {"a": {"alpha": 3, "beta": 7}, "b": {"alpha": 1, "beta": 1}}}', ["a", "b"])
    {'a': (3.0, 7.0), 'b': (1.0, 1.0)}
    >>> try:
    ...     parse_answer(b'{"arms": {"a": {"alpha": 3, "beta": 7}}}', ["a", "b"])
    ... except SourceError as error:
    ...     print(error)
    arms: arm 'b' is missing (expected the experiment's arms ['a', 'b'])
    """
    if len(body) > MAX_ANSWER_BYTES:
        raise SourceError("invalid", f"the answer has {len(body)} bytes, more than {MAX_ANSWER_BYTES}")

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not a number")

    try:
        answer = json.loads(body, parse_constant=refuse)
    except (ValueError, UnicodeDecodeError) as error:
        raise SourceError("invalid", f"the answer is not JSON: {str(error)[:200]}") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("arms"), dict):
        raise SourceError("invalid", 'the answer must be a JSON object with an "arms" object')
    given: dict[str, Any] = answer["arms"]
    missing = [arm for arm in arms if arm not in given]
    if missing:
        raise SourceError("invalid", f"arms: arm {missing[0]!r} is missing (expected the experiment's arms {arms})")
    unknown = [arm for arm in given if arm not in set(arms)]
    if unknown:
        raise SourceError("invalid", f"arms: {unknown[0]!r} is not an arm of the experiment (its arms are {arms})")
    parameters: dict[str, tuple[float, float]] = {}
    for arm in arms:
        entry = given[arm]
        if not isinstance(entry, dict) or set(entry) != {"alpha", "beta"}:
            raise SourceError("invalid", f'arms.{arm}: must be {{"alpha": number, "beta": number}}, got {entry!r:.100}')
        values = []
        for key in ("alpha", "beta"):
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SourceError("invalid", f"arms.{arm}.{key}: must be a number, got {value!r:.100}")
            number = float(value)
            if not math.isfinite(number) or not 0 < number <= MAX_PARAMETER:
                raise SourceError(
                    "invalid", f"arms.{arm}.{key}: must be finite, above 0 and at most {MAX_PARAMETER:g}, got {value!r}"
                )
            values.append(number)
        parameters[arm] = (values[0], values[1])
    return parameters


def policy_arrays(policy: Policy, parameters: dict[str, tuple[float, float]], arms: list[str]) -> dict[str, np.ndarray]:
    """The Thompson policy state whose posterior is Beta(alpha, beta) per arm, shape (1, K) each.

    The state holds reward sums and pulls on top of the policy's prior: ``reward_sums = alpha - prior_alpha``
    and ``pulls = reward_sums + beta - prior_beta`` (negative where a parameter is below the prior). The
    posterior it gives back is exact for integer parameters and within one rounding of the others.

    Examples
    --------
    >>> from banditkit.policies import make_policy
    >>> policy = make_policy("thompson")
    >>> state = policy_arrays(policy, {"a": (3.0, 7.0), "b": (1.0, 1.0)}, ["a", "b"])
    >>> [values.tolist() for values in policy.posterior(state)]
    [[[3.0, 1.0]], [[7.0, 1.0]]]
    """
    alpha = np.array([parameters[arm][0] for arm in arms], dtype=np.float64)
    beta = np.array([parameters[arm][1] for arm in arms], dtype=np.float64)
    prior_alpha, prior_beta = policy.get_params()["prior_alpha"], policy.get_params()["prior_beta"]
    reward_sums = alpha - prior_alpha
    pulls = reward_sums + (beta - prior_beta)
    return {"pulls": pulls[None, :], "reward_sums": reward_sums[None, :]}


def digest(parameters: dict[str, tuple[float, float]]) -> str:
    """A short fingerprint of a source's parameters, for the event log (16 hex digits).

    Examples
    --------
    >>> len(digest({"a": (3.0, 7.0)}))
    16
    """
    text = json.dumps(sorted(parameters.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def source_change(
    parameters: dict[str, tuple[float, float]], url: str, still_wanted: Callable[[], bool] = lambda: True
) -> Callable[[Bandit], tuple[ModelChange, Bandit] | None]:
    """The model change that makes the served policy state the source's ``parameters``; None when it is already.

    Built on the model as stored (:meth:`.Engine._change_model` reloads a shared store's first), so of
    several workers that fetched the same parameters, the first writes them and the others find nothing to
    write. The reward ledger (what the rewards logged so far add up to) is kept. Nothing is written once
    ``still_wanted()`` is False: the source was cleared or changed (by a PATCH) while it was read.
    """

    def change(current: Bandit) -> tuple[ModelChange, Bandit] | None:
        if not still_wanted():
            return None
        if sorted(current.arms) != sorted(parameters):
            raise SourceError("invalid", f"the experiment's arms changed to {current.arms} while the source was read")
        model, arrays = split(current)
        wanted = policy_arrays(current.policy, parameters, current.arms)
        if all(np.array_equal(arrays[POLICY_PREFIX + key], value) for key, value in wanted.items()):
            return None
        state = {**arrays, **{POLICY_PREFIX + key: value for key, value in wanted.items()}}
        version = current.version + 1
        event = {"kind": "source", "url": url, "arms": len(parameters), "digest": digest(parameters)}
        return ModelChange(model, state, version, current.version, event), join(model, state, version, current.rng)

    return change


@dataclass
class SourceState:
    """What polling one experiment's source has given so far, in this process."""

    spec: SourceSpec
    started_at: float = field(default_factory=time.time)
    last_success_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    consecutive_failures: int = 0
    policy_version: int | None = None
    #: Whether the ``source_stale`` alert is known to be open (True), resolved (False) or not known (None).
    alert_open: bool | None = None

    def status(self, now: float) -> SourceStatusOut:
        since = self.last_success_at if self.last_success_at is not None else self.started_at
        return SourceStatusOut(
            url=self.spec.url,
            last_success_at=self.last_success_at,
            age_s=max(now - since, 0.0),
            failing=self.consecutive_failures > 0,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            consecutive_failures=self.consecutive_failures,
            policy_version=self.policy_version,
        )


class SourcePoller:
    """Polls the reward source of every served experiment that has one, in background tasks of the event loop.

    One task per experiment; an experiment whose source is set, changed or cleared (by a PATCH here or in
    another worker) is picked up within :data:`RECONCILE_S`. Never on a request's path: decisions are served
    from the stored parameters whatever the source does.
    """

    def __init__(self, engine: Any, metrics: Any = None) -> None:
        # An Engine and a Metrics or None; not imported here: both import this module through .experiment.
        self.engine = engine
        self.metrics = metrics
        self.states: dict[str, SourceState] = {}
        self._tasks: dict[str, tuple[SourceSpec, asyncio.Task]] = {}
        self._client: Any = None
        engine.source_status = self.status
        if metrics is not None:
            metrics.source_ages = self.ages

    def status(self, name: str) -> SourceStatusOut | None:
        """How polling the source of ``name`` goes; None when it has no source (or it was not polled yet)."""
        state = self.states.get(name)
        experiment = self.engine.experiments.get(name)
        if state is None or experiment is None or experiment.config.source is None:
            return None
        return state.status(time.time())

    def ages(self) -> dict[str, float]:
        """Seconds since each polled experiment's last good answer (since polling started, before one)."""
        now = time.time()
        return {name: state.status(now).age_s for name, state in self.states.items()}

    async def run_forever(self) -> None:
        """Keep one polling task per experiment with a source, until cancelled."""
        import httpx  # the service extra's

        async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
            self._client = client
            try:
                while True:
                    self.reconcile()
                    await asyncio.sleep(RECONCILE_S)
            finally:
                for _, task in self._tasks.values():
                    task.cancel()
                for _, task in self._tasks.values():
                    with contextlib.suppress(BaseException):
                        await task
                self._tasks.clear()

    def reconcile(self) -> None:
        """Start polling the sources set since the last call; stop those cleared or changed."""
        wanted = {
            name: experiment.config.source
            for name, experiment in self.engine.experiments.items()
            if experiment.config.source is not None
        }
        for name, (spec, task) in list(self._tasks.items()):
            if wanted.get(name) != spec or task.done():
                task.cancel()
                del self._tasks[name]
        for name in list(self.states):
            if name not in wanted:
                del self.states[name]
        for name, spec in wanted.items():
            if name not in self._tasks:
                state = self.states.get(name)
                if state is None or state.spec.url != spec.url:
                    self.states[name] = SourceState(spec)
                else:
                    state.spec = spec
                self._tasks[name] = (spec, asyncio.create_task(self._poll_forever(name, spec)))

    async def _poll_forever(self, name: str, spec: SourceSpec) -> None:
        while True:
            try:
                await self.poll(name)
            except Exception:  # never expected; the next round tries again
                logger.exception("polling the reward source of %r failed", name)
            await asyncio.sleep(spec.refresh_s)

    async def poll(self, name: str) -> str:
        """Fetch the source of ``name`` once (with its retries) and serve its answer; the outcome."""
        state = self.states[name]
        spec = state.spec
        experiment = self.engine.experiment(name)
        try:
            parameters = await fetch(self._client, spec, list(experiment.bandit.arms))
            still = lambda: experiment.config.source == spec
            # The engine's one path for model changes (reload, build, compare-and-set, retry), as PATCH takes.
            written = await self.engine._change_model(experiment, source_change(parameters, spec.url, still))
        except SourceError as error:
            return await self._failed(name, state, error.outcome, str(error))
        except (StoreUnavailableError, ModelMovedError) as error:  # the store's fault, not the source's
            logger.warning("experiment %r: the reward source's parameters were not stored: %s", name, error)
            self._count(name, "store_error")
            return "store_error"
        if state.consecutive_failures:
            logger.warning(
                "experiment %r: reward source answers again after %d failed polls", name, state.consecutive_failures
            )
        state.last_success_at = time.time()
        state.consecutive_failures = 0
        if written is not None:
            state.policy_version = written.version
        elif state.policy_version is None:
            state.policy_version = experiment.bandit.version
        outcome = "changed" if written is not None else "unchanged"
        self._count(name, outcome)
        if state.alert_open is not False:
            await self._alert(name, state, AlertRequest(kind="source_stale", state="resolved"))
        return outcome

    async def _failed(self, name: str, state: SourceState, outcome: str, message: str) -> str:
        now = time.time()
        error = f"{outcome}: {message}"
        # Logged when the source starts failing or fails otherwise, not at every poll of an outage.
        log = logger.warning if state.consecutive_failures == 0 or error != state.last_error else logger.debug
        log("experiment %r: reward source %s; serving the last good parameters", name, error)
        state.last_error, state.last_error_at = error, now
        state.consecutive_failures += 1
        self._count(name, outcome)
        if state.alert_open is not True:
            status = state.status(now)
            alert = AlertRequest(
                kind="source_stale",
                detail=f"{state.last_error}"[:1000],
                value=status.age_s,
                threshold=state.spec.refresh_s,
            )
            await self._alert(name, state, alert)
        return outcome

    async def _alert(self, name: str, state: SourceState, alert: AlertRequest) -> None:
        """Write the alert's opening or resolution once (a no-op when it is so already); retried next poll."""
        try:
            await self.engine.record_alert(name, alert)
        except Exception as error:
            logger.warning("experiment %r: alert source_stale not written: %s", name, error)
            return
        state.alert_open = alert.state == "open"

    def _count(self, name: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.sourced(name, outcome)


async def fetch(client: Any, spec: SourceSpec, arms: list[str]) -> dict[str, tuple[float, float]]:
    """GET ``spec.url`` (``retries`` more times after a failed attempt, with backoff) and parse its answer.

    Each attempt must end within ``timeout_s``, its last byte included. An unreachable source, a timeout and
    a 5xx answer are retried; a 4xx answer and an invalid one are not (the same request would get the same).
    """
    last: SourceError | None = None
    for attempt in range(spec.retries + 1):
        if attempt:
            await asyncio.sleep(min(RETRY_BACKOFF_S * 2 ** (attempt - 1), spec.refresh_s))
        try:
            body = await asyncio.wait_for(_get(client, spec.url, spec.timeout_s), spec.timeout_s)
        except TimeoutError:
            last = SourceError("timeout", f"no complete answer within {spec.timeout_s:g} s")
            continue
        except SourceError as error:
            if error.outcome != "http_error" or not str(error).startswith("HTTP 5"):
                raise
            last = error
            continue
        except Exception as error:  # httpx's transport errors: refused, reset, DNS, its own timeouts
            kind = "timeout" if "Timeout" in type(error).__name__ else "unreachable"
            last = SourceError(kind, f"{type(error).__name__}: {error}"[:300])
            continue
        return parse_answer(body, arms)
    assert last is not None
    raise last


async def _get(client: Any, url: str, timeout_s: float) -> bytes:
    """The body of a 200 answer to GET ``url``, read up to :data:`MAX_ANSWER_BYTES` (else :class:`SourceError`)."""
    async with client.stream("GET", url, timeout=timeout_s, headers={"Accept": "application/json"}) as response:
        if response.status_code != 200:
            raise SourceError("http_error", f"HTTP {response.status_code} from {url}")
        chunks = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise SourceError("invalid", f"the answer is longer than {MAX_ANSWER_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

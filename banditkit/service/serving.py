"""Serving decisions from exact action distributions, cached per (policy version, allowed arms).

Every logged decision needs the probability of every arm. For Thompson
sampling that is a numerical integral (milliseconds), so the distribution is
computed once per state and cached; arms are then drawn from it (by the unit's
hash for deterministic assignment, else by the experiment's random stream),
which is exactly the policy's own distribution, and the propensity is read off.

While rewards keep changing the state, a cached distribution may be served
for up to ``refresh_s`` seconds while a background thread computes the next
one, starting at most two such computations per ``refresh_s``: a policy that
changes hundreds of times a second then costs a few integrals a second, not
hundreds. Decisions log the version they were drawn from, so the propensity
is always exact for the policy that made the choice. A change of arms or of
guardrail status (a disabled arm) is never served from an old entry.
"""

from __future__ import annotations

import copy
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..assign import assign_one, assign_rows, cumulative
from ..bandit import Bandit
from .model import guarded
from .stores.base import Probabilities

#: Serve-time masks one experiment's cache keeps at most ...
_MAX_ENTRIES = 256
#: ... and arm probabilities in all (about 165 bytes each with their dict and running sums: some 0.7 MB), so a
#: client sending many different ``allowed`` lists to an experiment of many arms cannot grow its memory without
#: bound: 256 masks of up to 16 arms, 4 distributions of 1,000 arms. The cache empties when either is reached.
_MAX_CACHED_ARMS = 4096
#: Distributions cheaper than this are always computed for the current version.
_CHEAP_S = 0.001


@dataclass(frozen=True)
class Distribution:
    """The action distribution of one policy version for one set of allowed arms."""

    version: int
    arms: tuple[str, ...]
    guard: tuple
    probabilities: np.ndarray  # (K,)
    cumulative: list[float]  # running sums, for one-row draws without numpy overhead
    last: int  # the last arm with positive probability
    as_dict: Probabilities
    fallback: bool  # True when only the default arm can be served (abort, nothing allowed)
    computed_at: float
    cost_s: float


def compute(bandit: Bandit, allowed: tuple[str, ...] | None) -> Distribution:
    """The exact distribution of ``bandit`` (a consistent view) for ``allowed`` arms."""
    started = time.perf_counter()
    probabilities = bandit.probabilities(allowed=None if allowed is None else list(allowed))
    vector = np.fromiter(probabilities.values(), dtype=np.float64, count=len(probabilities))
    active = set(bandit.active_arms if allowed is None else set(allowed) & set(bandit.active_arms))
    fallback = bool(bandit.aborted or not active)
    sums, last = cumulative(vector)
    return Distribution(
        bandit.version,
        tuple(bandit.arms),
        guarded(bandit),
        vector,
        sums,
        last,
        Probabilities(probabilities),
        fallback,
        time.monotonic(),
        time.perf_counter() - started,
    )


class DistributionCache:
    """Per-experiment cache of distributions keyed by the allowed arms (None = all)."""

    def __init__(self, lock: threading.Lock, refresh_s: float, executor: ThreadPoolExecutor | None) -> None:
        self._lock = lock
        self._refresh_s = refresh_s
        self._executor = executor
        self._entries: dict[tuple[str, ...] | None, Distribution] = {}
        self._refreshing: set = set()
        self._refresh_started: dict[tuple[str, ...] | None, float] = {}

    def sibling(self) -> DistributionCache:
        """An empty cache under the same lock and refresh rules (a candidate policy's, beside the experiment's)."""
        return DistributionCache(self._lock, self._refresh_s, self._executor)

    def view(self, bandit: Bandit) -> Bandit:
        """A shallow copy taken under the experiment lock: a consistent state and version to compute on."""
        with self._lock:
            return copy.copy(bandit)

    def get(self, bandit: Bandit, allowed: tuple[str, ...] | None) -> Distribution:
        entry = self._entries.get(allowed)
        if entry is not None and entry.version == bandit.version:
            return entry
        if (
            entry is not None
            and self._executor is not None
            and entry.cost_s >= _CHEAP_S
            and entry.arms == tuple(bandit.arms)
            and entry.guard == guarded(bandit)
            and time.monotonic() - entry.computed_at < self._refresh_s
        ):
            self._refresh_later(bandit, allowed)
            return entry
        return self._store(allowed, compute(self.view(bandit), allowed))

    def clear(self) -> None:
        self._entries.clear()
        self._refresh_started.clear()

    def _store(self, allowed, entry: Distribution) -> Distribution:
        if allowed not in self._entries and (
            len(self._entries) >= _MAX_ENTRIES or (len(self._entries) + 1) * len(entry.arms) > _MAX_CACHED_ARMS
        ):
            self.clear()
        current = self._entries.get(allowed)
        if current is None or current.version <= entry.version:
            self._entries[allowed] = entry
        return entry

    def _refresh_later(self, bandit: Bandit, allowed) -> None:
        now = time.monotonic()
        if allowed in self._refreshing or now - self._refresh_started.get(allowed, -np.inf) < self._refresh_s / 2:
            return
        assert self._executor is not None  # get() refreshes in the background only with an executor
        self._refreshing.add(allowed)
        self._refresh_started[allowed] = now

        def refresh() -> None:
            try:
                self._store(allowed, compute(self.view(bandit), allowed))
            finally:
                self._refreshing.discard(allowed)

        self._executor.submit(refresh)


def draw(entry: Distribution, experiment: str, units: list[str | None], rng: np.random.Generator) -> list[int]:
    """Arm indices for rows sharing ``entry``: deterministic for rows with a unit, random otherwise.

    One row takes :func:`~banditkit.assign.assign_one` on the cached sums, skipping numpy's overhead.
    """
    if len(units) > 1:
        return assign_rows(entry.probabilities[None, :], experiment, units, rng).tolist()
    (unit,) = units
    return [assign_one(entry.cumulative, entry.last, experiment, unit, rng)]

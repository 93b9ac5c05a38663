"""Change detection in reward streams: a two-sided Bernoulli CUSUM with a stated false-alarm rate.

An arm whose reward rate moves (a broken page, a seasonal swing) breaks the stationarity every bandit
assumes. :class:`ShiftDetector` watches many streams at once (one per arm) and raises an alarm when the
rate has moved up or down by at least ``shift``.

Each side is Page's CUSUM of the log-likelihood ratio of "rate ``p0 + shift``" (or ``p0 - shift``)
against "rate ``p0``", where ``p0`` is the running mean of the stream since its last alarm. For rewards in
[0, 1] with mean ``p0``, ``exp`` of that ratio has expectation at most 1 (Bernoulli or not, by convexity), so
Ville's inequality bounds the chance that a CUSUM started at any one step ever crosses ``h``: ``exp(-h)``.
With ``h = log(2 * arl)`` and a union over the two sides and the ``n`` starting steps, **a stationary stream
raises a false alarm within its first n rewards with probability at most n / arl** (the baseline known; the
running mean keeps the measured rate well below it, ``tests/test_changes.py``). A step change of
the rate from ``p0`` to ``q`` is detected after about ``h / E_q[llr]`` rewards
(:meth:`ShiftDetector.expected_delay`).

Reference: E. S. Page (1954), "Continuous inspection schemes", Biometrika 41; G. Lorden (1971),
"Procedures for reacting to a change in distribution", Ann. Math. Statist. 42.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validation import check_int, check_real
from .errors import InvalidParameterError

#: Rates are kept this far from 0 and 1, where a log-likelihood ratio would be infinite.
_EDGE = 1e-3


@dataclass(frozen=True)
class ShiftState:
    """What a :class:`ShiftDetector` remembers per stream, arrays of shape (n_streams,).

    ``count`` and ``total`` are the rewards seen since the last alarm and their sum (the baseline is
    their mean); ``up`` and ``down`` are the two CUSUM statistics.

    Examples
    --------
    >>> state = ShiftDetector().init_state(2)
    >>> state.count.tolist(), state.up.tolist()
    ([0, 0], [0.0, 0.0])
    """

    count: np.ndarray
    total: np.ndarray
    up: np.ndarray
    down: np.ndarray

    def take(self, rows: np.ndarray) -> ShiftState:
        """The state of the streams at ``rows`` (n,), in that order; a row of -1 is a fresh stream.

        What a caller whose streams come and go (arms added, removed) needs to carry the others over.

        Examples
        --------
        >>> state = ShiftDetector(warmup=1).init_state(1)
        >>> state, _ = ShiftDetector(warmup=1).update(state, [[1.0, 0.0]])
        >>> state.take(np.array([-1, 0])).count.tolist()
        [0, 2]
        """
        rows = np.asarray(rows, dtype=np.int64)
        fresh = rows < 0
        safe = np.where(fresh, 0, rows)

        def pick(array: np.ndarray) -> np.ndarray:
            if array.size == 0:
                return np.zeros(rows.shape, dtype=array.dtype)
            return np.where(fresh, 0, array[safe]).astype(array.dtype)

        return ShiftState(pick(self.count), pick(self.total), pick(self.up), pick(self.down))


@dataclass(frozen=True)
class ShiftDetector:
    """Two-sided Bernoulli CUSUM over many reward streams at once, tuned by its false-alarm rate.

    Parameters
    ----------
    shift : float in (0, 0.5]
        The smallest change of the reward rate to detect, in units of the reward range mapped to [0, 1].
    arl : float >= 2
        False-alarm budget: a stationary stream alarms within its first ``n`` rewards with probability at
        most ``n / arl`` (so on average not before ``arl`` rewards).
    warmup : int >= 1
        Rewards a stream sees (after the start or an alarm) before it can alarm: its baseline's first data.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> detector = ShiftDetector(shift=0.2, arl=1000, warmup=50)
    >>> rewards = np.concatenate([rng.random(400) < 0.2, rng.random(400) < 0.6]).astype(float)
    >>> state, alarms = detector.update(detector.init_state(1), rewards[None, :])
    >>> step = int(np.flatnonzero(alarms[0])[0])
    >>> 400 < step < 400 + 3 * detector.expected_delay(0.2, 0.6)
    True
    """

    shift: float = 0.1
    arl: float = 10_000.0
    warmup: int = 100

    def __post_init__(self) -> None:
        check_real("shift", self.shift, low=0.0, high=0.5, low_open=True)
        check_real("arl", self.arl, low=2.0)
        check_int("warmup", self.warmup, low=1)

    @property
    def threshold(self) -> float:
        """``h = log(2 * arl)``: the level each side's statistic must cross."""
        return math.log(2.0 * self.arl)

    def init_state(self, n_streams: int) -> ShiftState:
        """The state of ``n_streams`` streams that have seen nothing."""
        return ShiftState(
            np.zeros(n_streams, dtype=np.int64),
            np.zeros(n_streams),
            np.zeros(n_streams),
            np.zeros(n_streams),
        )

    def expected_delay(self, before: float, after: float) -> float:
        """Rewards needed on average to detect a step of the rate from ``before`` to ``after`` (both in [0, 1]).

        ``h`` over the mean log-likelihood ratio per reward after the step, the baseline known (Lorden's
        first-order delay); ``inf`` when the step is smaller than ``shift``'s reach.
        """
        p0 = min(max(before, _EDGE), 1 - _EDGE)
        p1 = min(max(p0 + math.copysign(self.shift, after - before), _EDGE), 1 - _EDGE)
        drift = after * math.log(p1 / p0) + (1 - after) * math.log((1 - p1) / (1 - p0))
        return self.threshold / drift if drift > 0 else math.inf

    def update(self, state: ShiftState, rewards) -> tuple[ShiftState, np.ndarray]:
        """Feed ``rewards`` of shape (n_streams, n_steps), values in [0, 1], NaN where a stream has none.

        Returns the new state and the alarms, a boolean array of the rewards' shape: True at each reward
        that completed a detection. A stream restarts (new baseline, new warmup) after each alarm.
        """
        x = np.array(rewards, dtype=np.float64, ndmin=2)
        if x.ndim != 2 or x.shape[0] != state.count.shape[0]:
            raise InvalidParameterError(
                f"rewards must have shape ({state.count.shape[0]}, n_steps), got {x.shape}", field="rewards"
            )
        seen = ~np.isnan(x)
        if np.any((x[seen] < 0) | (x[seen] > 1)):
            raise InvalidParameterError("rewards must be in [0, 1] (or NaN for none)", field="rewards")
        count, total, up, down = (array.copy() for array in (state.count, state.total, state.up, state.down))
        alarms = np.zeros(x.shape, dtype=bool)
        rows = np.arange(x.shape[0])
        while rows.size:
            part = x[rows]
            c, t, u, d, first = self._scan(count[rows], total[rows], up[rows], down[rows], part)
            fired = first >= 0
            keep = rows[~fired]
            count[keep], total[keep], up[keep], down[keep] = c[~fired], t[~fired], u[~fired], d[~fired]
            rows, first = rows[fired], first[fired]
            alarms[rows, first] = True
            count[rows], total[rows], up[rows], down[rows] = 0, 0.0, 0.0, 0.0
            # The rest of an alarmed stream is scanned again from the step after its alarm.
            block = x[rows]
            block[np.arange(x.shape[1])[None, :] <= first[:, None]] = np.nan
            x[rows] = block
        return ShiftState(count, total, up, down), alarms

    def _scan(self, count, total, up, down, x):
        """One vectorized pass without resets: the state at the end and each stream's first alarm (-1: none)."""
        seen = ~np.isnan(x)
        values = np.where(seen, x, 0.0)
        n_before = count[:, None] + np.cumsum(seen, axis=1) - seen
        sum_before = total[:, None] + np.cumsum(values, axis=1) - values
        p0 = np.clip((sum_before + 0.5) / (n_before + 1.0), _EDGE, 1 - _EDGE)
        live = seen & (n_before >= self.warmup)
        crossed = np.zeros(x.shape, dtype=bool)
        ends = []
        for sign, start in ((1.0, up), (-1.0, down)):
            p1 = np.clip(p0 + sign * self.shift, _EDGE, 1 - _EDGE)
            llr = np.where(live, values * np.log(p1 / p0) + (1 - values) * np.log((1 - p1) / (1 - p0)), 0.0)
            walk = np.cumsum(llr, axis=1)
            # Lindley's recursion g_t = max(0, g_{t-1} + s_t) in closed form: S_t - min(-g_0, S_1..S_t).
            statistic = walk - np.minimum(np.minimum.accumulate(walk, axis=1), -start[:, None])
            crossed |= statistic > self.threshold
            ends.append(statistic[:, -1] if x.shape[1] else start)
        first = np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1)
        return count + seen.sum(axis=1), total + values.sum(axis=1), ends[0], ends[1], first

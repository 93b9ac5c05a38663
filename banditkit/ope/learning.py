"""A learning policy replayed on a log: its online reward curve, estimated offline.

Replay (Li, Chu, Langford & Wang, WSDM 2011) walks the log in order; at each
row the bandit decides for the logged context and, when its arm is the logged
one, the row is *accepted*: the bandit sees the logged reward and learns from
it. Other rows are skipped. On a uniform log each accepted step is distributed
exactly as a step of the bandit run online, so the first T accepted rewards are
an unbiased sample of its first T online rewards.

A non-uniform log is first thinned by rejection sampling: row i is kept with
probability ``floor / propensity_i`` (``floor`` = the smallest propensity, so
M = 1 / floor bounds every ratio ``pi(a|x) / (M p(a|x))``). Every arm then
survives with probability ``floor`` whatever its propensity, the kept rows form
a uniform log over the same contexts, and the replay above applies unchanged:
still unbiased, at the price of variance, since only a share ``K * floor``
(reported as ``kept_rows``, the effective sample size of the thinning) of the
rows is kept. A ``floor`` above the smallest propensity keeps more rows but
over-represents the rarely logged arms: a bias, reported as a warning.

Three ways through the kept rows, each deciding every row on exactly the state
it would see row by row:

* A policy with its own replay loop (``Policy.replay``: LinUCB and LinTS when
  numba is installed; Beta Thompson sampling, UCB1 and epsilon-greedy once
  their compiled kernels are loaded) decides and learns in one compiled call, with the very kernels of
  its one-row ``select`` and ``update`` and the same draws from the bandit's
  generator; the bandit then takes the learned state with ``absorb``
  (one version per accepted row). The result is the row-by-row replay's.
  Guardrails that act on rewards or cap exploration change later decisions, so
  such a bandit takes one of the two ways below.
* Otherwise, with contexts: between two accepted rows the bandit's state does
  not change, so it decides for a batch of upcoming rows at once
  (``select_many``); the rows up to and including the first accepted one are
  final, later rows are decided again after the update (their first draws are
  spent, so the accepted rows are a row-by-row replay's in distribution, and
  exactly them when the policy's choices draw nothing, as LinUCB without ties).
* Without contexts the bandit decides with ``select()`` per row: its fast path
  costs less than a batch's exact action distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._typing import FloatArray, IntArray, RngLike
from .._validation import check_int, check_real
from ..errors import InvalidParameterError, InvalidTypeError, UnknownArmError
from ..policies import make_policy
from ..policies.base import Policy
from .logs import LoggedData, _rows, load_log

#: Decide this many times the expected rows per acceptance at once: a batch without a match is rare (e^-3).
_BATCH_FACTOR = 3.0
_MAX_BATCH = 4096
#: Fewest accepted steps for an interval (as for the estimators of ``evaluate``).
_MIN_STEPS = 10


@dataclass(frozen=True, eq=False)
class ReplayResult:
    """A learning policy's replayed run: the mean reward per step with its interval, and the reward curve.

    ``value``: mean reward over the ``steps`` accepted steps; ``low``/``high``: its interval (percentiles of
    bootstrap replays with ``n_bootstrap``, else normal, see :func:`replay_learning`). ``rewards``, ``arms``,
    ``rows``: per accepted step, shape (steps,): the reward, the arm index (``arm_names``) and the log row.
    ``curve_low``/``curve_high``: interval of the cumulative reward after each step, shape (steps,).
    ``kept_rows``: rows left after the rejection thinning (every row of a uniform log); ``floor``: the
    propensity the thinning used. ``bandit``: the replayed copy, after learning from every accepted step.
    ``run_steps``: rows the replay accepted. With ``n_bootstrap`` every figure above covers the first ``steps``
    steps, the fewest any replay reached (this one or a bootstrap replay), so that each interval is taken over
    all ``n_bootstrap`` replays; ``steps == run_steps`` otherwise. ``bootstrap_steps``, ``bootstrap_values``:
    per bootstrap replay, shape (n_bootstrap,) (empty without): the steps it accepted (at most ``run_steps``)
    and its mean reward over the first ``steps`` (NaN below 10 steps, where no interval is reported).

    Examples
    --------
    >>> import numpy as np
    >>> import banditkit as bk
    >>> from banditkit.ope import replay_learning
    >>> rng = np.random.default_rng(0)
    >>> arms = rng.integers(0, 2, 2000)
    >>> log = {"arm": arms, "reward": (rng.random(2000) < np.where(arms == 1, 0.7, 0.3)).astype(float),
    ...        "propensity": np.full(2000, 0.5)}
    >>> result = replay_learning(log, bk.ThompsonSampling(), rng=1)
    >>> result.steps, sorted(result.curve())
    (1047, ['high', 'low', 'mean_reward', 'reward', 'step'])
    """

    value: float
    low: float
    high: float
    rewards: FloatArray
    arms: IntArray
    rows: IntArray
    curve_low: FloatArray
    curve_high: FloatArray
    arm_names: tuple[str, ...]
    n_rows: int
    kept_rows: int
    floor: float
    n_bootstrap: int
    confidence: float
    bandit: Any
    run_steps: int
    bootstrap_steps: IntArray
    bootstrap_values: FloatArray
    warnings: tuple[str, ...] = field(default=())

    @property
    def steps(self) -> int:
        """Accepted steps every figure covers: how long an online run the replay stands for (see ``run_steps``)."""
        return int(self.rewards.shape[0])

    @property
    def acceptance_rate(self) -> float:
        """Rows the replay accepted (``run_steps``) per logged row."""
        return self.run_steps / self.n_rows

    def cumulative_reward(self) -> FloatArray:
        """Cumulative reward after each accepted step, shape (steps,)."""
        cumulative: FloatArray = np.cumsum(self.rewards)
        return cumulative

    def regret(self, optimal_reward: float | FloatArray) -> FloatArray:
        """Cumulative regret against ``optimal_reward`` per step (scalar or shape (steps,)), as ``bk.sim`` plots it.

        Pass the best arm's mean reward when it is known (a simulated log), to set the replayed curve beside a
        simulation's ``result.regret(name)``.
        """
        optimal = np.broadcast_to(np.asarray(optimal_reward, dtype=np.float64), self.rewards.shape)
        regret: FloatArray = np.cumsum(optimal) - self.cumulative_reward()
        return regret

    def curve(self) -> dict[str, FloatArray]:
        """Columns step, reward (cumulative), low, high and mean_reward, each shape (steps,)."""
        steps = np.arange(1, self.steps + 1, dtype=np.float64)
        cumulative = self.cumulative_reward()
        return {
            "step": steps,
            "reward": cumulative,
            "low": self.curve_low,
            "high": self.curve_high,
            "mean_reward": cumulative / steps,
        }

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready values (NaN becomes None); the curve is in :meth:`curve`."""
        values = {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "steps": self.steps,
            "run_steps": self.run_steps,
            "n_rows": self.n_rows,
            "kept_rows": self.kept_rows,
            "floor": self.floor,
            "acceptance_rate": self.acceptance_rate,
            "n_bootstrap": self.n_bootstrap,
            "confidence": self.confidence,
        }
        out = {key: None if isinstance(v, float) and math.isnan(v) else v for key, v in values.items()}
        return {**out, "warnings": list(self.warnings)}


def replay_learning(
    log: Any,
    policy_or_bandit: Any,
    *,
    max_steps: int | None = None,
    floor: float | None = None,
    n_bootstrap: int = 0,
    confidence: float = 0.95,
    rng: RngLike = 0,
) -> ReplayResult:
    """Replay a learning policy on ``log``: the rewards it would have earned online, learning as it goes.

    The bandit learns only from accepted rows (see the module docstring): in the policy's compiled replay
    loop where it has one (LinUCB, LinTS, Thompson sampling), else through ``select_many`` in batches with contexts or
    ``select`` per row without, and ``update``. The Bandit passed in is copied, never changed, and its
    copy draws from ``rng``.

    Parameters
    ----------
    log : path, DataFrame, mapping of columns or LoggedData (see :func:`load_log`); one slot per row
    policy_or_bandit : Bandit, or a policy / registry name (a Bandit over the log's arms is built)
    max_steps : int, optional
        Stop after this many accepted steps (the horizon of the online run to compare with).
    floor : float in (0, 1], optional
        Propensity of the rejection thinning; default the log's smallest (no bias). Uniform logs keep every row.
    n_bootstrap : int
        Bootstrap replays (each row repeated Poisson(1) times, order kept; Mary, Preux & Nicol 2014) for
        intervals that include the run-to-run spread of the learning. 0 gives the normal interval
        ``value +- z sd / sqrt(steps)`` on the accepted rewards: it covers the mean expected reward along
        this run, not what another run of the policy would earn. A bootstrap replay has no reward past the
        rows it accepts, and keeping only the replays that reach a step keeps the lucky resamples (an interval
        too narrow), so with ``n_bootstrap`` the result stops at the fewest steps any replay accepted, where
        each percentile is over all ``n_bootstrap`` replays (the replay's own count is ``run_steps``).
    confidence : interval level in (0, 1)
    rng : seed or numpy.random.Generator for the thinning, the bandit's draws and the bootstrap

    Examples
    --------
    >>> import banditkit as bk
    >>> rng = np.random.default_rng(0)
    >>> arms = rng.integers(0, 2, 2000)
    >>> log = {"arm": arms, "reward": (rng.random(2000) < np.where(arms == 1, 0.7, 0.3)).astype(float),
    ...        "propensity": np.full(2000, 0.5)}
    >>> result = replay_learning(log, bk.ThompsonSampling(), rng=1)
    >>> round(result.value, 3), result.steps, round(result.low, 3), round(result.high, 3)
    (0.707, 1047, 0.679, 0.734)

    Reference: Li, Chu, Langford & Wang, "Unbiased offline evaluation of contextual-bandit-based news
    article recommendation algorithms", WSDM 2011.
    """
    log = load_log(log)
    max_steps = None if max_steps is None else check_int("max_steps", max_steps, low=1)
    n_bootstrap = check_int("n_bootstrap", n_bootstrap, low=0)
    confidence = check_real("confidence", confidence, low=0.0, high=1.0, low_open=True, high_open=True)
    if log.n_positions > 1:
        raise InvalidParameterError(f"replay_learning takes one slot per row; the log has {log.n_positions} positions")
    smallest = float(log.propensities.min())
    floor = smallest if floor is None else check_real("floor", floor, low=smallest, high=1.0)
    streams = _generators(rng, 2 + 2 * n_bootstrap)
    template = _bandit(policy_or_bandit, log)
    arms = _bandit_arms(template, log, smallest)
    kept = _thinned(np.arange(log.n_rows), log.propensities, floor, streams[0])
    run = _replayed(template, log, arms, kept, max_steps, streams[1])
    run_steps = run.rows.shape[0]
    bootstrap_steps: IntArray = np.zeros(0, dtype=np.intp)
    bootstrap_values: FloatArray = np.zeros(0)
    if n_bootstrap:
        curves = _bootstrap(template, log, arms, floor, run_steps, streams[2:])
        bootstrap_steps = np.array([curve.shape[0] for curve in curves], dtype=np.intp)
        steps = min(run_steps, int(bootstrap_steps.min()))
        if steps < run_steps:  # the same replay, stopped where every bootstrap replay still has a reward
            run = _replayed(template, log, arms, kept, steps, streams[1])
        rewards = log.rewards[run.rows]
        low, high, curve_low, curve_high, bootstrap_values = _percentiles(curves, steps, confidence)
    else:
        rewards = log.rewards[run.rows]
        low, high, curve_low, curve_high = _normal(rewards, confidence)
    value = float(np.cumsum(rewards)[-1] / rewards.shape[0]) if rewards.shape[0] else math.nan
    return ReplayResult(
        value,
        low,
        high,
        rewards,
        np.asarray(arms[run.rows], dtype=np.intp),
        run.rows,
        curve_low,
        curve_high,
        tuple(run.bandit.arms),
        log.n_rows,
        kept.shape[0],
        floor,
        n_bootstrap,
        confidence,
        run.bandit,
        run_steps,
        bootstrap_steps,
        bootstrap_values,
        tuple(_warnings(log, rewards.shape[0], run_steps, kept.shape[0], floor, smallest)),
    )


@dataclass(frozen=True, eq=False)
class _Run:
    rows: IntArray
    bandit: Any


def _generators(rng: RngLike, count: int) -> list[np.random.Generator]:
    """Independent streams: the thinning, the replay, then two per bootstrap replay."""
    if isinstance(rng, np.random.Generator):
        return rng.spawn(count)
    if isinstance(rng, bool) or not isinstance(rng, int | np.integer):
        raise InvalidTypeError(f"rng must be an int seed or a numpy.random.Generator, got {type(rng).__name__}")
    return [np.random.default_rng(seed) for seed in np.random.SeedSequence(int(rng)).spawn(count)]


def _bandit(policy_or_bandit: Any, log: LoggedData) -> Any:
    """The Bandit to replay: the one given, or one over the log's arms for a policy or registry name."""
    from ..bandit import Bandit

    if isinstance(policy_or_bandit, Bandit):
        return policy_or_bandit
    if not isinstance(policy_or_bandit, Policy | str | dict):
        raise InvalidTypeError(
            f"policy_or_bandit must be a Bandit, a policy or a policy name, got {type(policy_or_bandit).__name__}"
        )
    policy = make_policy(policy_or_bandit)
    n_features = log.contexts.shape[1] if policy.contextual and log.contexts is not None else None
    return Bandit(list(log.arm_names), policy=policy, n_features=n_features)


def _bandit_arms(bandit: Any, log: LoggedData, smallest: float) -> IntArray:
    """Each row's logged arm as a bandit arm index; errors for arms one side does not know."""
    lookup = {name: i for i, name in enumerate(bandit.arms)}
    remap = np.array([lookup.get(name, -1) for name in log.arm_names], dtype=np.intp)
    unknown = remap[log.arms] < 0
    if unknown.any():
        first = log.arm_names[log.arms[unknown][0]]
        raise UnknownArmError(f"logged arm {first!r} is not an arm of the bandit {bandit.arms} {_rows(unknown)}")
    unseen = sorted(set(bandit.active_arms) - set(log.arm_names))
    if unseen:
        raise InvalidParameterError(
            f"bandit arms {unseen} never appear in the log, so the replay cannot tell what they earn; "
            "disable them (bandit.disable_arm) to replay the others"
        )
    if len(bandit.active_arms) * smallest > 1.0 + 1e-9:
        raise InvalidParameterError(
            f"the log's smallest propensity {smallest:g} cannot cover the bandit's "
            f"{len(bandit.active_arms)} active arms (their propensities would sum above 1): "
            "the logging policy did not give every arm a chance"
        )
    if bandit.policy.contextual and log.contexts is None:
        raise InvalidParameterError(f"policy {bandit.policy.name!r} is contextual but the log has no context")
    arms: IntArray = remap[log.arms]
    return arms


def _thinned(order: IntArray, propensities: FloatArray, floor: float, rng: np.random.Generator) -> IntArray:
    """The rows of ``order`` kept by the rejection step, each with probability min(1, floor / propensity)."""
    keep_probability = np.minimum(floor / propensities[order], 1.0)
    if (keep_probability >= 1.0).all():
        return order
    kept: IntArray = order[rng.random(order.shape[0]) < keep_probability]
    return kept


def _copy(bandit: Any, rng: np.random.Generator) -> Any:
    """A copy of ``bandit`` through its JSON form, drawing from ``rng``: the caller's bandit is never changed."""
    data = bandit.to_dict()
    data["rng"] = rng.bit_generator.state
    return type(bandit).from_dict(data)


def _replayed(
    template: Any,
    log: LoggedData,
    arms: IntArray,
    rows: IntArray,
    max_steps: int | None,
    rng: np.random.Generator,
) -> _Run:
    """Replay on the log ``rows`` (kept by the thinning, in replay order); the rows accepted, in order."""
    bandit = _copy(template, rng)
    logged = arms[rows]
    contexts: FloatArray | None = None
    if bandit.policy.contextual:
        assert log.contexts is not None  # checked by _bandit_arms
        contexts = np.ascontiguousarray(log.contexts[rows])
    rewards = log.rewards[rows]
    limit = rows.shape[0] if max_steps is None else max_steps
    accepted: IntArray | list[int] | None = _compiled(bandit, logged, rewards, contexts, limit)
    if accepted is None:
        if contexts is None:
            accepted = _row_by_row(bandit, logged.tolist(), rewards.tolist(), limit)
        else:
            accepted = _batched(bandit, logged, rewards.tolist(), contexts, limit)
    return _Run(np.asarray(rows[accepted], dtype=np.intp), bandit)


def _compiled(
    bandit: Any, logged: IntArray, rewards: FloatArray, contexts: FloatArray | None, limit: int
) -> IntArray | None:
    """Replay through the policy's own loop (``Policy.replay``), or None when it has none or cannot apply.

    The loop decides and learns row by row as ``select`` and ``update`` would, the bandit's generator
    included; the bandit then takes its state with ``absorb``, one version per accepted row as row by row.
    Guardrails that act on rewards (an abort, a reward floor) or cap exploration change how later rows are
    decided, so a bandit with them replays through ``select``.
    """
    guardrails, state = bandit.guardrails, bandit.state
    if (
        state is None
        or bandit.aborted
        or not bandit.active.any()
        or guardrails.max_exploration is not None
        or guardrails.min_reward_rate is not None
        or guardrails.ruin_threshold is not None
    ):
        return None
    policy: Policy = bandit.policy
    replayed = policy.replay(state, bandit.rng, bandit.active[None], logged, rewards, contexts, limit)
    if replayed is None:
        return None
    accepted, learned = replayed
    if accepted.shape[0]:
        bandit.absorb(logged[accepted], rewards[accepted], learned, version=bandit.version + accepted.shape[0])
    return accepted


def _row_by_row(bandit: Any, logged: list[int], rewards: list[float], limit: int) -> list[int]:
    """Replay without contexts: one ``select()`` per row (its fast path beats a batch's exact distribution)."""
    accepted: list[int] = []
    for row, arm in enumerate(logged):
        if len(accepted) == limit:
            break
        decision = bandit.select()
        if decision.arm_index == arm:
            bandit.update(decision, rewards[row])
            accepted.append(row)
    return accepted


def _batched(bandit: Any, logged: IntArray, rewards: list[float], contexts: FloatArray, limit: int) -> list[int]:
    """Replay with contexts: decide a batch at the current state; keep it up to the first accepted row."""
    names = bandit.arms
    accepted: list[int] = []
    n, position, decided = logged.shape[0], 0, 0
    while position < n and len(accepted) < limit:
        rate = (len(accepted) + 1) / (decided + len(bandit.active_arms))
        stop = min(n, position + min(_MAX_BATCH, max(8, math.ceil(_BATCH_FACTOR / rate))))
        hits = np.flatnonzero(bandit.select_many(contexts=contexts[position:stop]).arm_indices == logged[position:stop])
        if hits.shape[0] == 0:
            decided += stop - position
            position = stop
            continue
        row = position + int(hits[0])
        decided += row + 1 - position
        bandit.update(names[logged[row]], rewards[row], context=contexts[row : row + 1])
        accepted.append(row)
        position = row + 1
    return accepted


def _normal(rewards: FloatArray, confidence: float) -> tuple[float, float, FloatArray, FloatArray]:
    """Normal intervals: of the mean reward, and of each cumulative reward with the running variance."""
    from scipy.stats import norm

    steps = rewards.shape[0]
    if steps < _MIN_STEPS:
        nan = np.full(steps, math.nan)
        return math.nan, math.nan, nan, nan
    z = float(norm.ppf(0.5 + confidence / 2.0))
    t = np.arange(1, steps + 1, dtype=np.float64)
    cumulative, squares = np.cumsum(rewards), np.cumsum(rewards * rewards)
    variance = np.maximum(squares - cumulative * cumulative / t, 0.0) / np.maximum(t - 1.0, 1.0)
    half = z * np.sqrt(variance * t)
    value, mean_half = cumulative[-1] / steps, half[-1] / steps
    return float(value - mean_half), float(value + mean_half), cumulative - half, cumulative + half


def _bootstrap(
    template: Any,
    log: LoggedData,
    arms: IntArray,
    floor: float,
    steps: int,
    streams: list[np.random.Generator],
) -> list[FloatArray]:
    """Cumulative reward curves of replays of Poisson(1)-resampled logs, each over at most ``steps`` steps."""
    curves = []
    for b in range(len(streams) // 2):
        draws = streams[2 * b]
        order = np.repeat(np.arange(log.n_rows), draws.poisson(1.0, log.n_rows))
        kept = _thinned(order, log.propensities, floor, draws)
        rows = _replayed(template, log, arms, kept, steps, streams[2 * b + 1]).rows
        curves.append(np.cumsum(log.rewards[rows]))
    return curves


def _percentiles(
    curves: list[FloatArray], steps: int, confidence: float
) -> tuple[float, float, FloatArray, FloatArray, FloatArray]:
    """Percentile intervals over every bootstrap curve's first ``steps`` steps (each reaches them).

    Returns the interval of the mean reward, the bands of the cumulative reward and each curve's mean reward;
    all NaN below ``_MIN_STEPS`` steps, as the normal intervals.
    """
    tail = (1.0 - confidence) / 2.0
    if steps < _MIN_STEPS:
        nan = np.full(steps, math.nan)
        return math.nan, math.nan, nan, nan, np.full(len(curves), math.nan)
    cumulative = np.stack([curve[:steps] for curve in curves])
    values: FloatArray = cumulative[:, -1] / steps
    low, high = np.quantile(values, [tail, 1.0 - tail])
    bands = np.quantile(cumulative, [tail, 1.0 - tail], axis=0)
    return float(low), float(high), bands[0], bands[1], values


def _warnings(log: LoggedData, steps: int, run_steps: int, kept: int, floor: float, smallest: float) -> list[str]:
    out = []
    if steps < run_steps:
        out.append(
            f"the replay accepted {run_steps} rows but a bootstrap replay only {steps}: the value, interval and "
            f"curve cover the first {steps} steps, which every replay reaches"
        )
    if kept < log.n_rows:
        out.append(
            f"the log is not uniform: rejection sampling kept {kept} of {log.n_rows} rows "
            f"(propensity floor {floor:g}); the replay's effective sample size is the kept rows"
        )
    if floor > smallest:
        out.append(
            f"floor {floor:g} is above the smallest propensity {smallest:g}: rows below it are kept "
            "too often, which biases the replay toward their arms"
        )
    if steps < _MIN_STEPS:
        out.append(
            f"only {steps} rows were accepted: no interval is reported and the value is little more than a guess"
        )
    return out

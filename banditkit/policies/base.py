"""The policy protocol: hyperparameters on the object, learned state in plain arrays.

A policy is immutable once built. Everything it learns lives in a *state*: a
dict of named numpy arrays whose first axis is the batch (replications in the
simulator, one row for a served Bandit) and whose second axis, for per-arm
arrays, is the arm. The three operations are pure functions of that state:

* ``probabilities(state, mask, context)`` -> exact action distribution, shape (n, K);
* ``sample(state, rng, mask, context)``   -> chosen arm per row, shape (n,);
* ``update(state, arms, rewards, ...)``   -> a *new* state (inputs are never mutated).

A served Bandit decides and learns one request at a time on a one-row state,
where numpy's fixed cost per call dominates; ``choose`` and ``update_one`` are
``sample`` and ``update`` for exactly that case on Python scalars. Their
defaults wrap the array operations; policies override them to skip the
arrays, with identical results.

Batch semantics shared by every operation: ``n`` rows come in (``mask`` has
shape (n, K)); the state's batch size ``B`` is either ``n`` (row i belongs to
state i, as in the simulator) or ``1`` (every row reads, or adds its delta to,
the single state, as in ``Bandit.select_many`` / ``update_many``).

Where the state is kept elsewhere (a store), an update travels as a *delta*:
``state_delta(old, new)`` says what an update changed and ``merge_delta(state,
delta)`` applies it. Each policy declares in ``merge_rule`` what merging means
for it:

* ``ADDITIVE``: the state is sums (counts, reward sums, ``A`` and ``b`` of a
  ridge model, EXP3's log-weights); a delta is a difference, deltas commute, and
  deltas computed by several writers from the same state add up to the
  sequential update.
* ``APPEND``: the state is an append-only row buffer with counters (the
  model-based policies); a delta carries the new rows, merging appends them and
  numbers them after the rows already there. Nothing is lost whoever computed
  the delta; the rows' order is the order of merging.
* ``ORDERED``: an update rescales or overwrites what is there (discounting, a
  sliding window, online standardisation); a delta is exact only when merged
  into the state it was computed from, as a store with one writer does. Such a
  policy is not ``distributable``: a store where several writers compute deltas
  from states that may be stale must refuse it.

Derived arrays (a cached inverse, a fit's key) are never merged: a merge
recomputes them from the source of truth.
"""

from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from .._typing import AnyArray, BoolArray, FloatArray, IntArray
from ..errors import InvalidParameterError

#: A policy's learned state: named arrays, batch first (float64 sums; integer buffers for model-based ones).
State = dict[str, AnyArray]

#: Merge rules (see the module docstring): deltas that add and commute, rows appended, or order-dependent.
ADDITIVE, APPEND, ORDERED = "additive", "append", "ordered"


class Policy(ABC):
    """Base class of every bandit policy; subclasses set ``name`` and implement the operations.

    A policy holds hyperparameters only; its learned state is a dict of arrays with a batch axis, passed in
    and returned, never kept. The three operations: ``probabilities`` from state (and context), ``sample`` an
    arm from them with a given generator, ``update`` to a new state from (arm, reward, context).

    Examples
    --------
    >>> import numpy as np
    >>> import banditkit as bk
    >>> policy = bk.ThompsonSampling()
    >>> state = policy.update(policy.init_state(2), np.array([0, 1]), np.array([1.0, 0.0]))
    >>> mask = np.ones((1, 2), bool)  # every arm allowed, one state row
    >>> policy.probabilities(state, mask).round(2).tolist()
    [[0.83, 0.17]]
    >>> policy.choose(state, np.random.default_rng(0), mask) in (0, 1)
    True
    """

    name: ClassVar[str]
    #: True for policies that need a context vector on every call.
    contextual: ClassVar[bool] = False
    #: Closed interval of rewards the policy accepts; others are rejected at the boundary.
    reward_bounds: tuple[float, float] = (-np.inf, np.inf)
    #: The interval a policy of bounded rewards maps onto [0, 1] before learning (``policies/bounded.py``);
    #: None for a policy that learns rewards as they come.
    reward_range: tuple[float, float] | None = None
    #: State keys whose arrays have no arm axis (e.g. a global step counter).
    shared_keys: ClassVar[frozenset[str]] = frozenset()
    #: True when ``update`` needs the propensity each arm was chosen with (EXP3).
    needs_propensities: ClassVar[bool] = False
    #: State keys whose axis 1 is an append-only row buffer: their length grows with every update.
    buffer_keys: ClassVar[frozenset[str]] = frozenset()

    # ---- hyperparameters -------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """Constructor arguments as JSON-ready values: ``type(self)(**p.get_params())`` rebuilds it.

        A pair (``reward_range``) is given as a list, the form it has after a trip through JSON.
        """
        params = {name: getattr(self, name) for name in parameter_names(type(self))}
        return {name: list(value) if isinstance(value, tuple) else value for name, value in params.items()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_params() == other.get_params()

    def __hash__(self) -> int:
        return hash((type(self), repr(sorted(self.get_params().items()))))

    # ---- state -----------------------------------------------------------
    @abstractmethod
    def init_state(self, n_arms: int, batch: int = 1, n_features: int | None = None) -> State:
        """Prior state: per-arm arrays of shape (batch, n_arms, ...), shared ones (batch, ...)."""

    def check_state(self, state: State, n_arms: int, n_features: int | None = None) -> State:
        """``state`` (a new mapping of the same arrays) if it can be this policy's for ``n_arms`` arms.

        Its keys, dtypes and shapes must be those of :meth:`init_state` (a dimension that is 0 there, the rows
        of an append buffer, may have any length) and its numbers finite; else
        :class:`~banditkit.errors.InvalidParameterError` naming the array. For a state from outside (a model
        file, a warm start) or one kept across a change of hyperparameters.
        """
        prior = self.init_state(n_arms, 1, n_features)
        if state.keys() != prior.keys():
            raise InvalidParameterError(
                f"state must have the keys {sorted(prior)} of policy {self.name!r}, got {sorted(state)}", field="state"
            )
        for key, array in state.items():
            expected = prior[key]
            if array.dtype != expected.dtype or array.ndim != expected.ndim:
                raise InvalidParameterError(
                    f"state[{key!r}] must be {expected.dtype} with {expected.ndim} dimensions for policy "
                    f"{self.name!r}, got {array.dtype} with {array.ndim}",
                    field="state",
                )
            if any(want and have != want for have, want in zip(array.shape, expected.shape, strict=True)):
                raise InvalidParameterError(
                    f"state[{key!r}] must have shape {expected.shape} for policy {self.name!r} (0: any length), "
                    f"got {array.shape}",
                    field="state",
                )
            if array.dtype.kind in "fc" and not np.isfinite(array).all():
                raise InvalidParameterError(f"state[{key!r}] holds NaN or infinity", field="state")
        return dict(state)

    def add_arms(self, state: State, count: int, n_features: int | None = None) -> State:
        """State with ``count`` new arms appended, each starting from the prior."""
        batch = next(iter(state.values())).shape[0]
        fresh = self.init_state(count, batch, n_features)
        return {
            key: value if key in self.shared_keys else np.concatenate([value, fresh[key]], axis=1)
            for key, value in state.items()
        }

    def remove_arm(self, state: State, index: int) -> State:
        """State without arm ``index``; later arms shift down by one."""
        return {
            key: value if key in self.shared_keys else np.delete(value, index, axis=1) for key, value in state.items()
        }

    # ---- the three operations --------------------------------------------
    @abstractmethod
    def probabilities(self, state: State, mask: BoolArray, context: FloatArray | None = None) -> FloatArray:
        """Exact probability of choosing each arm, shape (n, K); zero where ``mask`` is False."""

    @abstractmethod
    def sample(
        self, state: State, rng: np.random.Generator, mask: BoolArray, context: FloatArray | None = None
    ) -> IntArray:
        """One arm index per row, shape (n,), drawn from :meth:`probabilities` using ``rng``."""

    @abstractmethod
    def update(
        self,
        state: State,
        arms: IntArray,
        rewards: FloatArray,
        *,
        propensities: FloatArray | None = None,
        context: FloatArray | None = None,
    ) -> State:
        """New state after observing ``rewards`` (n,) for ``arms`` (n,); inputs are not mutated.

        ``propensities`` (n,) are the probabilities with which the arms were
        chosen; only importance-weighted policies (EXP3) use them.
        """

    def choose(self, state: State, rng: np.random.Generator, mask: BoolArray, context: FloatArray | None = None) -> int:
        """:meth:`sample` for one request (``mask`` of shape (1, K)) on a one-row state, as an int."""
        return int(self.sample(state, rng, mask, context)[0])

    def update_one(
        self,
        state: State,
        arm: int,
        reward: float,
        *,
        propensity: float | None = None,
        context: FloatArray | None = None,
    ) -> State:
        """:meth:`update` with one reward into a one-row state; ``context`` is (1, d) or None."""
        return self.update(
            state,
            np.array([arm]),
            np.array([reward]),
            context=context,
            propensities=None if propensity is None else np.array([propensity]),
        )

    def replay(
        self,
        state: State,
        rng: np.random.Generator,
        mask: BoolArray,
        logged: IntArray,
        rewards: FloatArray,
        context: FloatArray | None = None,
        limit: int | None = None,
    ) -> tuple[IntArray, State] | None:
        """Replay a log on a one-row state in one call: what deciding and learning row by row would give.

        Row after row, decide as :meth:`choose` decides (the same draws from ``rng``) on the state the rows
        before left; a row whose arm is the ``logged`` one is *accepted* and learned as :meth:`update_one`
        learns it. Stops after ``limit`` accepted rows. The offline replay of a learning policy
        (:func:`banditkit.ope.replay_learning`) calls it; a policy implements it where a compiled loop beats
        a call per row.

        Parameters
        ----------
        state : one-row state (not mutated)
        rng : numpy.random.Generator, advanced exactly as the row-by-row decisions advance it
        mask : bool, shape (1, K), the arms that can be chosen
        logged : int, shape (n,), each row's logged arm index
        rewards : float, shape (n,), each row's reward
        context : float, shape (n, d), each row's context (contextual policies)
        limit : int, optional, most accepted rows

        Returns
        -------
        (accepted, state) : the accepted row positions in order, shape (steps,), and the state after learning
            them; None when the policy has no such path (the default) or cannot take it now (numba is not
            installed, or its kernels are not loaded yet), and the caller replays with :meth:`choose` and
            :meth:`update_one`.
        """
        return None

    @abstractmethod
    def means(self, state: State, context: FloatArray | None = None) -> FloatArray:
        """Point estimate of each arm's expected reward, shape (B or n, K)."""

    def reward_advice(self) -> str:
        """What to change when a reward falls outside ``reward_bounds``, appended to the error ('' if nothing)."""
        return ""

    def diagnostics(self, state: State, arm_names: list[str] | None = None) -> dict[str, FloatArray]:
        """Per-arm numerical health, each array (B, K), for ``Bandit.stats()``; may warn about an arm."""
        return {}

    # ---- deltas: learning where the state is kept elsewhere --------------
    @property
    def merge_rule(self) -> str:
        """How deltas of the state merge: ADDITIVE, APPEND or ORDERED (see the module docstring).

        A family sets it as a class attribute, or makes it depend on a hyperparameter (linear policies with
        ``standardize``); read it on an instance.
        """
        return ADDITIVE

    def growth_bytes(self, n_features: int | None) -> int | None:
        """Bytes the state can grow beyond its initial size as it learns.

        0 for a state of fixed size; None for one that grows without bound (an append buffer keeping every row).
        """
        return 0

    @property
    def distributable(self) -> bool:
        """True when deltas computed from stale states (several writers) still merge exactly: not ORDERED."""
        return self.merge_rule != ORDERED

    def state_delta(self, old: State, new: State) -> State:
        """What an update changed in ``old`` to give ``new``, as :meth:`merge_delta` takes it back.

        By default ``new - old`` key by key (the ADDITIVE rule; ORDERED
        policies whose update rescales the state use it too, exact only
        against ``old``). ``merge_delta(old, state_delta(old, new))`` is
        ``new`` up to float rounding.
        """
        return {key: new[key] - old[key] for key in old}

    def merge_delta(self, state: State, delta: State) -> State:
        """``state`` with ``delta`` (from :meth:`state_delta`) merged in, as a new state; inputs are not mutated.

        By default ``state + delta`` key by key; keys absent from the delta are kept.
        """
        return {key: value + delta[key] if key in delta else value for key, value in state.items()}

    # ---- helpers shared by subclasses ------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., "params": {...}}``, the form used in JSON and by the service."""
        return {"name": self.name, "params": self.get_params()}


def parameter_names(cls: type[Policy]) -> list[str]:
    """Names of the hyperparameters a policy class accepts (its constructor's keyword arguments)."""
    import inspect  # deferred: slow to import, needed only when policies are (de)serialised

    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [
        name
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and parameter.kind in kinds
    ]


def batch_rows(state: State, n: int) -> IntArray:
    """Index of the state row each of ``n`` request rows belongs to (all 0 when the batch is 1)."""
    batch = next(iter(state.values())).shape[0]
    if batch == 1:
        return np.zeros(n, dtype=np.intp)
    if batch != n:
        raise ValueError(f"state batch {batch} does not match {n} rows")
    return np.arange(n)


def arm_sums(state: State, arms: IntArray, values: FloatArray, n_arms: int) -> FloatArray:
    """Sum ``values`` (n,) into a (B, K) array by (state row, arm): the additive delta of an update."""
    batch = next(iter(state.values())).shape[0]
    if batch == 1 and arms.shape[0] == 1:
        delta = np.zeros((1, n_arms))
        delta[0, int(arms[0])] = values[0]
        return delta
    flat = batch_rows(state, arms.shape[0]) * n_arms + arms
    # numpy's stub types bincount as intp; with weights it returns float64.
    return np.bincount(flat, weights=values, minlength=batch * n_arms).reshape(batch, n_arms)  # type: ignore[return-value]


def argmax_random_ties(scores: FloatArray, mask: BoolArray, rng: np.random.Generator) -> IntArray:
    """Per-row argmax of ``scores`` (n, K) over allowed arms, ties broken uniformly with ``rng``."""
    masked = np.where(mask, scores, -np.inf)
    best = masked.max(axis=1, keepdims=True)
    ties = masked == best
    # A uniform key per arm; the largest key among the tied arms wins.
    keys = np.where(ties, rng.random(scores.shape), -1.0)
    arms: IntArray = keys.argmax(axis=1)
    return arms


def argmax_probabilities(scores: FloatArray, mask: BoolArray) -> FloatArray:
    """Action distribution of :func:`argmax_random_ties`: uniform over the tied best arms."""
    masked = np.where(mask, scores, -np.inf)
    ties = (masked == masked.max(axis=1, keepdims=True)) & mask
    distribution: FloatArray = ties / ties.sum(axis=1, keepdims=True)
    return distribution


def inverse_cdf(probabilities: FloatArray, points: FloatArray | float) -> IntArray:
    """Arm per row: the first arm, in arm order, whose cumulative probability exceeds the row's point.

    The one inverse-CDF draw of banditkit: random draws (:func:`categorical`),
    per-unit assignment and the service all pick arms with it, so one point
    gives one arm everywhere.

    Parameters
    ----------
    probabilities : (n, K) or (K,) probabilities, at least one positive per row; rows
        that share one distribution (one row, or a broadcast view of stride 0) take
        a binary search on a single cumulative sum: O(n log K) instead of O(n K).
    points : (n,) points in [0, 1) (or a scalar for a (K,) distribution).

    A point at or above the row's total (its float sum rounded below 1) takes the
    last arm with positive probability. No other point can reach an arm of zero
    probability: the chosen arm's cumulative sum exceeds the previous one.

    >>> inverse_cdf(np.array([[0.0, 0.5, 0.0, 0.5]]), np.array([0.0, 0.49, 0.5, 0.99])).tolist()
    [1, 1, 3, 3]
    """
    points = np.asarray(points, dtype=np.float64)
    n_arms = probabilities.shape[-1]
    if probabilities.ndim == 2 and points.ndim == 1 and (probabilities.shape[0] == 1 or probabilities.strides[0] == 0):
        row = probabilities[0]
        arms = np.searchsorted(np.cumsum(row), points, side="right")
        beyond = arms == n_arms
        if beyond.any():
            arms[beyond] = last_positive(row)
        return arms
    arms = (np.cumsum(probabilities, axis=-1) <= points[..., None]).sum(axis=-1)
    beyond = arms == n_arms
    if beyond.any():
        arms = np.where(beyond, last_positive(probabilities), arms)
    return arms


def inverse_cdf_row(cumulative: list[float], last: int, point: float) -> int:
    """:func:`inverse_cdf` for one row on Python floats, without numpy's per-call cost.

    ``cumulative`` is the row's ``np.cumsum`` as a list and ``last`` its
    :func:`last_positive`, both computed once for many points.
    """
    return min(bisect.bisect_right(cumulative, point), last)


def last_positive(probabilities: FloatArray) -> IntArray:
    """Index of the last arm with positive probability in each row of (..., K) probabilities."""
    last: IntArray = probabilities.shape[-1] - 1 - np.argmax(probabilities[..., ::-1] > 0, axis=-1)
    return last


def categorical(probabilities: FloatArray, rng: np.random.Generator) -> IntArray:
    """One draw per row from (n, K) probabilities: :func:`inverse_cdf` at one uniform per row."""
    return inverse_cdf(probabilities, rng.random(probabilities.shape[0]))


def count_state(n_arms: int, batch: int, squares: bool = False) -> State:
    """Empty per-arm pull counts and reward sums (and sums of squares), each shape (batch, n_arms)."""
    state = {"pulls": np.zeros((batch, n_arms)), "reward_sums": np.zeros((batch, n_arms))}
    if squares:
        state["reward_sq_sums"] = np.zeros((batch, n_arms))
    return state


def add_counts(state: State, arms: IntArray, rewards: FloatArray, squares: bool = False) -> State:
    """New state with each (arm, reward) added to ``pulls``, ``reward_sums`` (and ``reward_sq_sums``)."""
    pulls = state["pulls"]
    if arms.shape[0] == 1 and pulls.shape[0] == 1:
        return add_count(state, int(arms[0]), float(rewards[0]), squares)
    new = dict(state)
    n_arms = pulls.shape[1]
    new["pulls"] = pulls + arm_sums(state, arms, np.ones(arms.shape[0]), n_arms)
    new["reward_sums"] = state["reward_sums"] + arm_sums(state, arms, rewards, n_arms)
    if squares:
        new["reward_sq_sums"] = state["reward_sq_sums"] + arm_sums(state, arms, rewards * rewards, n_arms)
    return new


def add_count(state: State, arm: int, reward: float, squares: bool = False) -> State:
    """:func:`add_counts` for one reward into a one-row state: the same delta without bincount's fixed cost."""
    new = dict(state)
    new["pulls"] = pulls = state["pulls"].copy()
    pulls[0, arm] += 1.0
    new["reward_sums"] = sums = state["reward_sums"].copy()
    sums[0, arm] += reward
    if squares:
        new["reward_sq_sums"] = squared = state["reward_sq_sums"].copy()
        squared[0, arm] += reward * reward
    return new


def empirical_means(state: State, default: float = 0.0) -> FloatArray:
    """Mean reward per arm, ``default`` for arms never pulled; shape (B, K)."""
    pulls = state["pulls"]
    means: FloatArray = np.divide(state["reward_sums"], pulls, out=np.full(pulls.shape, default), where=pulls > 0)
    return means

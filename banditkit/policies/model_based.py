"""Model-based contextual policies: any scikit-learn-style regressor, one per arm (and per bootstrap replica).

For rewards that are not linear in the context. The state is the data buffer
(contexts, arms, rewards, row ids) as numpy arrays; fitted estimators are a
cache keyed by a content hash of the rows they were fit on (see
:mod:`banditkit.policies._estimators`), so a JSON round trip refits the very
same models.

Refit cadence. Models are refit at fixed row counts c_1 = ``refit_every``,
c_{j+1} = c_j + max(``refit_every``, ceil(``refit_fraction`` * c_j)): frequent
while data is scarce, amortised O(N log N) later. The models always cover the
first c_j rows seen (the last ``max_rows`` of them if set, refit at least every
``max(refit_every, max_rows)`` rows so that the buffer stays bounded), so one
update of n rows and n updates of one row give the same models. With
``incremental=True`` the estimator's ``partial_fit`` is called on each new chunk [c_j, c_{j+1});
the whole history is then kept, because a restored state replays the chunks.
Before c_1 (and for an arm without rows) an arm has no model and is treated
as the most promising one, so every arm is tried.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._typing import AnyArray, BoolArray, FloatArray, IntArray
from .._validation import check_contexts, check_int, check_real
from ..errors import InvalidParameterError
from ._estimators import (
    ModelCache,
    accepts_sample_weight,
    bootstrap_weights,
    build,
    content_key,
    copy_model,
    estimator_spec,
)
from .base import APPEND, Policy, State, argmax_probabilities, argmax_random_ties, batch_rows, categorical
from .registry import register

_BUFFER_KEYS = ("contexts", "arms", "rewards", "row_ids")
#: Fitted models by [replica][arm]; None where an arm has no model yet.
Models = list[list[Any]]
#: Used when no estimator is given: a shallow regression tree captures interactions and thresholds.
DEFAULT_ESTIMATOR = {"class": "sklearn.tree.DecisionTreeRegressor", "params": {"max_depth": 6, "min_samples_leaf": 5}}


class ModelPolicy(Policy):
    """Shared machinery: the data buffer, the refit cadence, fitting and predicting per (replica, arm)."""

    contextual = True
    shared_keys = frozenset((*_BUFFER_KEYS, "rows_seen", "fit_rows", "model_key"))
    #: A delta carries the new rows; merging appends them (``fit_rows`` and ``model_key`` are recomputed).
    merge_rule = APPEND
    buffer_keys = frozenset(_BUFFER_KEYS)
    n_replicas: int
    bootstrap: bool

    def __init__(
        self,
        estimator: Any = None,
        refit_every: int = 50,
        refit_fraction: float = 0.1,
        max_rows: int | None = None,
        incremental: bool = False,
        seed: int = 0,
    ):
        self.estimator = estimator_spec(DEFAULT_ESTIMATOR if estimator is None else estimator)
        self.refit_every = check_int("refit_every", refit_every, low=1)
        self.refit_fraction = check_real("refit_fraction", refit_fraction, low=0.0)
        self.max_rows = None if max_rows is None else check_int("max_rows", max_rows, low=1)
        self.incremental = bool(incremental)
        self.seed = check_int("seed", seed, low=0, high=2**63 - 1)
        prototype = build(self.estimator)
        if self.incremental and not hasattr(prototype, "partial_fit"):
            raise InvalidParameterError(
                f"incremental=True needs an estimator with partial_fit; {type(prototype).__name__} has none"
            )
        if self.incremental and self.max_rows is not None:
            raise InvalidParameterError(
                "max_rows cannot be used with incremental=True: a restored state "
                "replays partial_fit over the whole history"
            )
        method = prototype.partial_fit if self.incremental else prototype.fit
        self._weighted = accepts_sample_weight(method)
        self._cache = ModelCache()

    def __hash__(self) -> int:
        return hash((type(self), repr(sorted(self.get_params().items()))))

    # ---- state -----------------------------------------------------------
    def init_state(self, n_arms: int, batch: int = 1, n_features: int | None = None) -> State:
        if n_features is None or n_features < 1:
            raise InvalidParameterError(f"{self.name} needs n_features >= 1 (the context length), got {n_features!r}")
        return {
            "contexts": np.zeros((batch, 0, n_features)),
            "arms": np.zeros((batch, 0), dtype=np.int64),
            "rewards": np.zeros((batch, 0)),
            "row_ids": np.zeros((batch, 0), dtype=np.int64),
            "rows_seen": np.zeros(batch, dtype=np.int64),
            "fit_rows": np.zeros(batch, dtype=np.int64),
            "model_key": np.zeros(batch, dtype=np.int64),
            "arm_rows": np.zeros((batch, n_arms), dtype=np.int64),
        }

    def add_arms(self, state: State, count: int, n_features: int | None = None) -> State:
        return super().add_arms(state, count, state["contexts"].shape[2])

    def remove_arm(self, state: State, index: int) -> State:
        """Rows of the removed arm are tombstoned (arm -1, ignored by fits); later arms shift down."""
        new = super().remove_arm(state, index)
        arms = state["arms"]
        new["arms"] = np.where(arms == index, -1, np.where(arms > index, arms - 1, arms))
        new["model_key"] = np.array(
            [self._key(new, b) if new["fit_rows"][b] else 0 for b in range(arms.shape[0])], dtype=np.int64
        )
        return new

    def fit_point(self, rows_seen: int) -> int:
        """Row count the models cover once ``rows_seen`` rows have arrived (0: no model yet)."""
        point = 0
        while self.next_fit_point(point) <= rows_seen:
            point = self.next_fit_point(point)
        return point

    def next_fit_point(self, point: int) -> int:
        """The fit point after ``point``: ``point + max(refit_every, ceil(refit_fraction * point))``.

        With ``max_rows`` the step is at most ``max(refit_every, max_rows)``, so that the buffer (the
        window the models cover and the rows since) never holds more than :attr:`max_buffer_rows`.
        """
        step = max(self.refit_every, math.ceil(self.refit_fraction * point))
        if self.max_rows is not None:
            step = min(step, max(self.refit_every, self.max_rows))
        return point + step

    @property
    def max_buffer_rows(self) -> int | None:
        """The most rows the buffer holds: ``max_rows + max(refit_every, max_rows)``; None without ``max_rows``."""
        return None if self.max_rows is None else self.max_rows + max(self.refit_every, self.max_rows)

    def growth_bytes(self, n_features: int | None) -> int | None:
        """The buffer at its fullest: per row the context, the arm, the reward and the row id (8 bytes each)."""
        rows = self.max_buffer_rows
        return None if rows is None else rows * 8 * ((n_features or 0) + 3)

    # ---- operations ------------------------------------------------------
    def _contexts(self, state: State, context: FloatArray | None) -> FloatArray:
        width = state["contexts"].shape[2]
        if context is None:
            raise InvalidParameterError(f"{self.name} is contextual: pass context= with {width} features per row")
        return check_contexts("context", context, width)

    def update(
        self,
        state: State,
        arms: IntArray,
        rewards: FloatArray,
        *,
        propensities: FloatArray | None = None,
        context: FloatArray | None = None,
    ) -> State:
        contexts = self._contexts(state, context)
        arms = np.asarray(arms, dtype=np.int64)
        rewards = np.asarray(rewards, dtype=np.float64)
        rows = batch_rows(state, arms.shape[0])
        new = dict(state)
        per_state: Callable[[AnyArray], AnyArray] = (
            (lambda a: a[None]) if state["rows_seen"].shape[0] == 1 else (lambda a: a[:, None])
        )
        counts = np.bincount(rows, minlength=state["rows_seen"].shape[0])
        ids = state["rows_seen"][rows] + (np.arange(arms.shape[0]) if counts.shape[0] == 1 else 0)
        for key, value in zip(_BUFFER_KEYS, (contexts, arms, rewards, ids), strict=True):
            new[key] = np.concatenate([state[key], per_state(value)], axis=1)
        new["rows_seen"] = state["rows_seen"] + counts
        new["arm_rows"] = state["arm_rows"].copy()
        np.add.at(new["arm_rows"], (rows, arms), 1)
        return self._settle(state, new)

    def state_delta(self, old: State, new: State) -> State:
        """The rows ``new`` holds beyond ``old`` and the counters' increments.

        Row ids are counted from ``old``'s ``rows_seen``; the fit point and its key are recomputed by
        :meth:`merge_delta`, never carried.
        """
        fresh = new["row_ids"][0] >= old["rows_seen"][0]  # the same columns in every state row
        delta = {key: new[key][:, fresh] for key in _BUFFER_KEYS}
        delta["row_ids"] = delta["row_ids"] - old["rows_seen"][:, None]
        delta["rows_seen"] = new["rows_seen"] - old["rows_seen"]
        delta["arm_rows"] = new["arm_rows"] - old["arm_rows"]
        return delta

    def merge_delta(self, state: State, delta: State) -> State:
        """``state`` with the delta's rows appended after its own and the counters added.

        The rows are numbered from the state's ``rows_seen``; the result is then refit and trimmed exactly as
        :meth:`update` does.
        """
        new = dict(state)
        ids = delta["row_ids"] + state["rows_seen"][:, None]
        for key, value in zip(_BUFFER_KEYS, (delta["contexts"], delta["arms"], delta["rewards"], ids), strict=True):
            new[key] = np.concatenate([state[key], value], axis=1)
        new["rows_seen"] = state["rows_seen"] + delta["rows_seen"]
        new["arm_rows"] = state["arm_rows"] + delta["arm_rows"]
        return self._settle(state, new)

    def _settle(self, state: State, new: State) -> State:
        """``new`` (rows appended to ``state``) refit where a fit point was passed, then trimmed to ``max_rows``."""
        due = [self.fit_point(seen) > fitted for seen, fitted in zip(new["rows_seen"], new["fit_rows"], strict=True)]
        if any(due):
            new["fit_rows"], new["model_key"] = state["fit_rows"].copy(), state["model_key"].copy()
        for b in np.flatnonzero(due).tolist():
            self._refit(state, new, b)  # a loop over states, at the refit cadence only
        if self.max_rows is not None:
            keep = new["row_ids"][0] >= new["fit_rows"][0] - self.max_rows  # same for every state row
            for key in _BUFFER_KEYS:
                new[key] = new[key][:, keep]
        return new

    def means(self, state: State, context: FloatArray | None = None) -> FloatArray:
        """Predicted reward per row and arm (average over replicas; 0 for an arm without a model), shape (n, K)."""
        predictions = self._predictions(state, context, range(self.n_replicas))
        means: FloatArray = np.where(np.isinf(predictions), 0.0, predictions).mean(axis=0)
        return means

    # ---- fitting ---------------------------------------------------------
    def _window(self, state: State, b: int, fit_rows: int) -> tuple[AnyArray, ...]:
        """Rows of state ``b`` the models at ``fit_rows`` are fit on: contexts, arms, rewards, row ids."""
        ids = state["row_ids"][b]
        chosen = ids < fit_rows
        if self.max_rows is not None:
            chosen &= ids >= fit_rows - self.max_rows
        return tuple(state[key][b][chosen] for key in _BUFFER_KEYS)

    def _key(self, state: State, b: int) -> int:
        return content_key(*self._window(state, b, int(state["fit_rows"][b])))

    def _refit(self, old: State, new: State, b: int) -> None:
        """Fit state ``b``'s models at its new fit point, in place on ``new`` (a fresh dict of fresh arrays)."""
        point = self.fit_point(int(new["rows_seen"][b]))
        previous = self._models(old, b) if self.incremental and old["fit_rows"][b] else None
        start = int(old["fit_rows"][b]) if previous is not None else 0
        models = self._fit(new, b, start, point, previous)
        new["fit_rows"][b] = point
        new["model_key"][b] = self._key(new, b)
        self._cache.put(int(new["model_key"][b]), models)

    def _models(self, state: State, b: int) -> Models | None:
        """Fitted models of state row ``b`` as [replica][arm] (None: no model), from the cache or refit."""
        if not state["fit_rows"][b]:
            return None
        key = int(state["model_key"][b])
        models: Models | None = self._cache.get(key)
        if models is None:
            models = self._fit(state, b, 0, int(state["fit_rows"][b]), None)
            self._cache.put(key, models)
        return models

    def _fit(self, state: State, b: int, start: int, point: int, previous: Models | None) -> Models | None:
        """Models covering rows [0, point): a fresh fit, or partial_fit chunk by chunk from ``start``."""
        n_arms = state["arm_rows"].shape[1]
        if not self.incremental:
            return self._fit_chunk(self._window(state, b, point), n_arms, None)
        models = previous
        chunk_start = start
        while chunk_start < point:
            chunk_end = self.next_fit_point(chunk_start)
            ids = state["row_ids"][b]
            chosen = (ids >= chunk_start) & (ids < chunk_end)
            chunk = tuple(state[key][b][chosen] for key in _BUFFER_KEYS)
            models = self._fit_chunk(chunk, n_arms, models)
            chunk_start = chunk_end
        return models

    def _fit_chunk(self, rows: tuple[AnyArray, ...], n_arms: int, previous: Models | None) -> Models:
        """Fit (or partial_fit ``previous``) one model per (replica, arm) on ``rows``; weights from the row ids."""
        contexts, arms, rewards, ids = rows
        weights = (
            bootstrap_weights(self.seed, ids, self.n_replicas)
            if self.bootstrap
            else np.ones((ids.shape[0], self.n_replicas))
        )
        models: Models = [[None] * n_arms for _ in range(self.n_replicas)]
        for replica in range(self.n_replicas):
            for arm in range(n_arms):
                model = None if previous is None or arm >= len(previous[replica]) else previous[replica][arm]
                weight = np.where(arms == arm, weights[:, replica], 0.0)
                chosen = weight > 0
                if chosen.any():
                    model = self._fit_one(model, contexts[chosen], rewards[chosen], weight[chosen])
                models[replica][arm] = model
        return models

    def _fit_one(self, model: Any, contexts: FloatArray, rewards: FloatArray, weights: FloatArray) -> Any:
        extra = {"sample_weight": weights}
        if not self._weighted:  # integer weights: repeat the rows instead
            repeat = weights.astype(np.intp)
            contexts, rewards, extra = np.repeat(contexts, repeat, axis=0), np.repeat(rewards, repeat), {}
        if self.incremental:
            model = build(self.estimator) if model is None else copy_model(model)
            model.partial_fit(contexts, rewards, **extra)
            return model
        model = build(self.estimator)
        model.fit(contexts, rewards, **extra)
        return model

    # ---- predicting ------------------------------------------------------
    def _predictions(self, state: State, context: FloatArray | None, replicas: Sequence[int]) -> FloatArray:
        """Predicted rewards, shape (len(replicas), n, K); +inf where an arm has no model (try it first)."""
        contexts = self._contexts(state, context)
        rows = batch_rows(state, contexts.shape[0])
        n_arms = state["arm_rows"].shape[1]
        out = np.full((len(replicas), contexts.shape[0], n_arms), np.inf)
        for b in np.unique(rows):  # one state when serving; one per row in a simulator batch
            models = self._models(state, b)
            if models is None:
                continue
            chosen = rows == b
            for slot, replica in enumerate(replicas):
                for arm, model in enumerate(models[replica]):
                    if model is not None:
                        out[slot, chosen, arm] = model.predict(contexts[chosen])
        return out


@register
class ContextualEpsilonGreedy(ModelPolicy):
    """Epsilon-greedy over per-arm regression models: explore uniformly with probability ``epsilon``.

    Otherwise play the arm whose model predicts the highest reward for the
    context (ties shared uniformly). Probabilities are exact.

    Parameters
    ----------
    estimator : a scikit-learn-style regressor, or its ``{"class", "params"}`` spec
        (default :data:`DEFAULT_ESTIMATOR`, a depth-6 regression tree).
    epsilon : float in [0, 1], exploration rate.
    refit_every, refit_fraction, max_rows, incremental, seed : see the module docstring.

    Examples
    --------
    >>> from sklearn.tree import DecisionTreeRegressor
    >>> policy = ContextualEpsilonGreedy(DecisionTreeRegressor(max_depth=2), epsilon=0.2, refit_every=2)
    >>> state = policy.init_state(2, n_features=1)
    >>> state = policy.update(state, [0, 1], [1.0, 0.0], context=[[0.5], [0.5]])
    >>> policy.probabilities(state, np.ones((1, 2), bool), context=[[0.5]]).round(3).tolist()
    [[0.9, 0.1]]

    References
    ----------
    Langford, Zhang, "The epoch-greedy algorithm for contextual
    multi-armed bandits", NeurIPS 2007.
    """

    name = "contextual_epsilon_greedy"
    n_replicas = 1
    bootstrap = False

    def __init__(
        self,
        estimator: Any = None,
        epsilon: float = 0.1,
        refit_every: int = 50,
        refit_fraction: float = 0.1,
        max_rows: int | None = None,
        incremental: bool = False,
        seed: int = 0,
    ):
        super().__init__(estimator, refit_every, refit_fraction, max_rows, incremental, seed)
        self.epsilon = check_real("epsilon", epsilon, low=0.0, high=1.0)

    def probabilities(self, state: State, mask: BoolArray, context: FloatArray | None = None) -> FloatArray:
        mask = np.asarray(mask, dtype=bool)
        greedy = argmax_probabilities(self._predictions(state, context, [0])[0], mask)
        distribution: FloatArray = self.epsilon * mask / mask.sum(axis=1, keepdims=True) + (1.0 - self.epsilon) * greedy
        return distribution

    def sample(
        self, state: State, rng: np.random.Generator, mask: BoolArray, context: FloatArray | None = None
    ) -> IntArray:
        return categorical(self.probabilities(state, mask, context), rng)


@register
class BootstrappedThompson(ModelPolicy):
    """Bootstrapped Thompson sampling: act greedily for one of ``n_replicas`` bootstrap models, drawn uniformly.

    Each replica fits every arm's model on the rows reweighted by Poisson(1)
    online-bootstrap weights, so the spread across replicas plays the role of
    a posterior. Given the fitted replicas the action distribution is exact:
    the average over replicas of each replica's tie-aware argmax.

    Parameters
    ----------
    estimator : a scikit-learn-style regressor, or its ``{"class", "params"}`` spec
        (default :data:`DEFAULT_ESTIMATOR`, a depth-6 regression tree).
    n_replicas : int >= 1, bootstrap replicas B.
    refit_every, refit_fraction, max_rows, incremental, seed : see the module docstring.

    References
    ----------
    Eckles, Kaptein, "Thompson sampling with the online bootstrap",
    arXiv:1410.4009 (2014); Osband, Van Roy, "Bootstrapped Thompson sampling
    and deep exploration", arXiv:1507.00300 (2015).

    Examples
    --------
    >>> from sklearn.tree import DecisionTreeRegressor
    >>> policy = BootstrappedThompson(DecisionTreeRegressor(max_depth=2), n_replicas=4, refit_every=2, seed=0)
    >>> state = policy.init_state(2, n_features=1)
    >>> state = policy.update(state, [0, 1, 0, 1], [1.0, 0.0, 1.0, 0.0], context=[[0.5], [0.5], [0.2], [0.2]])
    >>> policy.probabilities(state, np.ones((1, 2), bool), context=[[0.5]]).tolist()  # 7 replicas of 8 say arm 0
    [[0.875, 0.125]]
    """

    name = "bootstrapped_thompson"
    bootstrap = True

    def __init__(
        self,
        estimator: Any = None,
        n_replicas: int = 10,
        refit_every: int = 50,
        refit_fraction: float = 0.1,
        max_rows: int | None = None,
        incremental: bool = False,
        seed: int = 0,
    ):
        self.n_replicas = check_int("n_replicas", n_replicas, low=1, high=1000)
        super().__init__(estimator, refit_every, refit_fraction, max_rows, incremental, seed)

    def probabilities(self, state: State, mask: BoolArray, context: FloatArray | None = None) -> FloatArray:
        mask = np.asarray(mask, dtype=bool)
        predictions = self._predictions(state, context, range(self.n_replicas))
        distribution: FloatArray = np.mean([argmax_probabilities(replica, mask) for replica in predictions], axis=0)
        return distribution

    def sample(
        self, state: State, rng: np.random.Generator, mask: BoolArray, context: FloatArray | None = None
    ) -> IntArray:
        mask = np.asarray(mask, dtype=bool)
        n = mask.shape[0]
        replicas = rng.integers(self.n_replicas, size=n)
        used = np.unique(replicas)
        predictions = self._predictions(state, context, list(used))  # only the replicas drawn
        scores = predictions[np.searchsorted(used, replicas), np.arange(n)]
        return argmax_random_ties(scores, mask, rng)

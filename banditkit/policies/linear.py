"""Disjoint linear contextual bandits: LinUCB and linear Thompson sampling.

Each arm k keeps a ridge regression of reward on the context: the additive
statistics ``A_k = l2*I + sum x x^T`` and ``b_k = sum r x`` (see
:mod:`banditkit.policies._ridge` for the cached inverse). With
``standardize=True`` contexts are standardised online
(:mod:`banditkit.policies._standardize`) and an intercept feature is appended,
so the model works in d + 1 dimensions.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod

import numpy as np

from .._typing import BoolArray, FloatArray, IntArray
from .._validation import check_contexts, check_real
from ..errors import InvalidParameterError
from . import _jit
from ._gaussian_argmax import POINT_MASS_SD, gaussian_argmax_probabilities
from ._ridge import (
    CONDITION_WARNING,
    IllConditionedWarning,
    add_rows,
    check_merged,
    condition_message,
    condition_numbers,
    init_ridge,
    linear_kernels,
    rebuild,
    replay,
    scores,
)
from ._standardize import RELATIVE_VARIANCE_FLOOR, fold_and_transform, init_feature_stats, transform
from .base import ADDITIVE, ORDERED, Policy, State, argmax_probabilities, argmax_random_ties, batch_rows
from .registry import register

_FEATURE_KEYS = ("feature_count", "feature_mean", "feature_m2")


class LinearPolicy(Policy):
    """Shared machinery of the disjoint linear policies: features, ridge state, numerical health."""

    contextual = True
    shared_keys = frozenset(_FEATURE_KEYS)

    def __init__(self, l2: float = 1.0, standardize: bool = False):
        self.l2 = check_real("l2", l2, low=0.0, low_open=True)
        if not isinstance(standardize, bool):
            raise InvalidParameterError(f"standardize must be True or False, got {standardize!r}")
        self.standardize = standardize

    # ---- state -----------------------------------------------------------
    def init_state(self, n_arms: int, batch: int = 1, n_features: int | None = None) -> State:
        if n_features is None or n_features < 1:
            raise InvalidParameterError(f"{self.name} needs n_features >= 1 (the context length), got {n_features!r}")
        state = init_ridge(n_arms, batch, n_features + self.standardize, self.l2)
        if self.standardize:
            state.update(init_feature_stats(batch, n_features))
        return state

    def add_arms(self, state: State, count: int, n_features: int | None = None) -> State:
        return super().add_arms(state, count, self.n_features(state))

    def n_features(self, state: State) -> int:
        """Context length this state was built for."""
        width: int = state["b"].shape[-1] - self.standardize
        return width

    def refresh(self, state: State) -> State:
        """State with the cached inverses and coefficients recomputed from ``A`` and ``b``."""
        return {**state, **rebuild(state, self.l2)}

    # ---- deltas ------------------------------------------------------------
    @property
    def merge_rule(self) -> str:
        """ADDITIVE (``A`` and ``b`` are sums), or ORDERED with ``standardize``.

        With ``standardize`` each context is scaled by the running statistics at the time of its update, so a
        delta holds only against the state it came from.
        """
        return ORDERED if self.standardize else ADDITIVE

    def merge_delta(self, state: State, delta: State) -> State:
        """Every array plus the delta.

        ``A`` and ``b`` are the truth, and the touched arms' caches are kept only where they still invert
        ``A``, else rebuilt from it (see :func:`._ridge.check_merged`).
        """
        merged = super().merge_delta(state, delta)
        for key in ("A_inv", "theta", "rank1_updates"):
            if key not in delta:  # a delta of A and b alone: its caches are rebuilt, into fresh arrays
                merged[key] = state[key].copy()
        check_merged(merged, delta, self.l2)
        return merged

    # ---- numerical health ------------------------------------------------
    def condition_numbers(self, state: State) -> FloatArray:
        """Condition number of each arm's ``A``, shape (B, K); large values mean unreliable estimates."""
        return condition_numbers(state["A"])

    def diagnostics(self, state: State, arm_names: list[str] | None = None) -> dict[str, FloatArray]:
        """Each arm's condition number; an :class:`IllConditionedWarning` for every arm above the threshold."""
        condition = self.condition_numbers(state)
        for arm in np.flatnonzero((condition > CONDITION_WARNING).any(axis=0)):
            label = f"arm {arm_names[arm]!r}" if arm_names is not None else f"arm index {arm}"
            warnings.warn(condition_message(label, self.l2), IllConditionedWarning, stacklevel=2)
        return {"condition_number": condition}

    # ---- features --------------------------------------------------------
    def _contexts(self, state: State, context: FloatArray | None) -> FloatArray:
        """Contexts as a float (n, d) array; a clear error for a missing one or a wrong length.

        Finiteness is the caller's boundary check (the Bandit's); :meth:`update`
        checks it again so a NaN never reaches the state.
        """
        width = self.n_features(state)
        if (
            type(context) is np.ndarray
            and context.dtype == np.float64
            and context.ndim == 2
            and context.shape[1] == width
        ):
            return context
        if context is None:
            raise InvalidParameterError(f"{self.name} is contextual: pass context= with {width} features per row")
        return check_contexts("context", context, width)

    def _fold(self, state: State, contexts: FloatArray, rows: IntArray) -> tuple[State, FloatArray]:
        """Fold contexts into the running statistics; return the new statistics and the model's features."""
        compiled = linear_kernels() if rows.shape[0] == 1 and state["feature_count"].shape[0] == 1 else None
        if compiled is None:
            stats, standardized = fold_and_transform(state, contexts, rows)
            return stats, self._with_intercept(standardized)
        features, count, mean, m2 = compiled.standardize_row(
            state["feature_count"][0],
            state["feature_mean"][0],
            state["feature_m2"][0],
            contexts[0],
            True,
            RELATIVE_VARIANCE_FLOOR,
        )
        return {"feature_count": np.array([count]), "feature_mean": mean[None], "feature_m2": m2[None]}, features[None]

    def _with_intercept(self, standardized: FloatArray) -> FloatArray:
        return np.concatenate([standardized, np.ones((standardized.shape[0], 1))], axis=1)

    def _scoring_features(self, state: State, context: FloatArray | None) -> tuple[FloatArray, IntArray]:
        """The model's features for scoring (n, d or d + 1) and each row's state row (n,)."""
        contexts = self._contexts(state, context)
        rows = batch_rows(state, contexts.shape[0])
        if self.standardize:
            contexts = self._with_intercept(transform(state, contexts, rows))
        return contexts, rows

    def _mean_and_width(self, state: State, context: FloatArray | None) -> tuple[FloatArray, FloatArray]:
        features, rows = self._scoring_features(state, context)
        return scores(state, features, rows)

    @abstractmethod
    def _rule(self) -> tuple[float, bool]:
        """The compiled kernels' decision rule: (scale of the width, True for one normal draw per arm)."""

    @abstractmethod
    def _sample_numpy(
        self, state: State, rng: np.random.Generator, mask: BoolArray, context: FloatArray | None
    ) -> IntArray:
        """:meth:`sample` on the numpy path: the same rule and the same draws as the compiled kernel."""

    def sample(
        self, state: State, rng: np.random.Generator, mask: BoolArray, context: FloatArray | None = None
    ) -> IntArray:
        compiled = self._compiled_select(state, rng, mask, context)
        if compiled is not None:
            return compiled
        return self._sample_numpy(state, rng, mask, context)

    def _compiled_select(
        self, state: State, rng: np.random.Generator, mask: BoolArray, context: FloatArray | None
    ) -> IntArray | None:
        """The one-row choice through the compiled kernel (same draws as numpy), or None when not applicable."""
        compiled = linear_kernels() if state["theta"].shape[0] == 1 and len(mask) == 1 else None
        contexts = None if compiled is None else self._contexts(state, context)
        if compiled is None or contexts is None or contexts.shape[0] != 1:
            return None
        features = contexts[0]
        if self.standardize:
            features = compiled.standardize_row(
                state["feature_count"][0],
                state["feature_mean"][0],
                state["feature_m2"][0],
                features,
                False,
                RELATIVE_VARIANCE_FLOOR,
            )[0]
        arm = compiled.linear_select(
            _jit.generator_pointers(rng),
            state["theta"][0],
            state["A_inv"][0],
            features,
            np.asarray(mask, dtype=bool)[0],
            *self._rule(),
        )
        return np.array([arm], dtype=np.intp)

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
        """The replay in one compiled loop (:func:`._ridge.replay`): the kernels of ``choose`` and ``update_one``."""
        contexts = self._contexts(state, context)
        if state["theta"].shape[0] != 1 or not np.isfinite(contexts).all():
            return None  # several states, or a context the row-by-row update would refuse: its error tells
        return replay(
            state,
            self.l2,
            _jit.generator_pointers(rng),
            np.ascontiguousarray(contexts),
            np.ascontiguousarray(logged, dtype=np.intp),
            np.ascontiguousarray(rewards, dtype=np.float64),
            np.asarray(mask, dtype=bool)[0],
            contexts.shape[0] if limit is None else limit,
            *self._rule(),
            self.standardize,
        )

    # ---- operations ------------------------------------------------------
    def means(self, state: State, context: FloatArray | None = None) -> FloatArray:
        """Predicted reward ``x^T theta_k`` for each context row and arm, shape (n, K)."""
        return self._mean_and_width(state, context)[0]

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
        if not np.isfinite(contexts).all():
            check_contexts("context", contexts, contexts.shape[1])  # raises, naming the row and feature
        arms = np.asarray(arms, dtype=np.intp)
        rewards = np.asarray(rewards, dtype=np.float64)
        rows = batch_rows(state, arms.shape[0])
        new_state = dict(state)
        if self.standardize:
            stats, contexts = self._fold(state, contexts, rows)
            new_state.update(stats)
        new_state.update(add_rows(state, rows, arms, rewards, contexts, self.l2))
        return new_state


@register
class LinUCB(LinearPolicy):
    """Disjoint LinUCB: play the arm with the largest upper confidence bound on ``x^T theta_k``.

    Score ``x^T theta_k + alpha * sqrt(x^T A_k^-1 x)``: the ridge prediction
    plus ``alpha`` times its standard error, so rarely seen directions look
    promising. Ties are broken uniformly, and :meth:`probabilities` is that
    exact tie-aware distribution.

    Parameters
    ----------
    alpha : float >= 0, width of the confidence bonus (0 is greedy).
    l2 : float > 0, ridge penalty (the prior precision ``A = l2*I``).
    standardize : bool, standardise contexts online and add an intercept.

    Examples
    --------
    >>> policy = LinUCB(alpha=1.0)
    >>> state = policy.init_state(2, n_features=2)
    >>> state = policy.update(state, [0, 1], [1.0, 0.0], context=[[1.0, 0.0], [1.0, 0.0]])
    >>> policy.probabilities(state, np.ones((1, 2), bool), context=[[1.0, 0.0]]).tolist()
    [[1.0, 0.0]]

    References
    ----------
    Li, Chu, Langford, Schapire, "A contextual-bandit approach to
    personalized news article recommendation", WWW 2010.
    """

    name = "linucb"

    def __init__(self, alpha: float = 1.0, l2: float = 1.0, standardize: bool = False):
        super().__init__(l2, standardize)
        self.alpha = check_real("alpha", alpha, low=0.0)

    def _rule(self) -> tuple[float, bool]:
        return self.alpha, False

    def _ucb(self, state: State, context: FloatArray | None) -> FloatArray:
        means, widths = self._mean_and_width(state, context)
        return means + self.alpha * np.sqrt(widths)

    def probabilities(self, state: State, mask: BoolArray, context: FloatArray | None = None) -> FloatArray:
        return argmax_probabilities(self._ucb(state, context), mask)

    def _sample_numpy(
        self, state: State, rng: np.random.Generator, mask: BoolArray, context: FloatArray | None
    ) -> IntArray:
        return argmax_random_ties(self._ucb(state, context), mask, rng)


@register
class LinTS(LinearPolicy):
    """Linear Thompson sampling: play the arm whose sampled ``x^T theta_k`` is largest.

    ``theta_k ~ N(A_k^-1 b_k, v^2 A_k^-1)``; for one context only the score
    matters, and it is exactly ``N(x^T mu_k, v^2 x^T A_k^-1 x)``, independent
    across arms, so it is drawn directly. :meth:`probabilities` integrates
    P(arm k has the largest score) numerically (absolute error < 1e-8, see
    :mod:`banditkit.policies._gaussian_argmax`).

    Parameters
    ----------
    v : float > 0, posterior scale (larger explores more).
    l2 : float > 0, ridge penalty (the prior precision ``A = l2*I``).
    standardize : bool, standardise contexts online and add an intercept.

    Examples
    --------
    >>> policy = LinTS(v=1.0)
    >>> state = policy.init_state(2, n_features=2)
    >>> p = policy.probabilities(state, np.ones((1, 2), bool), context=[[1.0, 0.0]])
    >>> bool(np.allclose(p, 0.5))
    True

    References
    ----------
    Agrawal, Goyal, "Thompson sampling for contextual bandits with
    linear payoffs", ICML 2013.
    """

    name = "lints"

    def __init__(self, v: float = 1.0, l2: float = 1.0, standardize: bool = False):
        super().__init__(l2, standardize)
        self.v = check_real("v", v, low=0.0, low_open=True)

    def _rule(self) -> tuple[float, bool]:
        return self.v, True

    def _posterior(self, state: State, context: FloatArray | None) -> tuple[FloatArray, FloatArray]:
        means, widths = self._mean_and_width(state, context)
        return means, self.v * np.sqrt(widths)

    def probabilities(self, state: State, mask: BoolArray, context: FloatArray | None = None) -> FloatArray:
        means, sds = self._posterior(state, context)
        mask = np.asarray(mask, dtype=bool)
        compiled = linear_kernels() if means.shape[0] == 1 else None
        if compiled is not None:  # one row: the same quadrature without numpy's per-call overhead
            distribution: FloatArray = compiled.gaussian_argmax_row(means[0], sds[0], mask[0], POINT_MASS_SD)[None]
            return distribution
        return gaussian_argmax_probabilities(means, sds, mask)

    def _sample_numpy(
        self, state: State, rng: np.random.Generator, mask: BoolArray, context: FloatArray | None
    ) -> IntArray:
        means, sds = self._posterior(state, context)
        return argmax_random_ties(means + sds * rng.standard_normal(means.shape), mask, rng)

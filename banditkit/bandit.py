"""The Bandit: named arms, a policy, a random stream and guardrails, in one serialisable object.

The same object is simulated, evaluated offline and served. It validates every
input at the boundary, keeps the policy's learned state as arrays that are
replaced (never mutated) on update, and keeps a ledger of observed rewards per
arm that guardrails and ``stats()`` read independently of the policy.

Everything with an invariant (arms and their status, the abort flag, the
policy state, the version, the ledger) is read-only and changes through
methods only, which keep the caches of the decision fast path in step. Arm
lists, arm status and policy states are replaced, never mutated, so a shallow
copy of a Bandit keeps a consistent state, arms and version.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _validation as check
from . import health
from ._codec import decode_arrays, encode_arrays
from ._typing import AnyArray, BoolArray, FloatArray, IntArray
from .assign import assign, unit_uniform
from .decision import ArmStats, Decision, DecisionBatch, ExperimentStats
from .errors import (
    InvalidParameterError,
    InvalidTypeError,
    NoActiveArmError,
    UnknownArmError,
)
from .guardrails import Guardrails
from .policies import Policy, make_policy
from .policies.base import State, categorical

#: What :meth:`Bandit.to_dict` writes: state arrays as dtype, shape and base64 bytes (:mod:`banditkit._codec`).
FORMAT = "banditkit.bandit/2"
#: The first format, still read: state arrays as lists of numbers.
FORMAT_1 = "banditkit.bandit/1"
#: The keys of a bandit's JSON (:meth:`Bandit.to_dict`), in both formats.
_MODEL_KEYS = (
    "arms",
    "policy",
    "name",
    "guardrails",
    "n_features",
    "state",
    "pulls",
    "reward_sums",
    "reward_sq_sums",
    "active",
    "disabled_reasons",
    "total_reward",
    "aborted",
    "version",
    "rng",
)


def _distribution_row(bandit: Bandit, state: State, mask: BoolArray, context: FloatArray | None) -> FloatArray:
    """The action distribution (K,) of one decision, computed when the Decision is first asked for it.

    A module function, not a bound method or a closure: the one-row select hands it to every Decision, and a
    global costs the least to pass.
    """
    row: FloatArray = bandit._distribution_at(state, mask, context)[0]
    return row


class Bandit:
    """A multi-armed bandit experiment over named arms.

    >>> import banditkit as bk
    >>> bandit = bk.Bandit(["red", "green"], policy="thompson", seed=7)
    >>> decision = bandit.select()
    >>> bandit.update(decision, 1.0)
    >>> sum(bandit.probabilities().values())
    1.0
    """

    def __init__(
        self,
        arms: Sequence[str],
        policy: Policy | str | dict[str, Any] = "thompson",
        *,
        seed: int | np.random.SeedSequence | np.random.Generator | None = None,
        name: str = "default",
        guardrails: Guardrails | dict[str, Any] | None = None,
        n_features: int | None = None,
    ) -> None:
        self._arms: list[str] = _check_arm_names(arms)
        self._policy = make_policy(policy)
        if not isinstance(name, str):
            raise InvalidTypeError(f"name must be a string, got {type(name).__name__} {name!r}")
        if not name:
            raise InvalidParameterError(f"name must be a non-empty string, got {name!r}")
        self._name = name
        self._guardrails = _make_guardrails(guardrails)
        self._guarding = self._guardrails.min_reward_rate is not None or self._guardrails.ruin_threshold is not None
        if self._guardrails.default_arm is not None and self._guardrails.default_arm not in self._arms:
            raise UnknownArmError(f"guardrails.default_arm {self._guardrails.default_arm!r} is not one of the arms")
        self._rng = _make_rng(seed)
        if n_features is not None:
            n_features = check.check_int("n_features", n_features, low=1)
            if not self._policy.contextual:
                raise InvalidParameterError(f"n_features is for contextual policies; {self._policy.name!r} takes none")
        self._n_features = n_features
        n_arms = len(self._arms)
        self._state: State | None = self._initial_state(n_arms)
        # The ledger of observed rewards per arm (policy-independent), as floats for O(1) updates.
        self._pulls, self._reward_sums, self._reward_sq_sums = [0.0] * n_arms, [0.0] * n_arms, [0.0] * n_arms
        self._active = np.ones(n_arms, dtype=bool)
        self._disabled_reasons: dict[str, str] = {}
        self._total_reward = 0.0
        self._aborted = False
        self._version = 0
        self._distribution_cache: tuple[tuple[int, bytes], State, FloatArray] | None = None
        self._reindex()

    # ---- read-only state ----------------------------------------------------
    @property
    def policy(self) -> Policy:
        """The policy: hyperparameters only (immutable); its learned state is :attr:`state`."""
        return self._policy

    @property
    def name(self) -> str:
        """The experiment's name; deterministic assignment hashes units with it."""
        return self._name

    @property
    def guardrails(self) -> Guardrails:
        """The safety settings (frozen)."""
        return self._guardrails

    @property
    def rng(self) -> np.random.Generator:
        """The random stream every draw of this bandit takes its numbers from."""
        return self._rng

    @property
    def n_features(self) -> int | None:
        """Context width of a contextual policy (fixed by the first context if not given), else None."""
        return self._n_features

    @property
    def state(self) -> State | None:
        """The policy's learned arrays, each with a leading batch axis of 1.

        A copy of the mapping; the arrays are replaced on update, never changed in place. None for a
        contextual policy before its first context.
        """
        return None if self._state is None else dict(self._state)

    @property
    def version(self) -> int:
        """Goes up on every change: each reward, arm change, abort and resume."""
        return self._version

    @property
    def aborted(self) -> bool:
        """True while the abort rule (or :meth:`abort`) holds: only the default arm is served."""
        return self._aborted

    @property
    def total_reward(self) -> float:
        """Sum of every observed reward (what the abort rule compares with ``ruin_threshold``)."""
        return self._total_reward

    # ---- arms ---------------------------------------------------------------
    @property
    def arms(self) -> list[str]:
        """All arm names in order, disabled ones included."""
        return list(self._arms)

    @property
    def pulls(self) -> FloatArray:
        """Rewards observed per arm, shape (K,)."""
        return np.array(self._pulls)

    @property
    def reward_sums(self) -> FloatArray:
        """Sum of observed rewards per arm, shape (K,)."""
        return np.array(self._reward_sums)

    @property
    def reward_sq_sums(self) -> FloatArray:
        """Sum of squared observed rewards per arm, shape (K,)."""
        return np.array(self._reward_sq_sums)

    @property
    def active(self) -> BoolArray:
        """Which arms can be served, boolean shape (K,) (a copy: change it with the arm methods)."""
        return self._active.copy()

    @property
    def disabled_reasons(self) -> dict[str, str]:
        """Why each disabled arm is disabled, by arm name (a copy)."""
        return dict(self._disabled_reasons)

    @property
    def active_arms(self) -> list[str]:
        """Arms that can be served."""
        return [arm for arm, on in zip(self._arms, self._active, strict=True) if on]

    def add_arm(self, arm: str) -> None:
        """Add an arm that starts from the policy's prior."""
        _check_arm_names([*self._arms, arm])
        if self._state is not None:
            self._state = self._policy.add_arms(self._state, 1, self._n_features)
        self._arms = [*self._arms, arm]
        self._pulls, self._reward_sums, self._reward_sq_sums = (
            [*ledger, 0.0] for ledger in (self._pulls, self._reward_sums, self._reward_sq_sums)
        )
        self._active = np.append(self._active, True)
        self._changed()

    def disable_arm(self, arm: str, reason: str = "disabled by operator") -> None:
        """Stop serving ``arm`` (probability 0, the rest renormalised); its data is kept."""
        self._set_active(self._arm_index(arm), False)
        self._disabled_reasons = {**self._disabled_reasons, arm: reason}
        self._changed()

    def enable_arm(self, arm: str) -> None:
        """Serve a disabled arm again."""
        self._set_active(self._arm_index(arm), True)
        self._disabled_reasons = {key: value for key, value in self._disabled_reasons.items() if key != arm}
        self._changed()

    def remove_arm(self, arm: str) -> None:
        """Forget ``arm`` and its data; the default arm and the last arm cannot be removed."""
        index = self._arm_index(arm)
        if arm == self._guardrails.default_arm:
            raise InvalidParameterError(f"arm {arm!r} is the guardrails' default arm and cannot be removed")
        if len(self._arms) == 1:
            raise InvalidParameterError(f"arm {arm!r} is the only arm and cannot be removed")
        if self._state is not None:
            self._state = self._policy.remove_arm(self._state, index)
        self._arms = self._arms[:index] + self._arms[index + 1 :]
        self._pulls, self._reward_sums, self._reward_sq_sums = (
            ledger[:index] + ledger[index + 1 :] for ledger in (self._pulls, self._reward_sums, self._reward_sq_sums)
        )
        self._active = np.delete(self._active, index)
        self._disabled_reasons = {key: value for key, value in self._disabled_reasons.items() if key != arm}
        self._changed()

    def abort(self) -> None:
        """Stop exploring: serve only the guardrails' default arm (flagged as fallback) until :meth:`resume`.

        What the abort rule (``ruin_threshold``) does by itself; without a
        default arm, ``select()`` then raises :class:`NoActiveArmError`.
        """
        self._aborted = True
        self._changed()

    def resume(self) -> None:
        """Lift an abort: exploration resumes (the cumulative reward is not reset)."""
        self._aborted = False
        self._changed()

    # ---- decisions ----------------------------------------------------------
    def select(
        self, context: ArrayLike | None = None, unit: str | None = None, allowed: Sequence[str] | None = None
    ) -> Decision:
        """Choose an arm; deterministic per ``unit`` if given, restricted to ``allowed`` if given."""
        if self._plain and context is None and unit is None and allowed is None:
            # The common case, kept short: a draw from the policy over the active arms.
            current, active = self._state, self._active_row
            assert current is not None  # only a contextual policy starts without one, and it never takes this path
            try:
                index = self._policy.choose(current, self._rng, active)
            except Exception:
                if self._guardrails.default_arm is None:
                    raise
                return self._fallback_decision(None, None)
            return Decision(
                self._arm_tuple[index],
                index,
                self._arm_tuple,
                None,
                None,
                False,
                self._version,
                None,
                _distribution_row,
                (self, current, active, None),
            )
        context = self._context_rows(context, 1)
        unit = None if unit is None else _check_unit(unit)
        mask = self._mask(allowed)
        if mask is None:
            return self._fallback_decision(context, unit)
        state = self._state
        assert state is not None  # _context_rows made it for a contextual policy
        distribution = None
        try:
            if unit is not None or self._guardrails.max_exploration is not None:
                distribution = self._distribution_at(state, mask, context)[0]
                if unit is not None:
                    index = int(assign(distribution, unit_uniform(self._name, unit)))
                else:
                    index = int(categorical(distribution[None], self._rng)[0])
            else:
                index = self._policy.choose(state, self._rng, mask, context)
        except Exception:
            if self._guardrails.default_arm is None:
                raise
            return self._fallback_decision(context, unit)
        return Decision(
            self._arm_tuple[index],
            index,
            self._arm_tuple,
            None if context is None else context[0],
            unit,
            False,
            self._version,
            distribution,
            *((None, ()) if distribution is not None else (_distribution_row, (self, state, mask, context))),
        )

    def select_many(
        self,
        n: int | None = None,
        contexts: ArrayLike | None = None,
        allowed: Sequence[str] | None = None,
        units: Sequence[str] | None = None,
    ) -> DecisionBatch:
        """``n`` independent decisions from the current state, vectorized (contexts (n, d) for contextual policies)."""
        n = self._batch_size(n, contexts, units)
        contexts = self._context_rows(contexts, n)
        units = None if units is None else [_check_unit(unit) for unit in units]
        mask = self._mask(allowed)
        if mask is None:
            return self._fallback_batch(n, contexts, units)
        state = self._state
        assert state is not None  # _context_rows made it for a contextual policy
        masks = np.broadcast_to(mask, (n, mask.shape[1]))
        probabilities = None
        try:
            if units is not None:
                probabilities = self._distribution_at(state, masks, contexts)
                indices = assign(probabilities, np.array([unit_uniform(self._name, unit) for unit in units]))
            elif contexts is None or self._guardrails.max_exploration is not None:
                # Rows share one state, so each is an independent draw from the exact distribution.
                probabilities = self._distribution_at(state, masks, contexts)
                indices = categorical(probabilities, self._rng)
            else:
                indices = self._policy.sample(state, self._rng, masks, contexts)
        except Exception:
            if self._guardrails.default_arm is None:
                raise
            return self._fallback_batch(n, contexts, units)
        return DecisionBatch(
            indices,
            self._arm_tuple,
            contexts=contexts,
            units=units,
            fallback=np.zeros(n, dtype=bool),
            version=self._version,
            probabilities=probabilities,
            compute=None if probabilities is not None else self._distribution_at,
            arguments=() if probabilities is not None else (state, masks, contexts),
        )

    def probabilities(self, context: ArrayLike | None = None, allowed: Sequence[str] | None = None) -> dict[str, float]:
        """Exact probability of serving each arm now (guardrails applied), summing to 1."""
        context = self._context_rows(context, 1)
        mask, state = self._mask(allowed), self._state
        assert state is not None  # _context_rows made it for a contextual policy
        if mask is not None:
            try:
                distribution = self._distribution_at(state, mask, context)[0]
            except Exception:
                if self._guardrails.default_arm is None:
                    raise
            else:
                return dict(zip(self._arms, distribution.tolist(), strict=True))
        # What select() serves when only the default arm can be, or when the policy fails.
        return dict(zip(self._arms, self._default_distribution(1)[0].tolist(), strict=True))

    def probabilities_many(self, contexts: ArrayLike | None = None, n: int | None = None) -> FloatArray:
        """Action distribution for ``n`` rows (or one per context row), shape (n, K): the OPE target."""
        n = self._batch_size(n, contexts, None)
        contexts = self._context_rows(contexts, n)
        mask, state = self._mask(None), self._state
        assert state is not None  # _context_rows made it for a contextual policy
        if mask is not None:
            try:
                return self._distribution_at(state, np.broadcast_to(mask, (n, mask.shape[1])), contexts)
            except Exception:
                if self._guardrails.default_arm is None:
                    raise
        return self._default_distribution(n)

    # ---- learning -----------------------------------------------------------
    def update(self, arm: str | Decision, reward: float, context: ArrayLike | None = None) -> None:
        """Learn from one reward for ``arm`` (a name, or the Decision it answers)."""
        policy = self._policy
        propensity: float | None = None
        checked: FloatArray | None = None
        if type(arm) is Decision:
            if context is None and arm.context is not None:
                checked = arm.context[None, :]  # validated when the decision was made
            if policy.needs_propensities:
                propensity = arm.propensity
            arm = arm.arm
        index = self._index.get(arm) if type(arm) is str else None
        if index is None:
            index = self._arm_index(arm)
        low, high = policy.reward_bounds
        if not (type(reward) is float and low <= reward <= high):  # NaN and inf fail here too
            reward = check.check_reward("reward", reward, (low, high), advice=policy.reward_advice())
        rows = checked
        if rows is None and (context is not None or policy.contextual):
            rows = self._context_rows(context, 1)
        if propensity is None and policy.needs_propensities:
            propensity = float(self._current_propensities(np.array([index]), rows)[0])
        assert self._state is not None  # _context_rows made it for a contextual policy
        self._state = policy.update_one(self._state, index, reward, propensity=propensity, context=rows)
        self._pulls[index] += 1.0
        self._reward_sums[index] += reward
        self._reward_sq_sums[index] += reward * reward
        self._total_reward += reward
        self._learned()

    def update_many(
        self,
        arms: ArrayLike,
        rewards: ArrayLike,
        contexts: ArrayLike | None = None,
        propensities: ArrayLike | None = None,
    ) -> None:
        """Learn from many rewards at once; ``arms`` are names or indices, shape (n,)."""
        indices = self._arm_indices(arms)
        rewards = self._checked_rewards(rewards)
        if rewards.shape[0] != indices.shape[0]:
            raise InvalidParameterError(f"rewards has {rewards.shape[0]} values but arms has {indices.shape[0]}")
        contexts = self._context_rows(contexts, indices.shape[0])
        if propensities is not None:
            propensities = check.check_rewards("propensities", propensities, (0.0, 1.0), rule="")
            if propensities.shape[0] != indices.shape[0]:
                raise InvalidParameterError(
                    f"propensities has {propensities.shape[0]} values but arms has {indices.shape[0]}"
                )
            if (propensities <= 0).any():
                row = int(np.flatnonzero(propensities <= 0)[0])
                raise InvalidParameterError(
                    f"propensities must be in (0, 1], got {propensities[row]!r} at position {row}"
                )
        self._apply(indices, rewards, contexts, propensities)

    def absorb(
        self, arms: ArrayLike, rewards: ArrayLike, state: Mapping[str, ArrayLike], *, version: int | None = None
    ) -> None:
        """Take ``state`` as the policy state after learning ``rewards`` for ``arms``, computed elsewhere.

        For a store that adds the policy's delta itself (the decision service
        does): the reward ledger and the guardrails follow exactly as in
        :meth:`update_many`, without computing the update a second time.
        ``state`` must have the current state's keys and shapes, except that the
        row buffers of the policy's ``buffer_keys`` may change length on axis 1.
        ``version`` is the store's version of ``state`` (greater than
        :attr:`version`: other writers may have added deltas since); by default
        the version goes up by one, as on any update.
        """
        indices = self._arm_indices(arms)
        rewards = self._checked_rewards(rewards)
        if rewards.shape[0] != indices.shape[0]:
            raise InvalidParameterError(f"rewards has {rewards.shape[0]} values but arms has {indices.shape[0]}")
        version = self._next_version(version)
        self._record(indices, rewards, self._checked_state(state, "absorb"), version)

    def adopt(
        self, state: Mapping[str, ArrayLike], ledger: Mapping[str, ArrayLike], *, version: int | None = None
    ) -> None:
        """Take ``state`` and the reward ``ledger`` after learning rewards elsewhere, as :meth:`absorb` would make them.

        For a store that merges the policy's delta and the ledger's itself
        (the decision service's SQLite and memory stores): the Bandit takes
        both as they are, with the version and the guardrails following as in
        :meth:`absorb`, so nothing of the update is computed a second time.
        ``ledger`` holds ``pulls``, ``reward_sums`` and ``reward_sq_sums``,
        shape (K,) each, and ``total_reward``, one number (shape () or (1,));
        ``state`` is checked as in :meth:`absorb`.
        """
        version = self._next_version(version)
        checked = self._checked_state(state, "adopt")
        n_arms = len(self._arms)
        if ledger.keys() != set(_LEDGER_KEYS):
            raise InvalidParameterError(
                f"ledger must have the keys pulls, reward_sums, reward_sq_sums and total_reward, got {sorted(ledger)}"
            )
        columns = [np.asarray(ledger[key], dtype=np.float64) for key in _LEDGER_KEYS]
        for key, column in zip(_LEDGER_KEYS, columns, strict=True):
            expected = (n_arms,) if key != "total_reward" else (1,)
            if column.shape != expected and not (key == "total_reward" and column.shape == ()):
                raise InvalidParameterError(f"ledger[{key!r}] must have shape {expected}, got {column.shape}")
        joined = np.concatenate([column.reshape(-1) for column in columns])
        if not np.isfinite(joined).all():
            key = _LEDGER_KEYS[min(int(np.flatnonzero(~np.isfinite(joined))[0]) // n_arms, 3)]
            raise InvalidParameterError(f"ledger[{key!r}] holds NaN or infinite values")
        values = joined.tolist()
        pulls, reward_sums = values[:n_arms], values[n_arms : 2 * n_arms]
        reward_sq_sums, total_reward = values[2 * n_arms : 3 * n_arms], values[-1]
        self._state = checked
        self._pulls, self._reward_sums, self._reward_sq_sums = pulls, reward_sums, reward_sq_sums
        self._total_reward = total_reward
        self._learned(version)

    def _next_version(self, version: int | None) -> int | None:
        """``version``, checked to be ahead of :attr:`version` (None: one more, set when learning)."""
        return None if version is None else check.check_int("version", version, low=self._version + 1)

    def _checked_state(self, state: Mapping[str, ArrayLike], method: str) -> State:
        """``state`` as arrays, checked to have the current state's keys and shapes, all finite."""
        current, buffers = self._state, self._policy.buffer_keys
        if current is None:
            raise InvalidParameterError(
                f"{method} needs the policy state, and contextual policy {self._policy.name!r} has none before its "
                f"first context: build the Bandit with n_features="
            )
        if state.keys() != current.keys() or any(
            not _same_shape(np.shape(state[key]), current[key].shape, grows=key in buffers) for key in current
        ):
            shapes = {key: value.shape for key, value in current.items()}
            grows = f" (axis 1 of {sorted(buffers)} may change length)" if buffers else ""
            raise InvalidParameterError(f"state must have the keys and shapes {shapes}{grows}")
        for key, value in state.items():
            if not np.isfinite(value).all():
                raise InvalidParameterError(f"state[{key!r}] holds NaN or infinite values")
        return {key: np.asarray(value) for key, value in state.items()}

    def _checked_rewards(self, rewards: ArrayLike) -> FloatArray:
        """``rewards`` as a float array inside the policy's bounds, or an error that says how to widen them."""
        policy = self._policy
        checked: FloatArray = check.check_rewards(
            "rewards", rewards, policy.reward_bounds, advice=policy.reward_advice()
        )
        return checked

    def _apply(
        self, indices: IntArray, rewards: FloatArray, contexts: FloatArray | None, propensities: FloatArray | None
    ) -> None:
        """Learn from validated rows: the policy's batch update, then the ledger."""
        if propensities is None and self._policy.needs_propensities:
            propensities = self._current_propensities(indices, contexts)
        assert self._state is not None  # _context_rows made it for a contextual policy
        self._record(
            indices,
            rewards,
            self._policy.update(self._state, indices, rewards, propensities=propensities, context=contexts),
        )

    def _record(self, indices: IntArray, rewards: FloatArray, state: State, version: int | None = None) -> None:
        """The new policy state, then the reward ledger (replaced, not changed), the version and the guardrails."""
        self._state = state
        n_arms = len(self._pulls)
        self._pulls, self._reward_sums, self._reward_sq_sums = (
            (np.array(ledger) + np.bincount(indices, weights=weights, minlength=n_arms)).tolist()
            for ledger, weights in (
                (self._pulls, None),
                (self._reward_sums, rewards),
                (self._reward_sq_sums, rewards * rewards),
            )
        )
        self._total_reward += float(rewards.sum())
        self._learned(version)

    def _current_propensities(self, indices: IntArray, contexts: FloatArray | None) -> FloatArray:
        """The policy's current probability of each arm over all arms: the propensity when none was logged.

        Masks and disabled arms are left out: they say nothing of how the arm was chosen.
        """
        every_arm = np.ones((1, len(self._arms)), dtype=bool)
        assert self._state is not None  # _context_rows made it for a contextual policy
        current = self._policy.probabilities(self._state, every_arm, contexts)
        logged: FloatArray = np.broadcast_to(current, (indices.shape[0], current.shape[1]))[
            np.arange(indices.shape[0]), indices
        ]
        return logged

    def _learned(self, version: int | None = None) -> None:
        """After every reward: a new version (``version``, else one more), and the guardrails' verdict."""
        self._version = self._version + 1 if version is None else version
        if self._guarding:
            self._check_guardrails()

    # ---- reporting ----------------------------------------------------------
    def stats(self) -> ExperimentStats:
        """Per arm: pulls, mean with 95% intervals, P(best), current probability, status; and the regret so far.

        Each arm's mean has a fixed-n interval and a confidence sequence, and P(beats the default arm). The
        numbers and their guarantees are described in :mod:`banditkit.health`; they read the ledger of observed
        rewards, never the random stream.
        """
        probabilities = None if self._policy.contextual else self.probabilities()
        diagnostics = {} if self._state is None else self._policy.diagnostics(self._state, self._arms)
        bounds = self._policy.reward_range
        if bounds is None and self._policy.reward_bounds[0] >= 0.0 and self._policy.reward_bounds[1] <= 1.0:
            bounds = (0.0, 1.0)
        default = self._guardrails.default_arm
        report = health.assess_ledger(
            tuple(self._pulls),
            tuple(self._reward_sums),
            tuple(self._reward_sq_sums),
            bounds,
            None if default is None else self._index[default],
            not self._policy.contextual,
        )
        optional = health.optional
        rows = tuple(
            ArmStats(
                arm=arm,
                pulls=int(self._pulls[index]),
                mean=optional(report.mean[index]),
                low=optional(report.low[index]),
                high=optional(report.high[index]),
                probability=None if probabilities is None else probabilities[arm],
                active=bool(self._active[index]),
                disabled_reason=self._disabled_reasons.get(arm),
                diagnostics={key: float(value[0, index]) for key, value in diagnostics.items()},
                cs_low=optional(report.cs_low[index]),
                cs_high=optional(report.cs_high[index]),
                p_best=optional(report.p_best[index]),
                p_beats_default=optional(report.p_beats_default[index]),
            )
            for index, arm in enumerate(self._arms)
        )
        return ExperimentStats(
            rows, optional(report.regret_estimate), optional(report.regret_low), optional(report.regret_high)
        )

    # ---- serialisation ------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this bandit is, as JSON-ready data."""
        return {
            "format": FORMAT,
            "name": self._name,
            "arms": list(self._arms),
            "policy": self._policy.to_dict(),
            "guardrails": asdict(self._guardrails),
            "n_features": self._n_features,
            "state": None if self._state is None else encode_arrays(self._state),
            "pulls": list(self._pulls),
            "reward_sums": list(self._reward_sums),
            "reward_sq_sums": list(self._reward_sq_sums),
            "active": self._active.tolist(),
            "disabled_reasons": dict(self._disabled_reasons),
            "total_reward": self._total_reward,
            "aborted": self._aborted,
            "version": self._version,
            "rng": self._rng.bit_generator.state,
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON text (exact: state arrays as their bytes, other floats at round-trip precision)."""
        import json

        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, state: State | None = None) -> Bandit:
        """Rebuild a bandit from :meth:`to_dict` output (``format`` 2, or 1 as written before).

        A store that keeps the policy arrays apart from the rest (as the
        decision service does) passes them as ``state``, with ``data["state"]``
        None; they must have the policy's keys.
        """
        given = data.get("format") if isinstance(data, dict) else data
        if given not in (FORMAT, FORMAT_1):
            raise InvalidParameterError(f"format must be {FORMAT!r} or {FORMAT_1!r}, got {given!r}", field="format")
        missing = [key for key in _MODEL_KEYS if key not in data]
        if missing:
            raise InvalidParameterError(f"bandit JSON lacks {', '.join(missing)}", field=missing[0])
        if state is not None and data["state"] is not None:
            raise InvalidParameterError("state is given twice: in data['state'] and as state")
        bit_generator = _bit_generator(data["rng"])
        bandit = cls(
            data["arms"],
            data["policy"],
            seed=np.random.Generator(bit_generator),
            name=data["name"],
            guardrails=data["guardrails"],
            n_features=data["n_features"],
        )
        if data["state"] is not None:  # from outside: every array checked
            decoded = (
                decode_arrays(data["state"])
                if given == FORMAT
                else {key: _decode_listed(value) for key, value in data["state"].items()}
            )
            _checked_keys(decoded, bandit._state, bandit._policy.name)
            bandit._state = bandit._policy.check_state(decoded, len(bandit._arms), bandit._n_features)
        elif state is not None:  # a store's own arrays: only their keys
            bandit._state = _checked_keys(state, bandit._state, bandit._policy.name)
        n_arms = len(bandit._arms)
        bandit._pulls = _ledger(data, "pulls", n_arms, low=0.0)
        bandit._reward_sums = _ledger(data, "reward_sums", n_arms)
        bandit._reward_sq_sums = _ledger(data, "reward_sq_sums", n_arms, low=0.0)
        active = data["active"]
        if not isinstance(active, list) or len(active) != n_arms or not all(isinstance(on, bool) for on in active):
            raise InvalidParameterError(
                f"active must be {n_arms} booleans, one per arm, got {active!r:.100}", field="active"
            )
        bandit._active = np.array(active, dtype=bool)
        bandit._disabled_reasons = dict(data["disabled_reasons"])
        bandit._total_reward = float(data["total_reward"])
        bandit._aborted = bool(data["aborted"])
        bandit._version = check.check_int("version", data["version"], low=0)
        bandit._reindex()
        return bandit

    @classmethod
    def from_json(cls, text: str) -> Bandit:
        """Rebuild a bandit from :meth:`to_json` output."""
        import json

        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as error:
            raise InvalidParameterError(f"bandit JSON is malformed: {error}") from error
        return cls.from_dict(data)

    def __repr__(self) -> str:
        return f"Bandit(name={self._name!r}, arms={self._arms!r}, policy={self._policy!r}, version={self._version})"

    # ---- internals ----------------------------------------------------------
    def _initial_state(self, n_arms: int) -> State | None:
        if self._policy.contextual and self._n_features is None:
            return None  # fixed by the first context seen
        return self._policy.init_state(n_arms, 1, self._n_features)

    def _reindex(self) -> None:
        self._index = {arm: i for i, arm in enumerate(self._arms)}
        self._arm_tuple = tuple(self._arms)
        self._active_row = self._active[None, :].copy()
        self._any_active = bool(self._active.any())
        # select()'s short path: no context, no exploration cap, something to serve.
        self._plain = (
            not self._policy.contextual
            and self._guardrails.max_exploration is None
            and not self._aborted
            and self._any_active
        )

    def _changed(self) -> None:
        self._version += 1
        self._reindex()

    def _set_active(self, index: int, on: bool) -> None:
        active = self._active.copy()
        active[index] = on
        self._active = active

    def _arm_index(self, arm: Any) -> int:
        try:
            return self._index[arm]
        except (KeyError, TypeError):
            raise UnknownArmError(f"arm must be one of {self._arms}, got {arm!r}") from None

    def _arm_indices(self, arms: ArrayLike) -> IntArray:
        values = np.asarray(arms)
        if values.ndim != 1:
            raise InvalidParameterError(f"arms must be 1-dimensional, got shape {values.shape}")
        if values.dtype.kind in "iu":
            bad = (values < 0) | (values >= len(self._arms))
            if bad.any():
                raise UnknownArmError(f"arm index must be in [0, {len(self._arms) - 1}], got {values[bad][0]}")
            return values.astype(np.intp)
        names, inverse = np.unique(values, return_inverse=True)
        return np.array(
            [self._arm_index(str(name) if isinstance(name, np.str_) else name) for name in names], dtype=np.intp
        )[inverse]

    def _mask(self, allowed: Sequence[str] | None) -> BoolArray | None:
        """Allowed and active arms as (1, K), or None when only the default arm can be served."""
        if self._aborted:
            if self._guardrails.default_arm is None:
                raise NoActiveArmError("the abort rule fired and there is no default arm to serve")
            return None
        if allowed is None:
            mask = self._active_row
        else:
            if isinstance(allowed, str) or not isinstance(allowed, Sequence | np.ndarray):
                raise InvalidTypeError(f"allowed must be a list of arm names, got {allowed!r}")
            mask = np.zeros_like(self._active_row)
            mask[0, [self._arm_index(arm) for arm in allowed]] = True
            mask &= self._active_row
        if not (self._any_active if allowed is None else mask.any()):
            if self._guardrails.default_arm is None:
                raise NoActiveArmError(f"no active arm among allowed={allowed!r} and no default arm")
            return None
        return mask

    def _distribution_at(self, state: State, mask: BoolArray, contexts: FloatArray | None) -> FloatArray:
        """The exact action distribution (n, K) for a state snapshot, exploration cap applied.

        Without contexts every row shares one distribution, cached per (state,
        mask) until the next change: many decisions between two updates (a
        served experiment) pay for one numerical integration.
        """
        if contexts is None:
            key = (id(state), mask[0].tobytes())
            cached = self._distribution_cache
            if cached is None or cached[0] != key or cached[1] is not state:
                cached = self._distribution_cache = (key, state, self._capped_distribution(state, mask[:1], None))
            return np.broadcast_to(cached[2], mask.shape)
        return self._capped_distribution(state, mask, contexts)

    def _capped_distribution(self, state: State, mask: BoolArray, contexts: FloatArray | None) -> FloatArray:
        probabilities = self._policy.probabilities(state, mask, contexts)
        if self._guardrails.max_exploration is None:
            return probabilities
        means = np.broadcast_to(self._policy.means(state, contexts), mask.shape)
        best = np.where(mask, means, -np.inf).argmax(axis=1)
        return self._guardrails.cap_exploration(probabilities, best)

    def _default_distribution(self, n: int) -> FloatArray:
        """All mass on the default arm, shape (n, K): what a guardrail serves."""
        distribution = np.zeros((n, len(self._arms)))
        distribution[:, self._arm_index(self._guardrails.default_arm)] = 1.0
        return distribution

    def _fallback_batch(self, n: int, contexts: FloatArray | None, units: list[str] | None) -> DecisionBatch:
        distribution = self._default_distribution(n)
        return DecisionBatch(
            distribution.argmax(axis=1),
            self._arm_tuple,
            contexts=contexts,
            units=units,
            fallback=np.ones(n, dtype=bool),
            version=self._version,
            probabilities=distribution,
        )

    def _fallback_decision(self, context: FloatArray | None, unit: str | None) -> Decision:
        index = self._arm_index(self._guardrails.default_arm)
        return Decision(
            self._arms[index],
            index,
            self._arm_tuple,
            None if context is None else context[0],
            unit,
            True,
            self._version,
            distribution=self._default_distribution(1)[0],
        )

    def _context_rows(self, context: ArrayLike | None, n: int) -> FloatArray | None:
        """Validated contexts (n, d), or None for a non-contextual policy."""
        if not self._policy.contextual:
            if context is not None:
                raise InvalidParameterError(f"policy {self._policy.name!r} takes no context, got one")
            return None
        if context is None:
            raise InvalidParameterError(f"policy {self._policy.name!r} needs a context")
        if self._n_features is None:
            width = np.shape(context)[-1] if np.ndim(context) >= 1 else 0
            rows = check.check_contexts("context", context, max(width, 1))
            self._n_features = rows.shape[1]
            self._state = self._policy.init_state(len(self._arms), 1, self._n_features)
        else:
            rows = check.check_contexts("context", context, self._n_features)
        if rows.shape[0] != n:
            raise InvalidParameterError(f"context has {rows.shape[0]} rows, expected {n}")
        return rows

    def _batch_size(self, n: int | None, contexts: Any, units: Sequence[str] | None) -> int:
        if n is None:
            if contexts is not None:
                n = len(contexts)
            elif units is not None:
                n = len(units)
            else:
                raise InvalidParameterError("select_many needs n, contexts or units")
        n = check.check_int("n", n, low=1)
        if units is not None and len(units) != n:
            raise InvalidParameterError(f"units has {len(units)} entries, expected {n}")
        return n

    def _check_guardrails(self) -> None:
        """Disable arms whose SLO is breached and fire the abort rule (no new version: the reward made one)."""
        guardrails, pulls, reward_sums = self._guardrails, self.pulls, self.reward_sums
        breached = guardrails.slo_violations(pulls, reward_sums) & self._active
        if guardrails.default_arm is not None:
            breached[self._index[guardrails.default_arm]] = False  # the fallback is never disabled by its SLO
        if breached.any():
            self._active = self._active & ~breached
            self._disabled_reasons = {
                **self._disabled_reasons,
                **{
                    self._arms[index]: (
                        f"SLO: mean reward {reward_sums[index] / pulls[index]:.4g} below "
                        f"min_reward_rate {guardrails.min_reward_rate} after {int(pulls[index])} pulls"
                    )
                    for index in np.flatnonzero(breached)
                },
            }
        if not self._aborted and guardrails.ruined(self._total_reward):
            self._aborted = True
        self._reindex()


#: The reward ledger's keys, as :meth:`Bandit.adopt` takes them.
_LEDGER_KEYS = ("pulls", "reward_sums", "reward_sq_sums", "total_reward")


def _same_shape(shape: tuple[int, ...], expected: tuple[int, ...], grows: bool) -> bool:
    """``shape`` is ``expected``, or (``grows``: a row buffer, appended to and trimmed) differs only on axis 1."""
    if not grows:
        return shape == expected
    return len(shape) == len(expected) and shape[:1] + shape[2:] == expected[:1] + expected[2:]


def _check_arm_names(arms: Any) -> list[str]:
    if isinstance(arms, str) or not isinstance(arms, Sequence | np.ndarray):
        raise InvalidTypeError(f"arms must be a list of names, got {arms!r}")
    names: list[str] = list(arms)
    if not names:
        raise InvalidParameterError("arms must hold at least one arm, got []")
    for arm in names:
        if not isinstance(arm, str):
            raise InvalidTypeError(f"arm names must be strings, got {type(arm).__name__} {arm!r}")
        if not arm:
            raise InvalidParameterError(f"arm names must be non-empty strings, got {arm!r}")
    if len(set(names)) != len(names):
        duplicate = next(arm for arm in names if names.count(arm) > 1)
        raise InvalidParameterError(f"arm names must be unique, got {duplicate!r} twice")
    return names


def _check_unit(unit: Any) -> str:
    if not isinstance(unit, str):
        raise InvalidTypeError(f"unit must be a string, got {type(unit).__name__} {unit!r}")
    if not unit:
        raise InvalidParameterError(f"unit must be a non-empty string, got {unit!r}")
    return unit


def _make_rng(seed: Any) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    try:
        return np.random.default_rng(seed)
    except TypeError:
        raise InvalidTypeError(f"seed must be an int, a SeedSequence, a Generator or None, got {seed!r}") from None
    except ValueError:
        raise InvalidParameterError(f"seed must be a non-negative integer, got {seed!r}") from None


def _make_guardrails(guardrails: Any) -> Guardrails:
    if guardrails is None:
        return Guardrails()
    if isinstance(guardrails, Guardrails):
        return guardrails
    if isinstance(guardrails, dict):
        try:
            return Guardrails(**guardrails)
        except TypeError as error:
            raise InvalidParameterError(f"guardrails: {error}") from None
    raise InvalidTypeError(f"guardrails must be a Guardrails or a dict, got {type(guardrails).__name__}")


def _bit_generator(state: Any) -> np.random.BitGenerator:
    """The bit generator a model's ``rng`` describes (numpy's ``bit_generator.state``)."""
    name = state.get("bit_generator") if isinstance(state, dict) else None
    kind = getattr(np.random, name, None) if isinstance(name, str) else None
    if not (isinstance(kind, type) and issubclass(kind, np.random.BitGenerator)):
        raise InvalidParameterError(f"rng must be a numpy bit generator's state, got {state!r:.100}", field="rng")
    generator = kind()
    try:
        generator.state = state
    except (TypeError, ValueError, KeyError) as error:
        raise InvalidParameterError(f"rng is not a valid {name} state: {error}", field="rng") from None
    return generator


def _checked_keys(state: State, prior: State | None, policy: str) -> State:
    """``state`` (a copy of the mapping) if it has the keys of ``prior``, the policy's initial state."""
    if prior is None or state.keys() != prior.keys():
        raise InvalidParameterError(
            f"state must have the keys {None if prior is None else sorted(prior)} of policy {policy!r}, "
            f"got {sorted(state)}",
            field="state",
        )
    return dict(state)


def _ledger(data: dict[str, Any], key: str, n_arms: int, low: float | None = None) -> list[float]:
    """``data[key]``: one finite number per arm (at least ``low``), as floats."""
    values = data[key]
    try:
        numbers = [float(value) for value in values] if isinstance(values, list) else None
    except (TypeError, ValueError):
        numbers = None
    if numbers is None or len(numbers) != n_arms or not all(math.isfinite(value) for value in numbers):
        raise InvalidParameterError(
            f"{key} must be {n_arms} finite numbers, one per arm, got {values!r:.100}", field=key
        )
    if low is not None and min(numbers, default=low) < low:
        raise InvalidParameterError(f"{key} must be at least {low}, got {min(numbers)}", field=key)
    return numbers


def _decode_listed(data: dict[str, Any]) -> AnyArray:
    """A state array as format 1 wrote it: dtype, shape and the numbers as a list (exact for numeric dtypes)."""
    return np.array(data["data"], dtype=np.dtype(data["dtype"])).reshape(data["shape"])

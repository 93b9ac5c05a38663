"""One served experiment in memory: its configuration, its Bandit and the lock that guards them."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..bandit import Bandit
from ..errors import BanditkitError
from ..guardrails import Guardrails
from ..policies import Policy, make_policy
from . import candidates
from .candidates import Candidate
from .errors import InvalidRequestError
from .model import join
from .schemas import ArmState, ExperimentCreate, ExperimentOut
from .serving import DistributionCache
from .sources import check_source
from .stores import ExperimentRecord
from .stores.base import ACTIVE, status_of, with_status

#: The largest policy state an experiment may start with, in bytes: each reward copies it in the experiment's
#: lane and each checkpoint writes it (``docs/service.md``, "Large experiments", has the measurements).
MAX_STATE_BYTES = 34_000_000
#: The largest linear contextual experiments under it (LinUCB and LinTS keep two d x d matrices per arm).
LARGEST_LINEAR = "1030 features x 2 arms, 728 x 4, 514 x 8 or 363 x 16 for linucb and lints"


def creation_spec(config: dict) -> ExperimentCreate:
    """The creation request a stored configuration holds (its lifecycle status set aside)."""
    return ExperimentCreate.model_validate(with_status(config, ACTIVE))


@dataclass
class Experiment:
    """The live state of one experiment; ``bandit`` is replaced whole on model changes."""

    config: ExperimentCreate
    bandit: Bandit
    created_at: float
    cache: DistributionCache
    lock: threading.Lock = field(default_factory=threading.Lock)
    sweep_watermark: float = 0.0
    #: Held while a model change is written: rewards wait for it, so they are planned on the new model and a
    #: change is never overtaken by rewards submitted after it (its compare-and-set then succeeds on retry).
    model_change: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: The candidate policy served to a share of units (:mod:`.candidates`), if one is registered.
    candidate: Candidate | None = None
    #: The stored model's ``lineage`` (the last promoted candidate and the version that retired its predecessor).
    lineage: dict = field(default_factory=dict)
    #: :data:`ACTIVE` or :data:`ARCHIVED` (a deleted experiment is not served at all).
    status: str = ACTIVE

    @property
    def name(self) -> str:
        return self.config.name

    async def model_written(self) -> None:
        """Return once no model change of this experiment is being written (at once, nearly always)."""
        if self.model_change.locked():
            async with self.model_change:
                pass

    def adopt(self, record: ExperimentRecord | None) -> None:
        """Serve ``record`` if its version is newer than the served Bandit's (another writer moved it).

        Safe from any thread: the Bandit is built outside the lock (milliseconds for a linear model of megabytes,
        so the engine builds it off the event loop) and swapped in under it, where its generator takes the
        served one's state as it is then, so draws made while it was built are not drawn again.
        """
        if record is None or record.version <= self.bandit.version:
            return
        bandit = join(record.model, record.state, record.version, self.bandit.rng)
        config = creation_spec(record.config)  # edited by a PATCH, perhaps
        candidate = candidates.load(record.model, record.state, record.version, bandit.rng, self.cache.sibling())
        with self.lock:  # the distribution cache sees the new version (and any change of arms)
            if record.version > self.bandit.version:  # not overtaken while it was built
                bandit.rng.bit_generator.state = self.bandit.rng.bit_generator.state
                self.bandit, self.config = bandit, config
                self.candidate, self.lineage = candidate, dict(record.model.get("lineage") or {})
                self.status = status_of(record.config)

    def default_arm(self) -> str:
        """The arm served when anything fails: the guardrails' default arm, else the first active arm."""
        bandit = self.bandit
        active = bandit.active_arms
        return bandit.guardrails.default_arm or (active[0] if active else bandit.arms[0])

    def describe(self) -> ExperimentOut:
        bandit = self.bandit
        arms = [
            ArmState(name=arm, active=bool(on), disabled_reason=bandit.disabled_reasons.get(arm))
            for arm, on in zip(bandit.arms, bandit.active, strict=True)
        ]
        return ExperimentOut(
            name=self.name,
            arms=arms,
            policy=bandit.policy.to_dict(),
            guardrails=self.config.guardrails,
            attribution_window_s=self.config.attribution_window_s,
            default_reward=self.config.default_reward,
            sticky=self.config.sticky,
            n_features=bandit.n_features,
            policy_version=bandit.version,
            created_at=self.created_at,
            supervisor=self.config.supervisor,
            default_arm=self.default_arm(),
            source=self.config.source,
            status=self.status,
        )


def build_bandit(spec: ExperimentCreate) -> Bandit:
    """The Bandit an experiment starts from; configuration errors name the field at fault."""
    policy, guardrails = checked_configuration(spec)
    if spec.model is not None:
        return _warm_started(spec, policy, guardrails)
    try:
        return Bandit(
            spec.arms, policy, seed=spec.seed, name=spec.name, guardrails=guardrails, n_features=spec.n_features
        )
    except BanditkitError as error:
        raise InvalidRequestError(str(error)) from None


def checked_configuration(spec: ExperimentCreate) -> tuple[Policy, Guardrails]:
    """The policy and guardrails ``spec`` asks for, once every rule of a served experiment holds.

    The policy and guardrails build, the default arm is an arm, a contextual policy has ``n_features``, the
    state fits the size limit however much it learns, and the default reward is within the policy's bounds;
    else :class:`~.errors.InvalidRequestError` naming the field.
    """
    try:
        policy = make_policy(spec.policy.model_dump())
    except BanditkitError as error:
        raise InvalidRequestError(str(error), "policy") from None
    except TypeError as error:  # a parameter of the wrong type reaching the constructor
        raise InvalidRequestError(f"policy params: {error}", "policy") from None
    try:
        guardrails = Guardrails(**(spec.guardrails or {}))
    except (BanditkitError, TypeError) as error:
        raise InvalidRequestError(f"guardrails: {error}", "guardrails") from None
    if guardrails.default_arm is not None and guardrails.default_arm not in spec.arms:
        raise InvalidRequestError(
            f"guardrails.default_arm {guardrails.default_arm!r} is not one of the arms {spec.arms}", "guardrails"
        )
    if policy.contextual and spec.n_features is None:
        raise InvalidRequestError(f"policy {policy.name!r} is contextual: n_features is required", "n_features")
    size = state_bytes(policy, len(spec.arms), spec.n_features)
    if size > MAX_STATE_BYTES:
        raise InvalidRequestError(
            f"n_features x arms = {spec.n_features} x {len(spec.arms)} is too large for policy {policy.name!r}: "
            f"its state would take {size / 1e6:.1f} MB, and the service serves at most {MAX_STATE_BYTES / 1e6:.1f} MB "
            f"per experiment (at most {LARGEST_LINEAR})",
            "n_features" if spec.n_features is not None else "arms",
        )
    growth = policy.growth_bytes(spec.n_features)
    if growth is None or size + growth > MAX_STATE_BYTES:
        _refuse_unbounded(policy, spec, size)
    check_source(spec, policy)
    if spec.default_reward is not None:
        low, high = policy.reward_bounds
        if not low <= spec.default_reward <= high:
            raise InvalidRequestError(
                f"default_reward must be in [{low}, {high}] for policy {policy.name!r}, got {spec.default_reward!r}"
                f"{policy.reward_advice()}",
                "default_reward",
            )
    return policy, guardrails


def _warm_started(spec: ExperimentCreate, policy: Policy, guardrails: Guardrails) -> Bandit:
    """The Bandit of ``spec.model`` (checked as any model from outside), renamed, at version 0 of this experiment.

    Arms, policy, features and guardrails the request gives must be the model's own.
    """
    assert spec.model is not None
    try:
        bandit = Bandit.from_dict({**spec.model, "name": spec.name, "version": 0})
    except BanditkitError as error:
        where = f"model.{error.field}" if error.field else "model"
        raise InvalidRequestError(f"{where}: {error}", "model") from None
    except (TypeError, ValueError, LookupError, AttributeError) as error:  # a wrong JSON type deep inside
        raise InvalidRequestError(f"model is not a Bandit's JSON: {error}", "model") from None
    for name, asked, own in (
        ("arms", spec.arms, bandit.arms),
        ("policy", policy, bandit.policy),
        ("n_features", spec.n_features, bandit.n_features),
        ("guardrails", guardrails, bandit.guardrails),
    ):
        if asked != own:
            raise InvalidRequestError(f"{name} must be the model's ({own!r}) or left out, got {asked!r}", name)
    return bandit


def _refuse_unbounded(policy: Policy, spec: ExperimentCreate, size: int) -> None:
    """Refuse a policy whose state would grow past the limit as it learns (an append buffer), naming the fix.

    The largest ``max_rows`` that fits is read off :meth:`~banditkit.policies.Policy.growth_bytes`, which
    is linear in ``max_rows`` once it reaches ``refit_every``.
    """
    params = policy.get_params()
    if params.get("incremental"):
        raise InvalidRequestError(
            f"policy {policy.name!r} with incremental=true keeps every row it learns from, so its state grows "
            f"without bound; the service serves at most {MAX_STATE_BYTES / 1e6:.1f} MB per experiment: use "
            "incremental=false with max_rows",
            "policy",
        )

    def growth(max_rows: int) -> int:
        return type(policy)(**{**params, "max_rows": max_rows}).growth_bytes(spec.n_features) or 0

    per_row = growth(params["refit_every"] + 1) - growth(params["refit_every"])
    largest = max(0, (MAX_STATE_BYTES - size) // per_row)
    given = "" if params.get("max_rows") is None else f" (max_rows={params['max_rows']} is too many)"
    raise InvalidRequestError(
        f"policy {policy.name!r} keeps the rows it learns from: set policy.params.max_rows{given}, at most "
        f"{largest} with n_features={spec.n_features}, so that its state stays under the "
        f"{MAX_STATE_BYTES / 1e6:.1f} MB the service serves per experiment",
        "policy",
    )


def state_bytes(policy: Policy, n_arms: int, n_features: int | None) -> int:
    """Bytes of ``policy``'s initial state for ``n_arms`` arms and ``n_features`` features, without making it.

    A contextual policy's state is per-arm arrays of at most ``n_features`` squared numbers plus shared
    arrays, so its size is linear in the arms and at most quadratic in the features: it is read off the states of
    one and two arms with one, two and three features (a 4096-feature state would take hundreds of MB just
    to be measured).
    """
    if n_features is None:
        return sum(array.nbytes for array in policy.init_state(n_arms).values())

    def size(arms: int, features: int) -> int:
        return sum(array.nbytes for array in policy.init_state(arms, n_features=features).values())

    per_arm = [size(2, d) - size(1, d) for d in (1, 2, 3)]
    shared = [size(1, d) - arm for d, arm in zip((1, 2, 3), per_arm, strict=True)]
    return n_arms * _quadratic(per_arm, n_features) + _quadratic(shared, n_features)


def _quadratic(values: list[int], x: int) -> int:
    """The quadratic through (1, values[0]), (2, values[1]), (3, values[2]) at ``x`` (exact in integers)."""
    first, second, third = values
    return (first * (x - 2) * (x - 3) - 2 * second * (x - 1) * (x - 3) + third * (x - 1) * (x - 2)) // 2


def restore(record: ExperimentRecord, refresh_s: float, executor: ThreadPoolExecutor | None) -> Experiment:
    """An experiment as it was stored; its random stream restarts from fresh entropy (or seed and version)."""
    config = creation_spec(record.config)
    seed = None if config.seed is None else [config.seed, record.version]
    bandit = join(record.model, record.state, record.version, np.random.default_rng(seed))
    lock = threading.Lock()
    cache = DistributionCache(lock, refresh_s, executor)
    experiment = Experiment(
        config, bandit, record.created_at, cache, lock, record.sweep_watermark, status=status_of(record.config)
    )
    experiment.candidate = candidates.load(record.model, record.state, record.version, bandit.rng, cache.sibling())
    experiment.lineage = dict(record.model.get("lineage") or {})
    return experiment

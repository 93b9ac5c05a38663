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
from ..policies import make_policy
from .errors import InvalidRequestError
from .model import join
from .schemas import ArmState, ExperimentCreate, ExperimentOut
from .serving import DistributionCache
from .stores import ExperimentRecord


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

    @property
    def name(self) -> str:
        return self.config.name

    async def model_written(self) -> None:
        """Return once no model change of this experiment is being written (at once, nearly always)."""
        if self.model_change.locked():
            async with self.model_change:
                pass

    def adopt(self, record: ExperimentRecord | None) -> None:
        """Serve ``record`` if its version is newer than the served Bandit's (another writer moved it)."""
        if record is None or record.version <= self.bandit.version:
            return
        bandit = join(record.model, record.state, record.version, self.bandit.rng)
        with self.lock:  # the distribution cache sees the new version (and any change of arms)
            if record.version > self.bandit.version:  # not overtaken while it was built
                self.bandit = bandit

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
        )


def build_bandit(spec: ExperimentCreate) -> Bandit:
    """The Bandit an experiment starts from; configuration errors name the field at fault."""
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
    if spec.default_reward is not None:
        low, high = policy.reward_bounds
        if not low <= spec.default_reward <= high:
            raise InvalidRequestError(
                f"default_reward must be in [{low}, {high}] for policy {policy.name!r}, got {spec.default_reward!r}"
                f"{policy.reward_advice()}",
                "default_reward",
            )
    try:
        return Bandit(
            spec.arms, policy, seed=spec.seed, name=spec.name, guardrails=guardrails, n_features=spec.n_features
        )
    except BanditkitError as error:
        raise InvalidRequestError(str(error)) from None


def restore(record: ExperimentRecord, refresh_s: float, executor: ThreadPoolExecutor | None) -> Experiment:
    """An experiment as it was stored; its random stream restarts from fresh entropy (or seed and version)."""
    config = ExperimentCreate.model_validate(record.config)
    seed = None if config.seed is None else [config.seed, record.version]
    bandit = join(record.model, record.state, record.version, np.random.default_rng(seed))
    lock = threading.Lock()
    return Experiment(
        config, bandit, record.created_at, DistributionCache(lock, refresh_s, executor), lock, record.sweep_watermark
    )

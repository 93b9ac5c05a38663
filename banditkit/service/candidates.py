"""Policy canaries: a candidate policy served to a fixed share of units, compared online, rolled back or promoted.

A candidate is a second Bandit of the experiment (same arms, its own policy and parameters) kept with the
experiment's model: its configuration under the stored model's ``candidate`` entry and its arrays under
:data:`~.stores.base.CANDIDATE_PREFIX` beside the policy's, so it is versioned and stored like the policy
by every store, and a reward learns in the same transaction as the rows it commits.

The split. A decision with a unit goes to the candidate when the unit's point under a salt of its own,
``unit_uniform(f"{experiment}{SPLIT_SALT}", unit)``, is below the candidate's share: the same unit always
gets the same policy, and as the arm a policy then draws uses the unit's point under the experiment's name,
the split is independent of the arm. A decision without a unit is split by a uniform from the
experiment's random stream. Either way the split depends on neither the context nor anything a policy
learned, so the logged propensity, the probability of the served arm under the policy that served the
decision (which the log's ``policy`` names), is exact for it given that policy.

The comparison. Per policy, the count and sum of the rewards of the decisions it served since the
candidate was registered; each mean gets the anytime-valid confidence sequence of
:func:`banditkit.health.confidence_sequence` (valid however often it is looked at) when the experiment's
rewards are bounded, else the fixed-n interval of ``/stats``. Once each policy has
``min_rewards`` rewards, the candidate is *credibly worse* when its upper bound is below the policy's
lower bound, and *trips its guardrail* when its upper bound is below the floor ``min_reward`` (by default
the experiment's ``guardrails.min_reward_rate``): either rolls it back.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..assign import unit_uniform
from ..bandit import Bandit
from ..guardrails import Guardrails
from ..health import ALPHA, confidence_sequence, fixed_n_interval
from ..policies import make_policy
from .errors import ConflictError, InvalidRequestError, NotFoundError
from .model import join, split
from .serving import DistributionCache
from .stores.base import CANARY_KEYS, CANDIDATE_PREFIX, ModelChange, State
from .stores.planner import Routes, candidate_arrays

#: Appended to the experiment's name to hash units for the split (the arms hash the name alone).
SPLIT_SALT = "#candidate"


@dataclass
class Candidate:
    """The served candidate of one experiment: its stored configuration, its Bandit and its distributions."""

    spec: dict[str, Any]
    bandit: Bandit
    cache: DistributionCache

    @property
    def id(self) -> str:
        return self.spec["id"]

    @property
    def share(self) -> float:
        return float(self.spec["share"])


def bandit_model(model: dict[str, Any]) -> dict[str, Any]:
    """The stored model without the canaries' entries: what :func:`~.model.join` builds the Bandit from."""
    return {key: value for key, value in model.items() if key not in CANARY_KEYS}


def routes(candidate: Candidate | None, lineage: dict[str, Any]) -> Routes:
    """Which policy learns the reward of a decision (:class:`~.stores.planner.Routes`), as served now."""
    return Routes(
        None if candidate is None else candidate.bandit.policy,
        None if candidate is None else candidate.id,
        lineage.get("promoted"),
        int(lineage.get("retired_before", 0)),
    )


def candidate_model(model: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The candidate's Bandit model: the experiment's (arms, which are active, abort), with the candidate's policy.

    Guardrails keep the default arm and the exploration cap; the reward floor and the ruin threshold act
    on the experiment's own policy only (the candidate has its comparison and floor instead).
    """
    guardrails = {**model["guardrails"], "min_reward_rate": None, "ruin_threshold": None}
    return {**bandit_model(model), "policy": spec["policy"], "guardrails": guardrails}


def load(
    model: dict[str, Any],
    arrays: State,
    version: int,
    rng: np.random.Generator,
    cache: DistributionCache,
) -> Candidate | None:
    """The candidate a stored model and its arrays hold, or None."""
    spec = model.get("candidate")
    if spec is None:
        return None
    own = candidate_arrays(arrays)
    bandit = join(candidate_model(model, spec), own, version, np.random.default_rng(rng.integers(2**63)))
    return Candidate(spec, bandit, cache)


def split_units(name: str, share: float, units: list[str | None], rng: np.random.Generator) -> list[bool]:
    """Per request, True when the candidate serves it: the unit's salted point, or a uniform, below ``share``.

    A loop in Python: one SHA-1 per unit dominates it, as in :func:`banditkit.assign.assign_rows`.
    """
    salted = name + SPLIT_SALT
    return [(rng.random() if unit is None else unit_uniform(salted, unit)) < share for unit in units]


# ---- model changes ------------------------------------------------------------------------------------
def carried(change: ModelChange, model: dict[str, Any], arrays: State) -> ModelChange:
    """``change`` keeping the canaries' entries and arrays of the stored ``model`` and ``arrays``.

    Every model change of the engine is built from the experiment's Bandit, which holds neither; a change
    that sets them itself (registering, promoting, removing a candidate) has them in its model already.
    """
    if any(key in change.model for key in CANARY_KEYS):
        return change
    kept = {key: model[key] for key in CANARY_KEYS if model.get(key) is not None}
    if not kept:
        return change
    state = dict(change.state)
    state.update((key, value) for key, value in arrays.items() if key.startswith(CANDIDATE_PREFIX))
    return ModelChange(
        {**change.model, **kept}, state, change.version, change.expected_version, change.event, change.config
    )


def check_policy(current: Bandit, spec: dict[str, Any]) -> None:
    """422 naming ``policy`` unless the candidate policy builds and fits the experiment's rewards and contexts."""
    try:
        policy = make_policy(spec)
    except Exception as error:  # a registry or constructor error: the policy named is not one we can build
        raise InvalidRequestError(f"policy: {error}", "policy") from None
    low, high = current.policy.reward_bounds
    own_low, own_high = policy.reward_bounds
    if not own_low <= low <= high <= own_high:
        raise InvalidRequestError(
            f"policy must take every reward the experiment takes, in [{low}, {high}]; it takes "
            f"[{own_low}, {own_high}] (widen its reward_range)",
            "policy",
        )
    if policy.contextual != current.policy.contextual:
        kind = "contextual" if current.policy.contextual else "not contextual"
        raise InvalidRequestError(f"policy must be {kind}, as the experiment's policy is", "policy")


def registration(
    current: Bandit, model: dict[str, Any], arrays: State, spec: dict[str, Any], now: float | None = None
) -> ModelChange:
    """The model change that registers a candidate (``spec``: policy, share, min_rewards, min_reward)."""
    if model.get("candidate") is not None:
        raise ConflictError(
            f"experiment {current.name!r} has candidate {model['candidate']['id']!r} already: promote or delete it "
            "first"
        )
    version = current.version + 1
    fresh = Bandit(current.arms, make_policy(spec["policy"]), n_features=current.n_features)
    _, fresh_arrays = split(fresh)
    pulls, sums, squares = _ledger(current)
    stored = {
        **spec,
        "id": f"candidate-{version}",
        "registered_at": time.time() if now is None else now,
        "registered_version": version,
        # The policy's rewards so far: the comparison counts those after this.
        "baseline": {"rewards": pulls, "sum": sums, "sq_sum": squares},
    }
    state = {key: value for key, value in arrays.items() if not key.startswith(CANDIDATE_PREFIX)}
    state.update((CANDIDATE_PREFIX + key, value) for key, value in fresh_arrays.items())
    event = {
        "kind": "candidate_registered",
        "candidate": stored["id"],
        "policy": spec["policy"],
        "share": spec["share"],
        "min_rewards": spec["min_rewards"],
        "min_reward": spec["min_reward"],
    }
    new_model = {**bandit_model(model), "candidate": stored, "lineage": model.get("lineage")}
    return ModelChange(new_model, state, version, current.version, event)


def removal(
    current: Bandit, model: dict[str, Any], arrays: State, kind: str, figures: dict[str, Any] | None = None
) -> ModelChange:
    """The model change that removes the candidate: ``kind`` is ``candidate_removed`` or ``candidate_rolled_back``."""
    spec = model.get("candidate")
    if spec is None:
        raise NotFoundError(f"experiment {current.name!r} has no candidate")
    state = {key: value for key, value in arrays.items() if not key.startswith(CANDIDATE_PREFIX)}
    event = {"kind": kind, "candidate": spec["id"], "policy": spec["policy"], **(figures or {})}
    new_model = {**bandit_model(model), "candidate": None, "lineage": model.get("lineage")}
    return ModelChange(new_model, state, current.version + 1, current.version, event)


def promotion(
    current: Bandit, model: dict[str, Any], arrays: State, figures: dict[str, Any], config: dict[str, Any]
) -> ModelChange:
    """The model change that makes the candidate the experiment's policy, with what it learned, at a new version.

    The experiment's arms, which are active and its guardrails stay; the policy state and reward ledger
    become the candidate's; ``config`` is the experiment's configuration with the candidate's policy. Rewards
    of decisions the candidate served are the policy's from now on, those of
    decisions the replaced policy served are recorded and not learned (:class:`~.stores.planner.Routes`).
    """
    spec = model.get("candidate")
    if spec is None:
        raise NotFoundError(f"experiment {current.name!r} has no candidate to promote")
    version = current.version + 1
    state = candidate_arrays(arrays)
    lineage = {"promoted": spec["id"], "retired_before": version}
    event = {
        "kind": "candidate_promoted",
        "candidate": spec["id"],
        "policy": spec["policy"],
        "replaced_policy": model["policy"],
        **figures,
    }
    new_model = {**bandit_model(model), "policy": spec["policy"], "candidate": None, "lineage": lineage}
    return ModelChange(new_model, state, version, current.version, event, config=config)


# ---- the comparison -------------------------------------------------------------------------------------
def _ledger(bandit: Bandit) -> tuple[float, float, float]:
    """Rewards ``bandit`` learned, their sum and their sum of squares."""
    return float(np.sum(bandit.pulls)), float(np.sum(bandit.reward_sums)), float(np.sum(bandit.reward_sq_sums))


def enough(current: Bandit, candidate: Candidate) -> bool:
    """True once both policies have ``min_rewards`` rewards since registration (before, the verdict is waiting)."""
    rewards = float(np.sum(current.pulls)) - candidate.spec["baseline"]["rewards"]
    return min(rewards, float(np.sum(candidate.bandit.pulls))) >= candidate.spec["min_rewards"]


def comparison(current: Bandit, candidate: Candidate, alpha: float = ALPHA) -> dict[str, Any]:
    """Both policies' rewards since registration, their intervals (anytime-valid for bounded rewards), the verdict.

    ``verdict``: ``"worse"`` (the candidate's upper bound is below the policy's lower bound), ``"guardrail"``
    (below the floor ``min_reward``), ``"waiting"`` (fewer than ``min_rewards`` rewards for either) or
    ``"running"``.
    """
    spec = candidate.spec
    baseline = spec["baseline"]
    pulls, sums, squares = _ledger(current)
    mine = (max(pulls - baseline["rewards"], 0.0), sums - baseline["sum"], squares - baseline.get("sq_sum", 0.0))
    bounds = (float(current.policy.reward_bounds[0]), float(current.policy.reward_bounds[1]))
    figures: dict[str, Any] = {
        "current": _figures(*mine, bounds, alpha),
        "candidate": _figures(*_ledger(candidate.bandit), bounds, alpha),
    }
    low, high = figures["current"]["low"], figures["candidate"]["high"]
    floor = spec.get("min_reward")
    n = min(figures["current"]["rewards"], figures["candidate"]["rewards"])
    if n < spec["min_rewards"] or low is None or high is None:
        verdict = "waiting"
    elif high < low:
        verdict = "worse"
    elif floor is not None and high < floor:
        verdict = "guardrail"
    else:
        verdict = "running"
    figures["verdict"] = verdict
    return figures


def _figures(n: float, total: float, squares: float, bounds: tuple[float, float], alpha: float) -> dict[str, Any]:
    """Rewards, mean and interval of one policy's rewards: ``interval`` says which.

    The anytime-valid confidence sequence for rewards in finite bounds (``"anytime"``); for unbounded rewards,
    which it does not cover, the fixed-n interval of ``/stats`` (``"fixed_n"``).
    """
    mean = total / n if n > 0 else None
    if all(math.isfinite(b) for b in bounds):
        low, high = confidence_sequence(np.array([n]), np.array([total]), bounds, alpha)
        kind = "anytime"
    else:
        _, low, high = fixed_n_interval(np.array([n]), np.array([total]), np.array([squares]), None)
        kind = "fixed_n"
    lows, highs = float(low[0]), float(high[0])
    return {
        "rewards": int(n),
        "mean": mean,
        "low": lows if math.isfinite(lows) else None,
        "high": highs if math.isfinite(highs) else None,
        "interval": kind,
    }


def describe(current: Bandit, candidate: Candidate) -> dict[str, Any]:
    """The candidate as ``GET …/candidates`` shows it: configuration, share and the comparison."""
    spec = candidate.spec
    return {
        "id": spec["id"],
        "policy": spec["policy"],
        "share": spec["share"],
        "min_rewards": spec["min_rewards"],
        "min_reward": spec.get("min_reward"),
        "registered_at": spec["registered_at"],
        "registered_version": spec["registered_version"],
        "comparison": comparison(current, candidate),
    }


def default_floor(guardrails: Guardrails) -> float | None:
    """The candidate's reward floor when its registration gives none: the experiment's ``min_reward_rate``."""
    return guardrails.min_reward_rate


def spec_of(body: dict[str, Any], guardrails: Guardrails) -> dict[str, Any]:
    """The stored configuration of a registration request's validated body."""
    floor = body.get("min_reward")
    return {
        "policy": make_policy(body["policy"]).to_dict(),
        "share": float(body["share"]),
        "min_rewards": int(body["min_rewards"]),
        "min_reward": default_floor(guardrails) if floor is None else float(floor),
    }

"""Request and response bodies of the HTTP API (pydantic, strict: "1.0" is not a number, NaN is refused)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

#: Decisions or rewards in one batch call at most.
MAX_BATCH = 1000
#: Arms of one experiment at most (at creation and after any change of arms).
MAX_ARMS = 1000
#: Experiments in one page of ``GET /v1/experiments`` at most.
MAX_PAGE = 1000
ArmName = Annotated[str, Field(min_length=1, max_length=128)]
ExperimentName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", examples=["hero-banner"])]


class Body(BaseModel):
    """Base of every request body: strict types, finite numbers, unknown fields refused."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")


class PolicySpec(Body):
    name: str = Field("thompson", description="registry name, e.g. thompson, ucb1, epsilon_greedy, linucb")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description='constructor arguments of the policy, e.g. {"reward_range": [0, 500]} for rewards from 0 to 500',
    )


#: The supervisor's alerts (``docs/supervisor.md``); the first three concern one arm.
AlertKind = Literal[
    "exploration_collapsed",
    "slo_breach",
    "reward_shift",
    "fallback_rate",
    "learner_lag",
    "store_latency",
    "source_stale",
]
ARM_ALERTS = ("exploration_collapsed", "slo_breach", "reward_shift")
Remediation = Literal["disable_arm", "pause_exploration", "alert_only"]


class SupervisorSpec(Body):
    """What the supervisor checks in one experiment, its thresholds, and what it does about each alert."""

    min_probability: float = Field(
        0.01, gt=0, lt=1, description="exploration_collapsed: an active arm served with less than this probability..."
    )
    min_pulls: int = Field(100, ge=1, le=10**9, description="...before it has this many rewards")
    min_reward: float | None = Field(
        None,
        description="slo_breach: an arm whose 95% confidence sequence (else interval) of the mean reward lies "
        "wholly below this (none: off)",
    )
    shift: float = Field(
        0.1,
        gt=0,
        le=0.5,
        description="reward_shift: the smallest change of an arm's reward rate to detect, "
        "as a fraction of the reward range",
    )
    shift_arl: float = Field(
        10_000.0,
        ge=100,
        le=1e12,
        description="reward_shift: an arm with a steady rate alarms within its first n "
        "rewards with probability at most n / shift_arl",
    )
    shift_warmup: int = Field(100, ge=10, le=10**7, description="reward_shift: rewards per arm before it can alarm")
    max_fallback_rate: float = Field(
        0.05, gt=0, le=1, description="fallback_rate: share of the decisions since the last check served as fallback"
    )
    min_decisions: int = Field(100, ge=1, le=10**9, description="fallback_rate: decisions since the last check needed")
    max_learner_lag_s: float = Field(
        60.0, gt=0, le=86_400 * 366, description="learner_lag: age of the oldest recorded reward not yet learned"
    )
    max_store_latency_s: float = Field(
        0.5, gt=0, le=3600, description="store_latency: seconds a read of the store may take"
    )
    remediation: dict[AlertKind, Remediation] = Field(
        default_factory=dict,
        description="per alert kind: disable_arm (arm alerts only), pause_exploration (serve the current best "
        "arm alone) or alert_only (the default)",
    )
    webhook_url: str | None = Field(
        None, max_length=2048, description="alerts are POSTed here as JSON (http or https), retried with backoff"
    )

    @field_validator("webhook_url")
    @classmethod
    def _http(cls, url: str | None) -> str | None:
        from urllib.parse import urlsplit

        if url is None:
            return url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook_url must be an http:// or https:// URL with a host, got {url!r}")
        return url

    @field_validator("remediation")
    @classmethod
    def _applicable(cls, remediation: dict[str, str]) -> dict[str, str]:
        for kind, action in remediation.items():
            if action == "disable_arm" and kind not in ARM_ALERTS:
                raise ValueError(f"disable_arm applies to the alerts of one arm ({', '.join(ARM_ALERTS)}), not {kind}")
        return remediation


class SourceSpec(Body):
    """A reward service the experiment's policy parameters come from (docs/service.md, "Reward sources")."""

    url: str = Field(
        max_length=2048,
        description='GET here answers {"arms": {arm: {"alpha": a, "beta": b}, ...}} (http or https)',
        examples=["http://rewards.internal:8080/parameters"],
    )
    refresh_s: float = Field(60.0, ge=0.05, le=86_400.0, description="seconds between two polls of the source")
    timeout_s: float = Field(5.0, gt=0, le=60.0, description="one attempt's limit, from connecting to the last byte")
    retries: int = Field(2, ge=0, le=10, description="attempts after a failed one (unreachable, timeout, 5xx) per poll")

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"source url must be an http:// or https:// URL with a host, got {url!r}")
        return url


class SourceStatusOut(BaseModel):
    """How polling an experiment's reward source goes, as this process sees it."""

    url: str
    last_success_at: float | None = Field(description="when the source last gave a valid answer (null: never)")
    age_s: float = Field(
        description="seconds since that answer (since polling started when there was none): how stale the "
        "served parameters may be"
    )
    failing: bool = Field(description="the last poll failed: the last good parameters are served")
    last_error: str | None = Field(None, description="what went wrong at the last failed poll")
    last_error_at: float | None = None
    consecutive_failures: int = 0
    policy_version: int | None = Field(
        None, description="the policy version that the source's parameters last became (null: none written yet)"
    )


class AlertRequest(Body):
    """An alert the supervisor raises or resolves, with the remediation configured for it."""

    kind: AlertKind
    arm: ArmName | None = Field(None, validate_default=True, description="the arm, for an alert of one arm")
    state: Literal["open", "resolved"] = "open"
    detail: str = Field("", max_length=1000)
    value: float | None = None
    threshold: float | None = None

    @field_validator("arm")
    @classmethod
    def _arm_alerts_name_an_arm(cls, arm: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if kind is not None and (kind in ARM_ALERTS) != (arm is not None):
            raise ValueError(f"an alert of kind {kind} {'needs an' if kind in ARM_ALERTS else 'takes no'} arm")
        return arm


class AlertOut(BaseModel):
    """What recording an alert did: the event written, or none when the alert was already in that state."""

    written: bool
    event: dict[str, Any] | None = None


#: What an experiment created from a trained model takes from it when the request leaves it out.
_FROM_MODEL = ("arms", "policy", "n_features", "guardrails")


class ExperimentCreate(Body):
    name: ExperimentName
    arms: list[ArmName] = Field(min_length=1, max_length=MAX_ARMS)
    policy: PolicySpec = Field(
        default_factory=PolicySpec,
        description='{"name", "params"}, or a registry name alone ("thompson") for its default parameters',
    )
    guardrails: dict[str, Any] | None = Field(None, description="keyword arguments of banditkit.Guardrails")
    attribution_window_s: float = Field(
        86_400.0, gt=0, le=366 * 86_400.0, description="rewards later than this after the decision get 410"
    )
    default_reward: float | None = Field(None, description="applied when the window closes with no reward")
    sticky: bool = Field(False, description="a unit keeps its first arm while that arm is active")
    n_features: int | None = Field(None, ge=1, le=4096, description="context length (contextual policies)")
    seed: int | None = Field(None, ge=0, description="seed of the service's random draws")
    supervisor: SupervisorSpec = Field(
        default_factory=SupervisorSpec, description="the supervisor's thresholds, remediations and webhook"
    )
    model: dict[str, Any] | None = Field(
        None,
        description=(
            "a trained model to start from: a Bandit's JSON (Bandit.to_json, or the `model` of GET "
            "/v1/experiments/{name}/model); arms, policy, n_features and guardrails then come from it when left "
            "out, and must equal its own when given"
        ),
    )
    source: SourceSpec | None = Field(
        None,
        description="take the policy's parameters from this reward service (thompson only): rewards are then "
        "logged, not learned",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_model(cls, data: Any) -> Any:
        """Arms, policy, features and guardrails left out of a request with a ``model`` are the model's."""
        if isinstance(data, dict) and isinstance(data.get("model"), dict):
            model = data["model"]
            return {**{key: model[key] for key in _FROM_MODEL if key in model and key not in data}, **data}
        return data

    @field_validator("arms")
    @classmethod
    def _unique(cls, arms: list[str]) -> list[str]:
        repeated = sorted({arm for arm in arms if arms.count(arm) > 1})
        if repeated:
            raise ValueError(f"arm names must be unique, {repeated[0]!r} appears more than once")
        return arms

    @field_validator("policy", mode="before")
    @classmethod
    def _name_alone(cls, policy: Any) -> Any:
        """A plain registry name, as the library and the experiments file take it."""
        return {"name": policy} if isinstance(policy, str) else policy


class ExperimentPatch(Body):
    """Changes to a served experiment; the fields left out stay as they are. At least one is needed."""

    guardrails: dict[str, Any] | None = Field(
        None, description="keyword arguments of banditkit.Guardrails, replacing the current ones ({} for none)"
    )
    attribution_window_s: float | None = Field(
        None, gt=0, le=366 * 86_400.0, description="from now on, for decisions still waiting for their reward too"
    )
    default_reward: float | None = Field(None, description="applied when a window closes with no reward; null: none")
    policy_params: dict[str, Any] | None = Field(
        None,
        description="policy hyperparameters merged into the current ones (same policy); the learned state is kept, "
        "so a parameter that changes its layout (standardize) is refused",
    )
    supervisor: SupervisorSpec | None = Field(None, description="the supervisor's thresholds, remediations, webhook")
    source: SourceSpec | None = Field(
        None, description="the reward service the policy parameters come from from now on; null: learn from rewards"
    )


class ArmsPatch(Body):
    """Arm changes, applied in the order add, enable, disable, remove."""

    add: list[ArmName] = Field(default_factory=list, max_length=MAX_ARMS)
    enable: list[ArmName] = Field(default_factory=list, max_length=MAX_ARMS)
    disable: list[ArmName] = Field(default_factory=list, max_length=MAX_ARMS)
    remove: list[ArmName] = Field(default_factory=list, max_length=MAX_ARMS)


class DecisionRequest(Body):
    unit: str | None = Field(
        None, min_length=1, max_length=256, description="a unit (user, session) gets a deterministic arm"
    )
    context: list[float] | None = Field(None, max_length=4096, description="feature vector (contextual)")
    allowed: list[ArmName] | None = Field(
        None, min_length=1, max_length=1000, description="this request may only get these arms"
    )
    request_id: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="the client's id of this request: a retry with the same id gets the first answer, not a "
        "second logged decision (409 if the body differs)",
    )


class DecisionBatchRequest(Body):
    requests: list[DecisionRequest] = Field(min_length=1, max_length=MAX_BATCH)


class DecisionResponse(BaseModel):
    decision_id: str
    arm: str
    propensity: float
    policy_version: int
    fallback: bool
    policy: str = Field(
        "current",
        description='which policy served it: "current" (the experiment\'s), or the id of its candidate (a canary); '
        "the propensity is that policy's probability of the arm",
    )


class CandidateCreate(Body):
    """A candidate policy served to a share of the units beside the experiment's policy (a canary)."""

    policy: PolicySpec
    share: float = Field(gt=0, lt=1, description="the share of units the candidate serves, in (0, 1)")
    min_rewards: int = Field(
        100, ge=1, le=10**9, description="rewards each policy needs before the candidate can be rolled back"
    )
    min_reward: float | None = Field(
        None,
        description="the candidate's guardrail: rolled back once its mean reward is credibly below this "
        "(default: the experiment's guardrails.min_reward_rate)",
    )


class PolicyFigures(BaseModel):
    rewards: int = Field(description="rewards of the decisions this policy served since the candidate was registered")
    mean: float | None
    low: float | None
    high: float | None
    interval: Literal["anytime", "fixed_n"] = Field(
        description="anytime: the confidence sequence (rewards in finite bounds); fixed_n: the normal interval"
    )


class CandidateComparison(BaseModel):
    current: PolicyFigures
    candidate: PolicyFigures
    verdict: Literal["waiting", "running", "worse", "guardrail"]


class CandidateOut(BaseModel):
    id: str
    policy: dict[str, Any]
    share: float
    min_rewards: int
    min_reward: float | None
    registered_at: float
    registered_version: int
    comparison: CandidateComparison


class DecisionBatchResponse(BaseModel):
    decisions: list[DecisionResponse]


class LoggedDecision(Body):
    """A decision a client made itself (from ``GET …/model``), shipped to the log."""

    decision_id: str = Field(
        pattern=r"^[0-9a-f]{32}$",
        description="32 lowercase hex digits, the first 12 the decision time in milliseconds since the epoch",
    )
    time: float = Field(description="seconds since the epoch, UTC: within the attribution window, not ahead")
    unit: str | None = Field(None, min_length=1, max_length=256)
    context: list[float] | None = Field(None, max_length=4096)
    arm: ArmName
    propensity: float = Field(gt=0, le=1, description="the probability the chosen arm had: in (0, 1]")
    probabilities: dict[ArmName, float] = Field(description="every arm's probability; ``arm``'s is ``propensity``")
    policy_version: int = Field(ge=0, description="the model version decided with: not newer than the served one")
    fallback: bool = Field(False, description="the default arm, served because the service could not be reached")


class DecisionLogRequest(Body):
    decisions: list[LoggedDecision] = Field(min_length=1, max_length=MAX_BATCH)


class DecisionLogResponse(BaseModel):
    logged: int = Field(description="decisions written by this call")
    duplicates: int = Field(description="decisions already in the log (a retry): not written again")


class RewardRequest(Body):
    decision_id: str = Field(min_length=1, max_length=64)
    value: float


class RewardBatchRequest(Body):
    rewards: list[RewardRequest] = Field(min_length=1, max_length=MAX_BATCH)


class RewardResponse(BaseModel):
    decision_id: str
    arm: str
    value: float
    applied: bool = Field(description="False when the arm had been removed before the reward came")


class RewardResult(BaseModel):
    """One line of a batch answer: ``status`` is the code the single call would have returned."""

    decision_id: str
    status: int
    arm: str | None = None
    value: float | None = None
    applied: bool | None = None
    detail: str | None = None


class RewardBatchResponse(BaseModel):
    results: list[RewardResult]


class ArmState(BaseModel):
    name: str
    active: bool
    disabled_reason: str | None = None


class ExperimentOut(BaseModel):
    name: str
    arms: list[ArmState]
    policy: dict[str, Any]
    guardrails: dict[str, Any] | None
    attribution_window_s: float
    default_reward: float | None
    sticky: bool
    n_features: int | None
    policy_version: int
    created_at: float
    supervisor: SupervisorSpec | None = None
    default_arm: str | None = Field(
        None, description="the arm served when anything fails (a client falls back to it while it cannot reach us)"
    )
    source: SourceSpec | None = Field(None, description="the reward service the policy parameters come from")
    status: Literal["active", "archived", "deleted"] = Field(
        "active",
        description="active: serves decisions; archived: serves none, rewards still join (unarchive to serve "
        "again); deleted: out of the catalogue, its log kept until purged",
    )


class ModelOut(BaseModel):
    experiment: str
    version: int = Field(description="the policy version the model is at (its ETag names it too)")
    model: dict[str, Any] = Field(description="the Bandit's JSON, as Bandit.to_dict writes it")


class ArmStatsOut(BaseModel):
    arm: str
    pulls: int
    mean: float | None
    low: float | None = Field(
        description="fixed-n 95% interval of the mean reward: valid for a sample size fixed in advance, looked at "
        "once; not under adaptive allocation or repeated looks (then read cs_low, cs_high)"
    )
    high: float | None = Field(description="upper end of the fixed-n 95% interval (see low)")
    cs_low: float | None = Field(
        None,
        description="95% confidence sequence of the mean reward: holds the true mean at every sample size at once, "
        "under adaptive allocation; null for rewards without a reward_range and for contextual policies",
    )
    cs_high: float | None = Field(None, description="upper end of the 95% confidence sequence (see cs_low)")
    p_best: float | None = Field(
        None, description="posterior probability that this arm has the largest mean reward (sums to 1 over arms)"
    )
    p_beats_default: float | None = Field(
        None,
        description="posterior probability that this arm's mean reward is above the default arm's; null for the "
        "default arm itself and without a default arm",
    )
    probability: float | None = Field(description="None for contextual policies: it depends on the context")
    active: bool
    disabled_reason: str | None = None


class StatsOut(BaseModel):
    experiment: str
    policy_version: int
    decisions: int
    rewards: int
    entropy: float | None = Field(description="entropy of the arm probabilities, in nats (None if contextual)")
    regret_estimate: float | None = Field(
        None,
        description="cumulative regret of the rewards so far, sum over arms of pulls x (best mean - arm mean), "
        "estimated with the observed means; null for contextual policies",
    )
    regret_low: float | None = Field(
        None, description="lower end of an anytime-valid 95% interval of that regret; null without a reward_range"
    )
    regret_high: float | None = Field(None, description="upper end of that interval (see regret_low)")
    learner_lag_s: float = Field(
        0.0,
        description="seconds since the oldest reward recorded but not yet learned was recorded (0 when the "
        "server learns rewards as it records them)",
    )
    arms: list[ArmStatsOut]
    alerts: list[str] = Field(description="guardrail actions and the supervisor's open alerts, one line each")
    source: SourceStatusOut | None = Field(None, description="polling of the reward source, if the experiment has one")


class ExperimentPage(BaseModel):
    """One page of experiments, in name order."""

    experiments: list[ExperimentOut]
    next_cursor: str | None = Field(
        description="pass it as `cursor` to get the next page; null on the last page",
        examples=["hero-banner"],
    )


class NoQuery(BaseModel):
    """No query parameter at all."""

    model_config = ConfigDict(extra="forbid")


class LogQuery(BaseModel):
    """Query parameters of the decision log export: its format, nothing else."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["csv", "parquet"] = "csv"


class PageQuery(BaseModel):
    """Query parameters of a paginated list (text in the URL, converted: ``?limit=50``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    limit: int = Field(100, ge=1, le=MAX_PAGE, description=f"experiments per page, 1 to {MAX_PAGE}")
    cursor: str | None = Field(
        None, min_length=1, max_length=64, description="the `next_cursor` of the previous page; none: the first page"
    )


class ExperimentListQuery(PageQuery):
    """Query parameters of the experiment list: a page (``limit``, ``cursor``) of one lifecycle ``status``."""

    status: Literal["active", "archived", "deleted"] = Field(
        "active", description="which experiments to list: active (the default), archived, or deleted (log kept)"
    )


class PurgeOut(BaseModel):
    """What a purge removed of a deleted experiment."""

    experiment: str
    decisions: int = Field(description="decisions removed from the store's log")
    rewards: int = Field(description="rewards removed with them")
    archived_files: int = Field(description="Parquet files removed from the learner's archive (archive_dir)")


class SnapshotOut(BaseModel):
    snapshot_id: int
    policy_version: int
    created_at: float


class RollbackRequest(Body):
    snapshot_id: int = Field(ge=1, le=2**63 - 1)


class ErrorOut(BaseModel):
    """Every error answer but 422: what is wrong, in one message."""

    detail: str


class FieldError(BaseModel):
    """One invalid field: where (``["body", "context"]``, ``["query", "limit"]``), what, and its kind."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    """A 422 answer: every field at fault."""

    detail: list[FieldError]

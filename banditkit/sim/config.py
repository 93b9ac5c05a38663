"""Experiment configs in TOML: the environment, the policies and the run, validated with the key named.

title = "Two arms"                       # optional
[run]
horizon = 10000
replications = 500
seed = 0
[environment]
kind = "bernoulli"                       # gaussian, linear_contextual, logistic_contextual,
means = [0.1, 0.2]                       # non_stationary, adversarial
[environment.delay]                      # optional: one of delay, mean_delay, batch
batch = 100
[policies.TS]
name = "thompson"
[policies.UCB1]
name = "ucb1"
params = {}
"""

from __future__ import annotations

import inspect
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._validation import check_int
from ..errors import BanditkitError, InvalidParameterError
from ..policies import Policy, make_policy
from .changing import Adversarial, NonStationary
from .contextual import LinearContextual, LogisticContextual, random_coefficients
from .delayed import Delayed
from .environments import Bernoulli, Environment, Gaussian
from .results import SimulationResult
from .runner import check_compatible, run

ENVIRONMENTS: dict[str, type[Environment]] = {
    "bernoulli": Bernoulli,
    "gaussian": Gaussian,
    "linear_contextual": LinearContextual,
    "logistic_contextual": LogisticContextual,
    "non_stationary": NonStationary,
    "adversarial": Adversarial,
}
#: Keys that build random coefficients for the contextual environments instead of listing them, each with
#: the parameter of :func:`random_coefficients` it sets.
RANDOM_COEFFICIENT_KEYS = {
    "n_arms": "n_arms",
    "n_features": "n_features",
    "coefficients_seed": "seed",
    "coefficients_scale": "scale",
}


class ConfigError(InvalidParameterError):
    """A config value is missing, unknown or invalid; ``key`` is its dotted path, e.g. ``environment.means``."""

    def __init__(self, key: str, message: str):
        super().__init__(f"config key {key!r}: {message}", field=key)
        self.key = key


@dataclass(frozen=True)
class Experiment:
    """A validated config, ready to :meth:`run`."""

    policies: dict[str, Policy]
    environment: Environment
    horizon: int
    replications: int
    seed: int | None
    title: str = ""
    source: dict[str, Any] = field(default_factory=dict, repr=False)

    def run(self, *, workers: int | None = None, progress=None) -> SimulationResult:
        return run(
            self.policies,
            self.environment,
            self.horizon,
            self.replications,
            self.seed,
            workers=workers,
            progress=progress,
        )


def _key(section: str, error: BanditkitError, names: dict[str, str] | None = None) -> str:
    """The config key of the value ``error`` is about: ``section.field``, or ``section`` if no field is known.

    ``names`` maps the fields of the code that raised to config keys where they differ.
    """
    if error.field is None:
        return section
    return f"{section}.{(names or {}).get(error.field, error.field)}"


def _reject_unknown(section: str, table: dict[str, Any], allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{section}.{key}" if section else key, f"unknown key; expected one of {sorted(allowed)}")


def _section(data: dict[str, Any], key: str, required: bool = True) -> dict[str, Any]:
    value = data.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a table ([{key}] section), got {value!r}")
    return value


def _environment(table: dict[str, Any]) -> Environment:
    table = dict(table)
    kind = table.pop("kind", None)
    if kind not in ENVIRONMENTS:
        raise ConfigError("environment.kind", f"must be one of {sorted(ENVIRONMENTS)}, got {kind!r}")
    delay = table.pop("delay", None)
    cls = ENVIRONMENTS[kind]
    if issubclass(cls, (LinearContextual, LogisticContextual)) and "coefficients" not in table:
        generator = {parameter: table.pop(key) for key, parameter in RANDOM_COEFFICIENT_KEYS.items() if key in table}
        try:
            table["coefficients"] = random_coefficients(**{"n_arms": None, "n_features": None, **generator})
        except BanditkitError as error:
            keys = {parameter: key for key, parameter in RANDOM_COEFFICIENT_KEYS.items()}
            raise ConfigError(_key("environment", error, keys), str(error)) from error
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    _reject_unknown("environment", table, accepted | {"kind", "delay"})
    try:
        environment = cls(**table)
    except BanditkitError as error:  # before TypeError: a bad type is an InvalidTypeError, which names its field
        raise ConfigError(_key("environment", error), str(error)) from error
    except TypeError as error:  # a required key missing
        raise ConfigError("environment", f"{kind} needs {sorted(accepted)}: {error}") from error
    if delay is None:
        return environment
    if not isinstance(delay, dict):
        raise ConfigError("environment.delay", f"must be a table with delay, mean_delay or batch, got {delay!r}")
    _reject_unknown("environment.delay", delay, {"delay", "mean_delay", "batch"})
    try:
        return Delayed(environment, **delay)
    except BanditkitError as error:
        raise ConfigError(_key("environment.delay", error), str(error)) from error


def _policies(table: dict[str, Any]) -> dict[str, Policy]:
    if not table:
        raise ConfigError("policies", "needs at least one [policies.LABEL] table with a name")
    policies = {}
    for label, spec in table.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"policies.{label}", f"must be a table with name and params, got {spec!r}")
        _reject_unknown(f"policies.{label}", spec, {"name", "params"})
        # The name alone first, so that an error is known to be about the name or about the params.
        try:
            make_policy({"name": spec.get("name")})
        except BanditkitError as error:
            raise ConfigError(f"policies.{label}.name", str(error)) from error
        params = spec.get("params", {})
        try:
            policies[label] = make_policy({"name": spec["name"], "params": params})
        except BanditkitError as error:
            given = params if isinstance(params, dict) else {}
            key = f"policies.{label}.params"
            raise ConfigError(f"{key}.{error.field}" if error.field in given else key, str(error)) from error
    return policies


def parse_config(data: dict[str, Any]) -> Experiment:
    """An :class:`Experiment` from a parsed TOML document (a dict)."""
    _reject_unknown("", data, {"title", "run", "environment", "policies"})
    run_table = _section(data, "run")
    _reject_unknown("run", run_table, {"horizon", "replications", "seed"})
    settings: dict[str, Any] = {}  # horizon, replications and seed, as Experiment takes them
    for key, default in (("horizon", None), ("replications", 100), ("seed", 0)):
        value = run_table.get(key, default)
        if key == "seed" and value is None:
            settings[key] = None
            continue
        low = 0 if key == "seed" else 1
        try:
            settings[key] = check_int(key, value, low=low)
        except BanditkitError as error:
            raise ConfigError(f"run.{key}", f"{key} must be an integer >= {low}, got {value!r}") from error
    environment = _environment(_section(data, "environment"))
    try:
        environment.check_horizon(settings["horizon"])
    except BanditkitError as error:
        raise ConfigError("run.horizon", str(error)) from error  # the horizon is the only argument
    policies = _policies(_section(data, "policies"))
    for label, policy in policies.items():
        try:
            check_compatible(label, policy, environment)
        except BanditkitError as error:
            raise ConfigError(f"policies.{label}", str(error)) from error
    return Experiment(
        policies=policies,
        environment=environment,
        title=str(data.get("title", "")),
        source=data,
        **settings,
    )


def load_config(path: str | Path) -> Experiment:
    """Read and validate a TOML experiment config."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError as error:
        raise ConfigError("file", f"no config file at {str(path)!r}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError("file", f"{path} is not valid TOML: {error}") from error
    return parse_config(data)

"""TOML configs: every example parses, bad configs name the key at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from banditkit.sim import Bernoulli, Delayed
from banditkit.sim.config import ConfigError, load_config, parse_config

EXAMPLES = sorted(Path(__file__).resolve().parents[2].joinpath("examples").glob("*.toml"))


def base() -> dict:
    return {
        "run": {"horizon": 100, "replications": 5, "seed": 1},
        "environment": {"kind": "bernoulli", "means": [0.2, 0.4]},
        "policies": {"TS": {"name": "thompson"}},
    }


def test_a_valid_config_builds_the_experiment():
    data = base()
    data["environment"]["delay"] = {"batch": 10}
    data["policies"]["UCB"] = {"name": "ucb1"}
    experiment = parse_config(data)
    assert isinstance(experiment.environment, Delayed) and experiment.environment.batch == 10
    assert isinstance(experiment.environment.environment, Bernoulli)
    assert list(experiment.policies) == ["TS", "UCB"] and experiment.horizon == 100
    result = experiment.run()
    assert result.policies == ["TS", "UCB"] and result.replications == 5


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_config_is_valid(path):
    experiment = load_config(path)
    assert experiment.horizon >= 1 and experiment.policies


def change(path: str, value):
    data = base()
    *parents, last = path.split(".")
    table = data
    for key in parents:
        table = table.setdefault(key, {})
    if value is DELETE:
        del table[last]
    else:
        table[last] = value
    return data


DELETE = object()
BAD = [
    ("policies.TS.name", "thomson", "policies.TS.name", "policy name must be one of"),
    ("policies.TS.params", {"alpha": 2.0}, "policies.TS.params", "has no parameter 'alpha'"),
    ("policies.TS.params", {"prior_alpha": -1.0}, "policies.TS.params.prior_alpha", "prior_alpha must be in"),
    ("policies.TS.params", [1.0], "policies.TS.params", "params must be a dict"),
    ("policies.TS.name", 3, "policies.TS.name", "policy name must be one of"),
    ("policies.TS.weight", 3, "policies.TS.weight", "unknown key"),
    ("policies", {}, "policies", "at least one"),
    ("run.horizon", -5, "run.horizon", "horizon must be an integer >= 1, got -5"),
    ("run.horizon", DELETE, "run.horizon", "horizon must be an integer >= 1, got None"),
    ("run.replications", "many", "run.replications", "replications must be an integer >= 1, got 'many'"),
    ("run.workers", 2, "run.workers", "unknown key"),
    ("environment.means", [0.2, 1.4], "environment.means", "got 1.4 at position 1"),
    ("environment.kind", "poisson", "environment.kind", "must be one of"),
    ("environment.sigma", 1.0, "environment.sigma", "unknown key"),
    ("environment.delay", {"delay": 1, "batch": 2}, "environment.delay", "exactly one of"),
    ("environment.delay", {"lag": 1}, "environment.delay.lag", "unknown key"),
    ("environment.delay", {"batch": 0}, "environment.delay.batch", "batch must be in [1, None], got 0"),
    ("environment.delay", {"mean_delay": "long"}, "environment.delay.mean_delay", "mean_delay must be a real"),
    ("environment", DELETE, "environment", "must be a table"),
    ("extra", 1, "extra", "unknown key"),
]


@pytest.mark.parametrize("path, value, key, message", BAD, ids=[f"{b[0]}={b[1]!r}" for b in BAD])
def test_bad_configs_name_the_key(path, value, key, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(change(path, value))
    assert caught.value.key == key
    assert f"config key {key!r}" in str(caught.value) and message in str(caught.value)


ENVIRONMENTS = [
    ({"kind": "gaussian", "means": [0.0, 1.0], "sigma": [1.0, 1.0, 1.0]}, "environment.sigma", "one value per arm"),
    ({"kind": "gaussian", "means": [0.0, 1.0], "sigma": -1.0}, "environment.sigma", "sigma must be in"),
    ({"kind": "non_stationary", "means": [[0.1], [0.2]], "times": [0, 0]}, "environment.times", "increase strictly"),
    (
        {"kind": "non_stationary", "means": [[0.1]], "times": [0], "drift": "yes"},
        "environment.drift",
        "drift must be true or false",
    ),
    (
        {"kind": "linear_contextual", "n_arms": 2, "n_features": 2, "coefficients_scale": 0.0},
        "environment.coefficients_scale",
        "scale must be in",
    ),
    (
        {"kind": "linear_contextual", "n_arms": 2, "n_features": 2, "coefficients_seed": -1},
        "environment.coefficients_seed",
        "seed must be in",
    ),
    ({"kind": "linear_contextual", "n_features": 2}, "environment.n_arms", "n_arms must be an integer"),
    ({"kind": "adversarial", "table": [[1.0, 0.0]], "repeat": 0}, "environment.repeat", "repeat must be in"),
]


@pytest.mark.parametrize("environment, key, message", ENVIRONMENTS, ids=[e[1] for e in ENVIRONMENTS])
def test_bad_environments_name_the_key(environment, key, message):
    data = base()
    data["environment"] = environment
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert caught.value.key == key and caught.value.field == key and message in str(caught.value)


def test_adversarial_horizon_must_match_the_table():
    data = base()
    data["environment"] = {"kind": "adversarial", "table": [[1.0, 0.0], [0.0, 1.0]], "repeat": 10}
    with pytest.raises(ConfigError, match=r"run\.horizon.*table's length \(20 steps\), got 100"):
        parse_config(data)


def test_contextual_coefficients_can_be_generated():
    data = base()
    data["environment"] = {"kind": "logistic_contextual", "n_arms": 4, "n_features": 3, "coefficients_seed": 5}
    assert parse_config(data).environment.coefficients.shape == (4, 3)
    data["environment"]["n_features"] = 0
    with pytest.raises(ConfigError, match=r"'environment\.n_features'"):
        parse_config(data)


def test_unreadable_files_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="no config file"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[run\nhorizon = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)

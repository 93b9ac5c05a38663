"""Settings from the environment, and experiments declared in a TOML file."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from banditkit.errors import InvalidParameterError
from banditkit.service import Settings
from banditkit.service.declared import read_experiments
from banditkit.service.runner import running, settings_env

TOML = """
[[experiments]]
name = "hero-banner"
arms = ["red", "green", "blue"]
attribution_window_s = 3600
default_reward = 0.0
policy = { name = "ucb1", params = {} }
guardrails = { default_arm = "red", max_exploration = 0.3 }

[[experiments]]
name = "checkout"
arms = ["one-page", "two-page"]
sticky = true
"""


def test_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("BANDITKIT_STORE", "memory://")
    monkeypatch.setenv("BANDITKIT_CLIENT_TOKENS", " web-1, mobile-2 ,")
    monkeypatch.setenv("BANDITKIT_ADMIN_TOKEN", "root")
    monkeypatch.setenv("BANDITKIT_HOST", "0.0.0.0")
    settings = Settings()
    assert [t.get_secret_value() for t in settings.client_tokens] == ["web-1", "mobile-2"]
    assert settings.auth_enabled and settings.safe_host() == "0.0.0.0"
    assert "root" not in repr(settings)  # secrets stay out of logs
    assert Settings(**{**settings.model_dump(), "admin_token": None, "client_tokens": ()}).safe_host() == "127.0.0.1"


def test_settings_round_trip_through_the_environment(monkeypatch):
    original = Settings(
        store="memory://",
        admin_token="a",
        client_tokens="b,c",
        commit_interval_ms=0.5,
        header_timeout_s=2.5,
        max_connections=500,
    )
    for key, value in settings_env(original).items():
        monkeypatch.setenv(key, value)
    again = Settings()
    assert again.model_dump(exclude={"admin_token", "client_tokens"}) == original.model_dump(
        exclude={"admin_token", "client_tokens"}
    )
    assert again.admin_token.get_secret_value() == "a"


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("store", "postgres://localhost:5432/0", "sqlite:///PATH, memory://, redis://HOST:PORT/DB"),
        (
            "store",
            "redis://localhost:6379/zero",
            "store URL 'redis://localhost:6379/zero': the path must be a database",
        ),
        ("port", 70000, "less than or equal to 65535"),
        ("sqlite_synchronous", "OFF", "'NORMAL' or 'FULL'"),
        ("synchronous", "FULL", "Extra inputs are not permitted"),
        ("admin_token", "two words", "visible ASCII characters without whitespace"),
        ("client_tokens", "good,caf\u00e9", "visible ASCII characters without whitespace"),
        ("header_timeout_s", 0, "greater than 0"),
        ("body_timeout_s", -1.0, "greater than 0"),
        ("keep_alive_timeout_s", "never", "a valid number"),
        ("max_connections", 0, "greater than 0"),
    ],
)
def test_bad_settings_name_the_field(field, value, message):
    with pytest.raises(ValidationError, match=field) as error:
        Settings(**{field: value})
    assert message in str(error.value)


def test_declared_experiments_are_created_at_start_up(tmp_path):
    declared = tmp_path / "experiments.toml"
    declared.write_text(TOML)
    settings = Settings(
        store=f"sqlite:///{tmp_path / 'declared.db'}", port=0, experiments_file=declared, tune_interpreter=False
    )
    with running(settings) as base_url, httpx.Client(base_url=base_url) as client:
        hero = client.get("/v1/experiments/hero-banner").json()
        assert hero["policy"]["name"] == "ucb1" and hero["default_reward"] == 0.0
        assert hero["guardrails"] == {"default_arm": "red", "max_exploration": 0.3}
        assert client.get("/v1/experiments/checkout").json()["sticky"] is True
        client.patch("/v1/experiments/checkout/arms", json={"add": ["express"]}).raise_for_status()
    with running(settings) as base_url, httpx.Client(base_url=base_url) as client:  # the store wins
        arms = [arm["name"] for arm in client.get("/v1/experiments/checkout").json()["arms"]]
        assert arms == ["one-page", "two-page", "express"]


def test_a_bad_declaration_names_the_file_entry_and_field(tmp_path):
    declared = tmp_path / "bad.toml"
    declared.write_text(TOML.replace("sticky = true", 'sticky = "yes"'))
    with pytest.raises(InvalidParameterError, match=r"entry 1 \('checkout'\), field 'sticky'"):
        read_experiments(declared)
    declared.write_text("[[experiments]\nname =")
    with pytest.raises(InvalidParameterError, match=r"bad\.toml"):
        read_experiments(declared)
    declared.write_text(TOML.replace('name = "ucb1"', 'name = "thompsn"'))
    with pytest.raises(InvalidParameterError, match=r"entry 0 \('hero-banner'\), field 'policy': .*'thompsn'"):
        read_experiments(declared)  # the policy is built, as creating the experiment will build it
    declared.write_text(TOML.replace('default_arm = "red"', 'default_arm = "purple"'))
    with pytest.raises(InvalidParameterError, match=r"entry 0 \('hero-banner'\), field 'guardrails'"):
        read_experiments(declared)


@pytest.mark.parametrize(
    "variable, message",
    [
        ("BANDITKIT_STROE", "unknown environment variable BANDITKIT_STROE: did you mean BANDITKIT_STORE?"),
        ("BANDITKIT_ADMIN_TOKN", "did you mean BANDITKIT_ADMIN_TOKEN?"),
        ("banditkit_client_token", "did you mean BANDITKIT_CLIENT_TOKENS?"),
        ("BANDITKIT_XYZZY", "the variables read are BANDITKIT_ADMIN_TOKEN, BANDITKIT_ARCHIVE_DIR"),
    ],
)
def test_an_unknown_banditkit_variable_is_refused_with_the_closest_name(monkeypatch, variable, message):
    monkeypatch.setenv(variable, "memory://")
    with pytest.raises(ValidationError) as error:
        Settings()
    assert message in str(error.value)


def test_the_library_variables_are_not_settings_but_are_allowed(monkeypatch):
    monkeypatch.setenv("BANDITKIT_DISABLE_JIT", "1")
    monkeypatch.setenv("BANDITKIT_DATA_DIR", "/tmp")
    assert Settings(store="memory://").store == "memory://"

"""Service settings, read from the environment (``BANDITKIT_*``) by pydantic-settings."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .stores import STORE_URLS
from .stores.redis_keys import is_redis_url, parse_url

DEFAULT_STORE = "sqlite:///./banditkit.db"
#: ``BANDITKIT_*`` variables read outside these settings: the switch of the compiled kernels and the folder
#: of the Open Bandit Dataset sample. Any other ``BANDITKIT_*`` variable is a typo and is refused.
OTHER_VARIABLES = frozenset({"BANDITKIT_DISABLE_JIT", "BANDITKIT_DATA_DIR"})


class Settings(BaseSettings):
    """Everything the decision service reads at start-up.

    Tokens: ``BANDITKIT_ADMIN_TOKEN`` (create experiments, change arms, snapshots,
    rollback) and ``BANDITKIT_CLIENT_TOKENS`` (comma-separated; decisions, rewards,
    reads). With no token at all the service is open and binds 127.0.0.1 only.

    >>> Settings(store="memory://").auth_enabled
    False
    """

    model_config = SettingsConfigDict(env_prefix="BANDITKIT_", extra="forbid")

    store: str = Field(
        DEFAULT_STORE,
        description=(
            "sqlite:///path/to/file.db, memory://, redis://HOST:PORT/DB?prefix=NAME or redis+cluster://HOST:PORT"
        ),
    )
    host: str = Field("127.0.0.1", description="address to listen on; without any token the host is 127.0.0.1")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on")
    admin_token: SecretStr | None = Field(
        None,
        description=(
            "bearer token for creating experiments, changing arms, snapshots and rollback "
            "(visible ASCII, no whitespace)"
        ),
    )
    client_tokens: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (), description="comma-separated bearer tokens for decisions, rewards and reads"
    )
    experiments_file: Path | None = Field(None, description="TOML file of experiments created at start-up")
    max_body_bytes: int = Field(2_000_000, gt=0, description="larger request bodies get 413")
    commit_interval_ms: float = Field(
        0.0,
        ge=0.0,
        le=1000.0,
        description=(
            "group commit: extra time the writer waits to gather writes (0: whatever queued during the last commit)"
        ),
    )
    sqlite_synchronous: Literal["NORMAL", "FULL"] = Field(
        "FULL", description="FULL survives power loss; NORMAL survives a process crash only"
    )
    sweep_interval_s: float = Field(1.0, gt=0.0, description="how often default rewards are applied")
    check_interval_s: float = Field(
        300.0,
        gt=0.0,
        le=86_400.0,
        description="how often the supervisor checks every experiment and raises its alerts (docs/supervisor.md)",
    )
    checkpoint_s: float = Field(
        10.0,
        gt=0.0,
        le=3600.0,
        description=(
            "SQLite: an experiment's policy state is written at most this many seconds after it changed (the "
            "rewards logged since are learned again on opening), and sooner once they hold as many bytes as the state"
        ),
    )
    tune_interpreter: bool = Field(
        True,
        description=(
            "at start-up, set a 0.2 ms GIL switch interval, freeze start-up objects out of the garbage collector and "
            "run BLAS with one thread per call (process-wide; turn off when the app is embedded in another program)"
        ),
    )
    model_poll_s: float = Field(
        0.05,
        gt=0.0,
        le=60.0,
        description=(
            "shared store (Redis): how often each worker checks the stored model versions and reloads moved ones"
        ),
    )
    wait_for_store: bool = Field(
        False,
        description=(
            "shared store (Redis): at start-up, retry a store that does not answer each second until it does, "
            "instead of failing; always on in the workers of `serve --workers N` (the command checks the store "
            "first), so that a worker restarted during an outage waits rather than stopping the server"
        ),
    )
    spool_dir: Path = Field(
        Path("banditkit-spool"),
        description=(
            "shared store (Redis): folder of the decisions served while the store was down, shipped when it is back"
        ),
    )
    archive_dir: Path | None = Field(
        None,
        description=(
            "shared store (Redis): the folder `banditkit learn --archive` writes; the log export reads the "
            "experiment's archived decisions from it before those still in Redis"
        ),
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0.0,
        le=3600.0,
        description=(
            "a connection is closed when a request's head (request line and headers) has not fully arrived this "
            "many seconds after the connection opened or the head's first byte"
        ),
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0.0,
        le=3600.0,
        description=(
            "a connection is closed when a request's body has not fully arrived this many seconds after its head"
        ),
    )
    keep_alive_timeout_s: float = Field(
        5.0, gt=0.0, le=3600.0, description="an idle connection is closed this many seconds after its last answer"
    )
    max_connections: int | None = Field(
        None,
        gt=0,
        description=(
            "open connections per server process at most (default: 90% of the descriptor limit); at the cap the "
            "longest-waiting idle connections are closed to make room"
        ),
    )
    metrics: bool = Field(
        True, description="serve Prometheus metrics at GET /metrics, counted as requests are answered"
    )
    metrics_max_arms: int = Field(
        20,
        ge=1,
        le=1000,
        description=(
            "arms with a label of their own in the metrics, per experiment (the first by name); the others are "
            'summed under arm="__other__"'
        ),
    )
    metrics_dir: Path | None = Field(
        None,
        description=(
            "folder where the workers of `serve --workers N` keep their counts for each other's scrapes (default: "
            "a temporary folder made by the command; emptied of worker files when it starts)"
        ),
    )
    refresh_s: float = Field(
        0.1,
        ge=0.0,
        le=60.0,
        description=(
            "how long a cached action distribution may be served while the next one is computed in the background, "
            "at most two such computations per period (0: never)"
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_variables(cls, data: Any) -> Any:
        """Refuse a ``BANDITKIT_*`` environment variable that names no setting, with the closest valid name.

        A misspelt setting would otherwise leave its default in force without a word.
        """
        prefix = "BANDITKIT_"
        known = sorted({f"{prefix}{name.upper()}" for name in cls.model_fields} | OTHER_VARIABLES)
        for variable in sorted(os.environ):
            if variable.upper().startswith(prefix) and variable.upper() not in known:
                names = [name.removeprefix(prefix) for name in known]  # compared without the common prefix
                close = difflib.get_close_matches(variable.upper().removeprefix(prefix), names, n=1, cutoff=0.6)
                hint = f"did you mean {prefix}{close[0]}?" if close else f"the variables read are {', '.join(known)}"
                raise ValueError(f"unknown environment variable {variable}: {hint}")
        return data

    @field_validator("client_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value):
        if isinstance(value, str):
            return tuple(token.strip() for token in value.split(",") if token.strip())
        return value

    @field_validator("admin_token", "experiments_file", "archive_dir", "metrics_dir", "max_connections", mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        return None if value == "" else value

    @field_validator("admin_token", "client_tokens")
    @classmethod
    def _sendable(cls, value, info):
        """A token is visible ASCII with no whitespace.

        The only tokens an ``Authorization: Bearer`` header
        carries as the service reads it (see :func:`.deps.authorize`), so another could never be sent.
        """
        tokens = () if value is None else value if isinstance(value, tuple) else (value,)
        for token in tokens:
            if not all("\x21" <= character <= "\x7e" for character in token.get_secret_value()):
                raise ValueError(f"{info.field_name}: a token must be visible ASCII characters without whitespace")
        return value

    @field_validator("store")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if is_redis_url(value):
            parse_url(value)  # a malformed Redis URL fails here, naming the part at fault
        elif not (value.startswith("sqlite:///") or value == "memory://"):
            hint = f" (a SQLite file is sqlite:///{value})" if "://" not in value else ""
            raise ValueError(f"store must be {STORE_URLS}, got {value!r}{hint}")
        return value

    @property
    def auth_enabled(self) -> bool:
        """True when at least one token is configured."""
        return self.admin_token is not None or bool(self.client_tokens)

    def safe_host(self) -> str:
        """The host to bind: loopback only when no token protects the service."""
        return self.host if self.auth_enabled else "127.0.0.1"

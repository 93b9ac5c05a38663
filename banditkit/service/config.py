"""Service settings, read from the environment (``BANDITKIT_*``) by pydantic-settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .stores import STORE_URLS
from .stores.redis_keys import is_redis_url, parse_url

DEFAULT_STORE = "sqlite:///./banditkit.db"


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
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    admin_token: SecretStr | None = None
    client_tokens: Annotated[tuple[SecretStr, ...], NoDecode] = ()
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
    refresh_s: float = Field(
        0.1,
        ge=0.0,
        le=60.0,
        description=(
            "how long a cached action distribution may be served while the next one is computed in the background, "
            "at most two such computations per period (0: never)"
        ),
    )

    @field_validator("client_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value):
        if isinstance(value, str):
            return tuple(token.strip() for token in value.split(",") if token.strip())
        return value

    @field_validator("admin_token", "experiments_file", "archive_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        return None if value == "" else value

    @field_validator("store")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if is_redis_url(value):
            parse_url(value)  # a malformed Redis URL fails here, naming the part at fault
        elif not (value.startswith("sqlite:///") or value == "memory://"):
            raise ValueError(f"store must be {STORE_URLS}, got {value!r}")
        return value

    @property
    def auth_enabled(self) -> bool:
        """True when at least one token is configured."""
        return self.admin_token is not None or bool(self.client_tokens)

    def safe_host(self) -> str:
        """The host to bind: loopback only when no token protects the service."""
        return self.host if self.auth_enabled else "127.0.0.1"

"""Experiments declared in a TOML file, created at start-up (for people who do not write code).

.. code-block:: toml

    [[experiments]]
    name = "hero-banner"
    arms = ["red", "green", "blue"]
    attribution_window_s = 3600
    default_reward = 0.0
    policy = { name = "thompson", params = {} }
    guardrails = { default_arm = "red", max_exploration = 0.3 }

An experiment that already exists in the store is left as it is: the store,
not the file, holds its learned state and arm changes.
"""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

from pydantic import ValidationError

from ..errors import InvalidParameterError
from .errors import InvalidRequestError
from .experiment import build_bandit
from .schemas import ExperimentCreate

logger = logging.getLogger("banditkit.service")


def read_experiments(path: str | Path) -> list[ExperimentCreate]:
    """Validate every ``[[experiments]]`` table, down to building its Bandit.

    Errors name the file, the entry and the field.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise InvalidParameterError(f"experiments file {str(path)!r}: {error}") from None
    entries = data.get("experiments", [])
    if not isinstance(entries, list):
        raise InvalidParameterError(f"experiments file {str(path)!r}: 'experiments' must be an array of tables")
    specs = []
    for position, entry in enumerate(entries):
        name = entry.get("name", "?") if isinstance(entry, dict) else "?"
        where = f"experiments file {str(path)!r}, entry {position} ({name!r})"
        try:
            spec = ExperimentCreate.model_validate(entry)
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"])
            raise InvalidParameterError(f"{where}, field {field!r}: {first['msg']}") from None
        try:  # the policy, guardrails and arms together, as creating the experiment will check them
            build_bandit(spec)
        except InvalidRequestError as error:
            field = f", field {error.field!r}" if error.field else ""
            raise InvalidParameterError(f"{where}{field}: {error.detail}") from None
        specs.append(spec)
    return specs

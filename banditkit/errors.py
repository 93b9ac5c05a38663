"""One base exception for the project; bad values are ValueErrors, bad types TypeErrors."""

from __future__ import annotations


class BanditkitError(Exception):
    """Base class of every error banditkit raises on purpose.

    ``field`` names the argument at fault when the check knows it (every
    ``banditkit._validation`` check does), so a caller can point at its own
    input, e.g. a config key, without reading the message.
    """

    def __init__(self, message: str = "", *, field: str | None = None):
        super().__init__(message)
        self.field = field


class InvalidParameterError(BanditkitError, ValueError):
    """An argument has the right type but a value outside its allowed range."""


class InvalidTypeError(BanditkitError, TypeError):
    """An argument has the wrong type."""


class UnknownArmError(InvalidParameterError):
    """An arm name that the bandit does not hold."""


class NoActiveArmError(BanditkitError, RuntimeError):
    """Every arm is disabled or masked out and there is no default arm to serve."""

"""One base exception for the project; bad values are ValueErrors, bad types TypeErrors."""

from __future__ import annotations


class BanditkitError(Exception):
    """Base class of every error banditkit raises on purpose."""


class InvalidParameterError(BanditkitError, ValueError):
    """An argument has the right type but a value outside its allowed range."""


class InvalidTypeError(BanditkitError, TypeError):
    """An argument has the wrong type."""


class UnknownArmError(InvalidParameterError):
    """An arm name that the bandit does not hold."""


class NoActiveArmError(BanditkitError, RuntimeError):
    """Every arm is disabled or masked out and there is no default arm to serve."""

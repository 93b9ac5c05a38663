"""One base exception for the project; bad values are ValueErrors, bad types TypeErrors."""

from __future__ import annotations


class BanditkitError(Exception):
    """Base class of every error banditkit raises on purpose.

    ``field`` names the argument at fault when the check knows it (every
    ``banditkit._validation`` check does), so a caller can point at its own
    input, e.g. a config key, without reading the message.

    Examples
    --------
    >>> import banditkit as bk
    >>> try:
    ...     bk.EpsilonGreedy(epsilon=2)
    ... except bk.BanditkitError as error:
    ...     print(error.field, "|", error)
    epsilon | epsilon must be in [0.0, 1.0], got 2.0
    """

    def __init__(self, message: str = "", *, field: str | None = None):
        super().__init__(message)
        self.field = field


class InvalidParameterError(BanditkitError, ValueError):
    """An argument has the right type but a value outside its allowed range.

    A ``ValueError`` too, so code that catches those keeps working.

    Examples
    --------
    >>> import banditkit as bk
    >>> try:
    ...     bk.Softmax(temperature=-1.0)
    ... except ValueError as error:
    ...     print(type(error).__name__, error.field)
    InvalidParameterError temperature
    """


class InvalidTypeError(BanditkitError, TypeError):
    """An argument has the wrong type.

    A ``TypeError`` too; a value of the right type but out of range is an :class:`InvalidParameterError`.

    Examples
    --------
    >>> import banditkit as bk
    >>> bk.EpsilonGreedy(epsilon="high")
    Traceback (most recent call last):
    ...
    banditkit.errors.InvalidTypeError: epsilon must be a real number, got str 'high'
    """


class UnknownArmError(InvalidParameterError):
    """An arm name that the bandit does not hold.

    Examples
    --------
    >>> import banditkit as bk
    >>> bk.Bandit(["a", "b"], seed=0).update("c", 1.0)
    Traceback (most recent call last):
    ...
    banditkit.errors.UnknownArmError: arm must be one of ['a', 'b'], got 'c'
    """


class NoActiveArmError(BanditkitError, RuntimeError):
    """Every arm is disabled or masked out and there is no default arm to serve.

    Examples
    --------
    >>> import banditkit as bk
    >>> bandit = bk.Bandit(["a", "b"], seed=0)
    >>> bandit.disable_arm("a")
    >>> bandit.select(allowed=["a"])
    Traceback (most recent call last):
    ...
    banditkit.errors.NoActiveArmError: no active arm among allowed=['a'] and no default arm
    >>> bk.Bandit(["a", "b"], seed=0, guardrails=bk.Guardrails(default_arm="b")).select(allowed=[]).fallback
    True
    """

"""Checks run once where data enters; messages name the argument, the rule and the value."""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

from .errors import InvalidParameterError, InvalidTypeError


def check_real(
    name: str, value, *, low: float = -math.inf, high: float = math.inf, low_open: bool = False, high_open: bool = False
) -> float:
    """Return ``value`` as a finite float inside the given interval, or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InvalidTypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}", field=name)
    value = float(value)
    if not math.isfinite(value):
        raise InvalidParameterError(f"{name} must be finite, got {value!r}", field=name)
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise InvalidParameterError(f"{name} must be in {left}{low}, {high}{right}, got {value!r}", field=name)
    return value


def check_int(name: str, value, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int inside [low, high], or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise InvalidTypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}", field=name)
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise InvalidParameterError(f"{name} must be in [{low}, {high}], got {value!r}", field=name)
    return value


def check_rewards(
    name: str, rewards, bounds: tuple[float, float], rule: str = " for this policy", advice: str = ""
) -> np.ndarray:
    """Return rewards as a 1-d float array; reject non-numbers, NaN/inf and values outside ``bounds``.

    ``advice`` ends the message for a value outside ``bounds`` (what to change to accept it).
    """
    try:
        array = np.asarray(rewards, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidTypeError(f"{name} must be numbers, got {rewards!r}", field=name) from error
    if array.ndim > 1:
        raise InvalidParameterError(f"{name} must be 1-dimensional, got shape {array.shape}", field=name)
    array = np.atleast_1d(array)
    if not np.isfinite(array).all():
        row = int(np.flatnonzero(~np.isfinite(array))[0])
        raise InvalidParameterError(f"{name} must be finite, got {float(array[row])!r} at position {row}", field=name)
    low, high = bounds
    outside = (array < low) | (array > high)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise InvalidParameterError(
            f"{name} must be in [{low}, {high}]{rule}, got {float(array[row])!r} at position {row}{advice}",
            field=name,
        )
    return array


def check_contexts(name: str, contexts, n_features: int) -> np.ndarray:
    """Return contexts as a finite float array of shape (n, n_features)."""
    try:
        array = np.asarray(contexts, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidTypeError(f"{name} must be numbers, got {contexts!r}", field=name) from error
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != n_features:
        raise InvalidParameterError(
            f"{name} must have {n_features} features per row, got shape {np.shape(contexts)}", field=name
        )
    if not np.isfinite(array).all():
        row, column = (int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise InvalidParameterError(
            f"{name} must be finite, got {float(array[row, column])!r} at row {row}, feature {column}", field=name
        )
    return array


def check_reward(name: str, value, bounds: tuple[float, float], advice: str = "") -> float:
    """One reward as a float: a finite real number inside ``bounds``, or a clear error ending with ``advice``."""
    if type(value) is not float:
        if isinstance(value, bool) or not isinstance(value, Real):
            raise InvalidTypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}", field=name)
        value = float(value)
    if not math.isfinite(value):
        raise InvalidParameterError(f"{name} must be finite, got {value!r}", field=name)
    if not bounds[0] <= value <= bounds[1]:
        raise InvalidParameterError(
            f"{name} must be in [{bounds[0]}, {bounds[1]}] for this policy, got {value!r}{advice}", field=name
        )
    return value

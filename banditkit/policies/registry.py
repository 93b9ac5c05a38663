"""The registry: every policy class by its name, and the one way to build a policy from a name or a dict."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidParameterError, InvalidTypeError
from .base import Policy, parameter_names

REGISTRY: dict[str, type[Policy]] = {}
"""Every policy class by its ``name``, as ``make_policy``, configs and the service name them.

>>> import banditkit as bk
>>> bk.REGISTRY["thompson"] is bk.ThompsonSampling
True
>>> "ucb1" in bk.REGISTRY and "linucb" in bk.REGISTRY
True
"""


def register(cls: type[Policy]) -> type[Policy]:
    """Class decorator: make ``cls`` reachable as ``make_policy(cls.name)``."""
    if cls.name in REGISTRY:
        raise ValueError(f"policy name {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def make_policy(spec: Policy | str | dict[str, Any]) -> Policy:
    """A policy from an instance, a registry name, or ``{"name": ..., "params": {...}}``.

    Examples
    --------
    >>> import banditkit as bk
    >>> bk.make_policy("ucb1")
    UCB1(reward_range=[0.0, 1.0])
    >>> bk.make_policy({"name": "epsilon_greedy", "params": {"epsilon": 0.2}}).epsilon
    0.2
    >>> bk.make_policy({"name": "ucb1", "params": {"alpha": 2}})
    Traceback (most recent call last):
    ...
    banditkit.errors.InvalidParameterError: policy 'ucb1' has no parameter 'alpha'; it accepts ['reward_range']
    """
    if isinstance(spec, Policy):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec, "params": {}}
    if not isinstance(spec, dict):
        raise InvalidTypeError(f"policy must be a Policy, a name or a dict, got {type(spec).__name__}")
    unknown_keys = set(spec) - {"name", "params"}
    if unknown_keys:
        raise InvalidParameterError(f"policy has unknown keys {sorted(unknown_keys)}; expected 'name' and 'params'")
    name = spec.get("name")
    if name not in REGISTRY:
        raise InvalidParameterError(f"policy name must be one of {sorted(REGISTRY)}, got {name!r}")
    params = spec.get("params") or {}
    if not isinstance(params, dict):
        raise InvalidTypeError(f"policy params must be a dict, got {type(params).__name__}")
    cls = REGISTRY[name]
    accepted = set(parameter_names(cls))
    unknown = set(params) - accepted
    if unknown:
        raise InvalidParameterError(
            f"policy {name!r} has no parameter {sorted(unknown)[0]!r}; it accepts {sorted(accepted)}"
        )
    return cls(**params)

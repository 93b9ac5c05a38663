"""Scikit-learn-style estimators as JSON specs, deterministic bootstrap weights, and a fitted-model cache.

A fitted estimator cannot live in a state of numpy arrays, so the model-based
policies keep the *data* as the state and treat fitted models as a cache: a
model is a deterministic function of (estimator spec, seed, the rows it was
fit on), memoised under a content hash of those rows. A state restored from
JSON in another process misses the cache once and refits the same model.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import inspect
import json
import sys
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from .._typing import AnyArray, FloatArray, IntArray
from ..errors import InvalidParameterError, InvalidTypeError

#: Poisson(1) cumulative distribution up to 20 (the remaining mass is below 1e-19).
_POISSON_CDF = np.cumsum(np.exp(-1.0) / np.cumprod(np.r_[1.0, np.arange(1.0, 21.0)]))


def estimator_spec(estimator: Any) -> dict[str, Any]:
    """``{"class": "module.Name", "params": {...}}`` for an estimator instance or such a dict.

    Parameters must be JSON values; a missing ``random_state`` is fixed to 0 so
    that a refit gives the same model. A spec naming a class outside
    scikit-learn is accepted only if its module is already imported (JSON never
    triggers an import of arbitrary code).
    """
    if isinstance(estimator, dict):
        unknown = set(estimator) - {"class", "params"}
        if unknown or not isinstance(estimator.get("class"), str):
            raise InvalidParameterError(
                f"estimator must be {{'class': 'module.Name', 'params': {{...}}}}, got {estimator!r}"
            )
        cls = _resolve(estimator["class"])
        params = dict(estimator.get("params") or {})
    else:
        if not (hasattr(estimator, "fit") and hasattr(estimator, "predict") and hasattr(estimator, "get_params")):
            raise InvalidTypeError(f"estimator must have fit, predict and get_params, got {type(estimator).__name__}")
        cls = type(estimator)
        params = estimator.get_params(deep=False)
    try:
        params = json.loads(json.dumps(params, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise InvalidParameterError(
            f"estimator {cls.__name__} has parameters that are not JSON values ({error}); the model-based "
            f"policies need them to serialise the policy"
        ) from None
    if "random_state" in inspect.signature(cls).parameters and params.get("random_state") is None:
        params["random_state"] = 0
    build(cls, params)  # fail now, not at the first fit
    return {"class": _public_path(cls), "params": params}


def _public_path(cls: type) -> str:
    """``package.Name`` at the shortest module path that exposes ``cls`` (sklearn.tree, not sklearn.tree._classes)."""
    parts = cls.__module__.split(".")
    for end in range(1, len(parts) + 1):
        module = sys.modules.get(".".join(parts[:end]))
        if module is not None and getattr(module, cls.__qualname__, None) is cls:
            return f"{module.__name__}.{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _resolve(path: str) -> type:
    module_name, _, name = path.rpartition(".")
    if not module_name.startswith("sklearn.") and module_name not in sys.modules:
        raise InvalidParameterError(
            f"estimator class {path!r}: only scikit-learn classes, or classes whose module is already "
            f"imported, can be named in a spec"
        )
    try:
        found = getattr(importlib.import_module(module_name), name)
    except ModuleNotFoundError as error:
        if error.name == "sklearn":
            raise ImportError("the model-based policies need scikit-learn: pip install banditkit[models]") from None
        raise InvalidParameterError(f"estimator class {path!r} cannot be found: {error}") from None
    except (ImportError, AttributeError) as error:
        raise InvalidParameterError(f"estimator class {path!r} cannot be found: {error}") from None
    # Never call anything but an estimator class: a spec may come from an untrusted JSON document.
    if not (isinstance(found, type) and hasattr(found, "fit") and hasattr(found, "predict")):
        raise InvalidParameterError(f"estimator class {path!r} is not an estimator class (fit and predict)")
    return found


def build(cls_or_spec: type | dict[str, Any], params: dict[str, Any] | None = None) -> Any:
    """A fresh, unfitted estimator from a class and params, or from a spec dict."""
    if isinstance(cls_or_spec, dict):
        cls, params = _resolve(cls_or_spec["class"]), cls_or_spec["params"]
    else:
        cls = cls_or_spec
    try:
        return cls(**(params or {}))
    except (TypeError, ValueError) as error:
        raise InvalidParameterError(f"estimator {cls.__name__}: {error}") from None


def accepts_sample_weight(method: Any) -> bool:
    """True when ``method`` (fit or partial_fit) takes a ``sample_weight`` argument."""
    return "sample_weight" in inspect.signature(method).parameters


def bootstrap_weights(seed: int, row_ids: IntArray, n_replicas: int) -> FloatArray:
    """Poisson(1) online-bootstrap weights, shape (n, n_replicas), a pure function of (seed, row id, replica).

    Counter-based (a SplitMix64 hash, then the Poisson inverse CDF): the same row
    always gets the same weights, whatever the order or batching of updates.
    """
    counters = (
        row_ids.astype(np.uint64)[:, None] * np.uint64(n_replicas) + np.arange(n_replicas, dtype=np.uint64)[None, :]
    )
    z = counters + np.full(counters.shape, seed, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    uniforms = (z >> np.uint64(11)).astype(np.float64) * 2.0**-53
    weights: FloatArray = np.searchsorted(_POISSON_CDF, uniforms, side="right").astype(np.float64)
    return weights


def content_key(*arrays: AnyArray) -> int:
    """A 63-bit hash of the arrays' bytes, shapes and dtypes: the cache key of a fit."""
    digest = hashlib.blake2b(digest_size=8)
    for array in arrays:
        digest.update(str((array.dtype.str, array.shape)).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return int.from_bytes(digest.digest(), "big") >> 1


class ModelCache:
    """A small thread-safe LRU map from a fit's content key to its fitted models."""

    def __init__(self, capacity: int = 256):
        self.capacity = capacity
        self._entries: OrderedDict[int, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: int) -> Any:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: int, value: Any) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)


def copy_model(model: Any) -> Any:
    """An independent copy of a fitted model (partial_fit mutates in place)."""
    return copy.deepcopy(model)

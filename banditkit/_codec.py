"""Exact JSON for named numpy arrays: dtype, shape and the raw bytes in base64.

The one encoding of learned state in banditkit: the Bandit's JSON and the
service stores both write it, so a round trip is bit-identical (NaN payloads
and negative zeros included) and costs one base64 pass, not a float-to-text
conversion per number.

>>> import numpy as np
>>> arrays = {"pulls": np.array([[1.0, -0.0, 2.5]])}
>>> encode_arrays(arrays)
{'pulls': {'dtype': '<f8', 'shape': [1, 3], 'data': 'AAAAAAAA8D8AAAAAAAAAgAAAAAAAAARA'}}
>>> decode_arrays(encode_arrays(arrays))["pulls"].tobytes() == arrays["pulls"].tobytes()
True
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import InvalidParameterError

#: Array kinds the encoding holds: booleans and numbers (never objects, which would need pickling).
_KINDS = "biufc"


def encode_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """``{name: {"dtype", "shape", "data"}}``, JSON-ready.

    ``data`` is the little- or big-endian bytes that ``dtype`` (numpy's ``dtype.str``, byte order included)
    says, in C order, base64-encoded.
    """
    return {
        name: {
            "dtype": array.dtype.str,
            "shape": list(array.shape),
            "data": base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii"),
        }
        for name, array in arrays.items()
    }


def decode_arrays(data: Mapping[str, Any], field: str = "state") -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_arrays`: new, writeable arrays; errors name ``field[name]``."""
    if not isinstance(data, Mapping):
        raise InvalidParameterError(f"{field} must be a mapping of encoded arrays, got {data!r}", field=field)
    return {name: _decode(item, f"{field}[{name!r}]") for name, item in data.items()}


def _decode(item: Any, where: str) -> np.ndarray:
    try:
        dtype, shape, text = item["dtype"], item["shape"], item["data"]
        raw = base64.b64decode(text, validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error) as error:
        raise InvalidParameterError(
            f"{where} must be {{'dtype', 'shape', 'data' (base64)}}, got {item!r:.200}: {error}", field=where
        ) from None
    return array_from_bytes(dtype, shape, raw, where)


def array_from_bytes(dtype: Any, shape: Any, raw: bytes, where: str) -> np.ndarray:
    """A new, writeable array from its raw C-order bytes (what :func:`encode_arrays` base64-encodes).

    The array has numpy dtype ``dtype`` (``dtype.str``) and ``shape``; errors name ``where``.
    """
    try:
        kind, dims = np.dtype(dtype), [int(n) for n in shape]
    except (TypeError, ValueError) as error:
        raise InvalidParameterError(
            f"{where} must have a numpy dtype and a shape, got {dtype!r:.50} and {shape!r:.100}: {error}", field=where
        ) from None
    if kind.kind not in _KINDS:
        raise InvalidParameterError(f"{where} must hold booleans or numbers, got dtype {kind.str!r}", field=where)
    if len(raw) != math.prod(dims) * kind.itemsize:
        raise InvalidParameterError(
            f"{where} has {len(raw)} bytes, expected {math.prod(dims) * kind.itemsize} for {kind.str} of shape {dims}",
            field=where,
        )
    return np.frombuffer(raw, dtype=kind).reshape(dims).copy()

"""Optional numba acceleration of the one-request hot path.

A single ``select()`` on ten arms is dominated by numpy's per-call overhead
(``Generator.beta`` on a 10-element array costs ~20 µs). When numba is
installed (``pip install banditkit[fast]``) the policies route batch-size-1
selections through small compiled kernels that call the *same* Generator
methods on the *same* bit generator, so the draws, and hence every decision,
are bit-identical to the numpy path (tests compare them). numba is imported on
first use only; set ``BANDITKIT_DISABLE_JIT=1`` to force the numpy path.
"""

from __future__ import annotations

import ctypes
import os
from collections import OrderedDict
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from .._typing import BoolArray, IntArray

_kernels: ModuleType | None = None
_loaded = False
_POINTER_CACHE: OrderedDict[int, tuple[np.random.Generator, np.ndarray]] = OrderedDict()  # oldest first
_POINTER_CACHE_SIZE = 64


def kernels() -> ModuleType | None:
    """The compiled kernels module, or None when numba is absent or disabled."""
    global _kernels, _loaded
    if not _loaded:
        _loaded = True
        if os.environ.get("BANDITKIT_DISABLE_JIT", "") not in ("", "0"):
            return None
        try:
            from . import _jit_kernels
        except ImportError:
            _kernels = None
        else:
            _kernels = _jit_kernels
    return _kernels


def set_enabled(enabled: bool) -> None:
    """Switch the compiled path on or off for this process (tests compare both paths)."""
    global _kernels, _loaded
    _loaded = not enabled
    _kernels = None
    if enabled:
        os.environ.pop("BANDITKIT_DISABLE_JIT", None)
        kernels()


def choose_rows(kernel: Callable[..., None], rng: np.random.Generator, mask: BoolArray, *arguments: Any) -> IntArray:
    """Run a row kernel ``kernel(pointers, *arguments, mask, out)``; one arm per row of ``mask``.

    The kernels release the GIL, so simulator blocks run on both cores. They do
    not take the generator's lock: a Generator belongs to one thread at a time
    (each Bandit and each simulator block owns its own; the service serialises
    each experiment), as with any state a policy reads.
    """
    out = np.empty(mask.shape[0], dtype=np.intp)
    kernel(generator_pointers(rng), *arguments, np.ascontiguousarray(mask), out)
    return out


def generator_pointers(rng: np.random.Generator) -> np.ndarray:
    """The bit generator's state and function addresses, as compiled kernels take them.

    Cached per Generator (which the cache keeps alive, so an id is never reused
    while its entry stands); reading them through ctypes costs ~10 µs.
    """
    key = id(rng)
    entry = _POINTER_CACHE.get(key)
    if entry is not None and entry[0] is rng:
        return entry[1]
    interface = rng.bit_generator.ctypes

    def address(function: Any) -> int:
        return ctypes.cast(function, ctypes.c_void_p).value or 0  # a NULL pointer reads as None

    pointers = np.array(
        [
            interface.state_address,
            interface.state.value,
            address(interface.next_uint64),
            address(interface.next_uint32),
            address(interface.next_double),
            interface.bit_generator.value,
        ],
        dtype=np.uint64,
    )
    _POINTER_CACHE[key] = (rng, pointers)
    if len(_POINTER_CACHE) > _POINTER_CACHE_SIZE:
        _POINTER_CACHE.popitem(last=False)
    return pointers

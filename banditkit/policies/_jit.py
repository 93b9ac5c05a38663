"""Optional numba acceleration of the one-request hot path.

A single ``select()`` on ten arms is dominated by numpy's per-call overhead
(``Generator.beta`` on a 10-element array costs ~20 µs). When numba is
installed (``pip install banditkit[fast]``) the policies route batch-size-1
selections through small compiled kernels that call the *same* Generator
methods on the *same* bit generator, so the draws, and hence every decision,
are bit-identical to the numpy path (tests compare them). Set
``BANDITKIT_DISABLE_JIT=1`` to force the numpy path.

The kernels are loaded when they pay for themselves. Importing numba and
readying its compiler take about 0.5 s even when numba's on-disk cache holds
the kernels (``cache=True``), and compiling a kernel the first time on a
machine 1-2 s, while a decision on the numpy path costs only ~25 µs more than
a compiled one. So a process starts on the numpy path and loads the kernels
once its numpy-path decisions have taken :data:`LOAD_AFTER_SECONDS` in all
(ski rental: with the cache filled, never much more than twice the cost of the
better choice made in hindsight). A short script never imports numba; a long
run ends up compiled; as both paths draw alike, the switch changes no
decision. A caller that knows it will run long (a benchmark) calls
:func:`load` up front.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

import numpy as np

from .._typing import BoolArray, IntArray

#: Seconds of numpy-path decisions after which the compiled kernels are loaded: about what loading costs.
LOAD_AFTER_SECONDS = 0.5
#: Most one call counts toward it: one-time work in a first call (Bayes-UCB's first imports scipy) is not rent.
CALL_SECONDS_COUNTED = 0.01

_kernels: ModuleType | None = None
_unavailable = False  # numba absent or the compiled path switched off: never try to load
_numpy_seconds = 0.0
_POINTER_CACHE: OrderedDict[int, tuple[np.random.Generator, np.ndarray]] = OrderedDict()  # oldest first
_POINTER_CACHE_SIZE = 64
_Result = TypeVar("_Result")


def kernels() -> ModuleType | None:
    """The compiled kernels module once loaded, else None (the numpy path); asking never loads it."""
    return _kernels


def load() -> ModuleType | None:
    """Load the compiled kernels now; None when numba is absent or the compiled path is switched off.

    One small kernel is called here, so that readying numba's compiler (most of the cost of loading)
    happens now rather than in the first compiled decision.
    """
    global _kernels, _unavailable
    if _kernels is None and not _unavailable:
        if os.environ.get("BANDITKIT_DISABLE_JIT", "") not in ("", "0"):
            _unavailable = True
            return None
        try:
            from . import _jit_kernels
        except ImportError:
            _unavailable = True
            return None
        _jit_kernels.inverse_cdf(np.ones(1), 0.0)
        _kernels = _jit_kernels
    return _kernels


def numpy_path(decide: Callable[..., _Result], *arguments: Any) -> _Result:
    """``decide(*arguments)`` on the numpy path, its time counted toward loading the compiled kernels."""
    global _numpy_seconds
    start = time.perf_counter()
    try:
        return decide(*arguments)
    finally:  # threads (simulator blocks) may race on the sum: a lost increment only delays the load
        _numpy_seconds += min(time.perf_counter() - start, CALL_SECONDS_COUNTED)
        if _numpy_seconds >= LOAD_AFTER_SECONDS and not _unavailable:
            load()


def set_enabled(enabled: bool | None) -> None:
    """Switch the compiled path on (loaded now), off, or back to the default (loaded once it pays); tests use it."""
    global _kernels, _unavailable, _numpy_seconds
    _kernels = None
    _unavailable = enabled is False
    _numpy_seconds = 0.0
    if enabled:
        os.environ.pop("BANDITKIT_DISABLE_JIT", None)
        load()


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

"""Array type aliases for annotations: the dtype each array holds, checked by mypy (see pyproject.toml)."""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

#: Rewards, probabilities, sums: float64 arrays.
FloatArray: TypeAlias = npt.NDArray[np.float64]
#: Arm indices and counts used as indices.
IntArray: TypeAlias = npt.NDArray[np.intp]
#: Masks of allowed arms.
BoolArray: TypeAlias = npt.NDArray[np.bool_]
#: An array whose dtype depends on its input (contexts as given, object columns, a state's arrays).
AnyArray: TypeAlias = npt.NDArray[Any]
#: A seed or a Generator, as entry points take it (``np.random.default_rng`` turns a seed into a Generator).
RngLike: TypeAlias = int | np.random.Generator

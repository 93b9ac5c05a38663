"""The logged-data format of offline evaluation and its one validator.

A log holds one row per decision: the ``arm`` shown, its ``reward``, the
``propensity`` with which the behaviour policy chose it, and optionally the
``context`` (a list column, JSON lists, or columns ``x0..xd``), the slot
``position`` (0-based) for list recommendations, and the behaviour policy's
full distribution ``probabilities`` (a JSON object arm -> probability per row,
as the decision service exports it). :func:`load_log` reads any source, checks
every row once and returns a :class:`LoggedData` that the estimators trust.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._typing import AnyArray, FloatArray, IntArray
from ..errors import InvalidParameterError
from ._io import read_columns

#: Propensities whose ratio to the behaviour probability of the logged arm differ more are rejected.
_PROPENSITY_TOLERANCE = 1e-6
_X_COLUMN = re.compile(r"^x(\d+)$")


@dataclass(frozen=True, eq=False)
class LoggedData:
    """A validated decision log; arrays share the row axis n.

    arms : (n,) int indices into ``arm_names``; rewards, propensities : (n,) float;
    contexts : (n, d) float or None; positions : (n,) int in [0, n_positions) or None;
    behaviour_probabilities : (n, K) or None.

    Built by :func:`load_log`, which checks every column once, so the estimators trust it.

    Examples
    --------
    >>> log = load_log({"arm": ["red", "blue", "blue"], "reward": [1.0, 0.0, 1.0], "propensity": [0.5] * 3})
    >>> log.n_rows, log.n_arms, log.arm_names, log.arms.tolist()
    (3, 2, ('blue', 'red'), [1, 0, 0])
    """

    arms: np.ndarray
    rewards: np.ndarray
    propensities: np.ndarray
    arm_names: tuple[str, ...]
    contexts: np.ndarray | None = None
    positions: np.ndarray | None = None
    behaviour_probabilities: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        return int(self.arms.shape[0])

    @property
    def n_arms(self) -> int:
        return len(self.arm_names)

    @property
    def n_positions(self) -> int:
        return 1 if self.positions is None else int(self.positions.max(initial=0)) + 1


def load_log(
    source: Any,
    *,
    arms: Sequence[str] | None = None,
    drop_unrewarded: bool = False,
    experiment: str | None = None,
    first_row: int = 0,
) -> LoggedData:
    """Read and validate a decision log.

    Parameters
    ----------
    source : path (.csv / .parquet), DataFrame, pyarrow Table, mapping of column -> array, or LoggedData
    arms : sequence of str, optional
        The arm vocabulary in order; logged arms outside it are an error. Default: integer arms are
        indices 0..max, named arms are taken from ``probabilities`` or sorted.
    drop_unrewarded : bool
        Drop rows whose reward is missing (decisions still waiting for their reward) instead of failing.
    experiment : str, optional
        Keep the rows of this experiment when the log has an ``experiment`` column with several.
    first_row : int
        Number of the source's first row in error messages (a chunk read from a larger file).

    Examples
    --------
    >>> log = load_log({"arm": [0, 1, 1], "reward": [1.0, 0.0, 1.0], "propensity": [0.5, 0.5, 0.5]})
    >>> log.n_rows, log.arm_names
    (3, ('0', '1'))
    """
    if isinstance(source, LoggedData):
        return source
    columns = read_columns(source)
    n_rows = _common_length(columns)
    keep = np.ones(n_rows, dtype=bool)
    if "experiment" in columns:
        keep &= _experiment_rows(columns["experiment"], experiment)
    for name in ("arm", "reward", "propensity"):
        if name not in columns:
            raise InvalidParameterError(f"log has no {name!r} column; columns are {sorted(columns)}")
    rewards = _numbers("reward", columns["reward"], first_row)
    if drop_unrewarded:
        keep &= ~np.isnan(rewards)
    if not keep.all():
        columns = {name: values[keep] for name, values in columns.items()}
        rewards = rewards[keep]
    if rewards.shape[0] == 0:
        raise InvalidParameterError("log has no rows to evaluate")
    _check_finite(
        "reward",
        rewards,
        hint="; pass drop_unrewarded=True to evaluate only rewarded decisions" if np.isnan(rewards).any() else "",
        first_row=first_row,
    )
    propensities = _numbers("propensity", columns["propensity"], first_row)
    bad = ~((propensities > 0) & (propensities <= 1))
    if bad.any():
        raise InvalidParameterError(
            f"propensity must be in (0, 1] (missing, 0 or > 1 cannot be evaluated), "
            f"got {float(propensities[bad][0])!r} {_rows(bad, first_row)}"
        )
    distributions = _json_objects(columns["probabilities"]) if "probabilities" in columns else None
    arm_indices, arm_names = _arm_indices(columns["arm"], arms, distributions, first_row)
    behaviour = None
    if distributions is not None:
        behaviour = _behaviour_probabilities(distributions, arm_names)
        logged = behaviour[np.arange(arm_indices.shape[0]), arm_indices]
        mismatch = np.abs(logged - propensities) > _PROPENSITY_TOLERANCE
        if mismatch.any():
            raise InvalidParameterError(
                f"propensity must equal probabilities[arm], got {float(propensities[mismatch][0])!r} "
                f"vs {float(logged[mismatch][0])!r} {_rows(mismatch, first_row)}"
            )
    return LoggedData(
        arm_indices,
        rewards,
        propensities,
        arm_names,
        _contexts(columns, first_row),
        _positions(columns.get("position"), first_row),
        behaviour,
    )


def _common_length(columns: dict[str, np.ndarray]) -> int:
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise InvalidParameterError(f"log columns must have the same length, got {lengths}")
    return next(iter(lengths.values()), 0)


def _rows(bad: np.ndarray, first_row: int = 0) -> str:
    """'at rows [3, 17, ...] (n rows)' for a boolean mask of offending rows (numbered from ``first_row``)."""
    rows = np.flatnonzero(bad) + first_row
    shown = ", ".join(str(int(r)) for r in rows[:5]) + (", ..." if rows.shape[0] > 5 else "")
    return f"at rows [{shown}] ({rows.shape[0]} row{'s' if rows.shape[0] != 1 else ''})"


def _numbers(name: str, values: np.ndarray, first_row: int = 0) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        pass
    parsed = np.array([_float_or_nan(v) for v in values])
    text = np.isnan(parsed) & np.array([v not in (None, "") and v == v for v in values])
    if text.any():
        raise InvalidParameterError(f"{name} must be a number, got {values[text][0]!r} {_rows(text, first_row)}")
    return parsed


def _float_or_nan(value: Any) -> float:
    try:
        return float(value) if value not in (None, "") else np.nan
    except (TypeError, ValueError):
        return np.nan


def _check_finite(name: str, values: np.ndarray, hint: str = "", first_row: int = 0) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        raise InvalidParameterError(
            f"{name} must be finite, got {float(values[bad][0])!r} {_rows(bad, first_row)}{hint}"
        )


def _experiment_rows(values: np.ndarray, experiment: str | None) -> np.ndarray:
    names = sorted({str(v) for v in values})
    if experiment is None:
        if len(names) > 1:
            raise InvalidParameterError(f"log holds several experiments {names}; pass experiment=NAME")
        return np.ones(len(values), dtype=bool)
    if experiment not in names:
        raise InvalidParameterError(f"experiment {experiment!r} is not in the log; it holds {names}")
    return np.array([str(v) == experiment for v in values])


def _arm_indices(
    values: AnyArray, arms: Sequence[str] | None, distributions: list[dict[str, Any]] | None, first_row: int = 0
) -> tuple[IntArray, tuple[str, ...]]:
    """Arm index per row and the arm vocabulary."""
    if values.dtype.kind in "iu" and arms is None:
        if values.min() < 0:
            raise InvalidParameterError(f"arm indices must be >= 0, got {values.min()} {_rows(values < 0, first_row)}")
        return values.astype(np.intp), tuple(str(i) for i in range(int(values.max()) + 1))
    if values.dtype.kind == "f":
        raise InvalidParameterError("arm must be integer indices or names, got floating-point values")
    labels = np.array([str(v) for v in values], dtype=object)
    if arms is not None:
        names = tuple(str(a) for a in arms)
    elif distributions is not None:
        names = tuple(dict.fromkeys(arm for row in distributions for arm in row))
    else:
        names = tuple(sorted(set(labels)))
    lookup = {name: i for i, name in enumerate(names)}
    indices = np.array([lookup.get(label, -1) for label in labels], dtype=np.intp)
    unknown = indices < 0
    if unknown.any():
        raise InvalidParameterError(
            f"arm {labels[unknown][0]!r} is not one of the arms {list(names)} {_rows(unknown, first_row)}"
        )
    return indices, names


def _json_objects(values: AnyArray) -> list[dict[str, Any]]:
    """Per-row JSON objects (or dicts) arm -> probability, parsed in one call."""
    texts = [v if isinstance(v, str) else json.dumps(v) for v in values]
    try:
        objects: list[dict[str, Any]] = json.loads("[" + ",".join(texts) + "]")
        return objects
    except json.JSONDecodeError as error:
        raise InvalidParameterError(f"probabilities must be JSON objects arm -> probability: {error}") from None


def _behaviour_probabilities(rows: list[dict[str, Any]], arm_names: tuple[str, ...]) -> FloatArray:
    """(n, K) behaviour distribution in ``arm_names`` order."""
    lookup = {name: i for i, name in enumerate(arm_names)}
    out = np.zeros((len(rows), len(arm_names)))
    for i, row in enumerate(rows):  # boundary parsing of a JSON column; the hot path is vectorized
        for arm, p in row.items():
            if arm not in lookup:
                raise InvalidParameterError(f"probabilities name arm {arm!r} unknown to the log at row {i}")
            out[i, lookup[arm]] = p
    _check_finite("probabilities", out.sum(axis=1))
    return out


def _contexts(columns: dict[str, np.ndarray], first_row: int = 0) -> np.ndarray | None:
    if "context" in columns:
        values = columns["context"]
        empty = np.array([_no_context(value) for value in values], dtype=bool)
        if empty.all():  # a non-contextual experiment's export: null or [] everywhere
            return None
        if empty.any():
            raise InvalidParameterError(f"context is missing {_rows(empty, first_row)} while other rows have one")
        return _list_column("context", values, first_row)
    numbered = sorted((int(m.group(1)), name) for name in columns if (m := _X_COLUMN.match(name)))
    if not numbered:
        return None
    # Column by column into a Fortran-ordered array: contiguous copies (column_stack's interleaved writes are
    # several times slower), and the reward model reads the features column by column.
    contexts = np.empty((len(numbered), _common_length(columns)), dtype=np.float64).T
    for j, (_, name) in enumerate(numbered):
        contexts[:, j] = columns[name]
    _check_context_finite(contexts, first_row)
    return contexts


def _no_context(value: Any) -> bool:
    if value is None or (isinstance(value, float) and value != value):
        return True
    if isinstance(value, str):
        return value.strip() in ("", "null", "[]")
    return hasattr(value, "__len__") and len(value) == 0


def _list_column(name: str, values: np.ndarray, first_row: int = 0) -> np.ndarray:
    """(n, d) floats from a column of lists or JSON list strings, all of one length."""
    if values.dtype.kind == "O" and values.shape[0] and isinstance(values[0], str):
        try:
            rows = json.loads("[" + ",".join(values) + "]")
        except json.JSONDecodeError as error:
            raise InvalidParameterError(f"{name} must be JSON lists of numbers: {error}") from None
    else:
        rows = list(values)
    lengths = np.array([len(row) for row in rows])
    mismatch = lengths != lengths[0]
    if mismatch.any():
        raise InvalidParameterError(
            f"{name} must have {lengths[0]} features on every row, "
            f"got {lengths[mismatch][0]} {_rows(mismatch, first_row)}"
        )
    contexts = np.array(rows, dtype=np.float64).reshape(len(rows), int(lengths[0]))
    _check_context_finite(contexts, first_row)
    return contexts


def _check_context_finite(contexts: np.ndarray, first_row: int = 0) -> None:
    with np.errstate(over="ignore", invalid="ignore"):
        total = contexts.sum()
    if np.isfinite(total):  # a NaN or an infinity anywhere makes the sum one: the common case in one pass
        return
    bad = ~np.isfinite(contexts)
    if bad.any():
        raise InvalidParameterError(
            f"context must be finite, got {float(contexts[bad][0])!r} in feature {int(np.argwhere(bad)[0, 1])} "
            f"{_rows(bad.any(axis=1), first_row)}"
        )


def _positions(values: AnyArray | None, first_row: int = 0) -> IntArray | None:
    if values is None:
        return None
    positions = np.asarray(values)
    if positions.dtype.kind not in "iu":
        raise InvalidParameterError("position must be integer slot indices starting at 0")
    bad = positions < 0
    if bad.any():
        raise InvalidParameterError(f"position must be >= 0, got {positions[bad][0]} {_rows(bad, first_row)}")
    return positions.astype(np.intp)

"""A small column table: prints itself, converts to pandas or polars only when asked.

banditkit does not depend on a DataFrame library; results come back as a
``Table`` (ordered columns of equal length) that reads well in a terminal or
notebook and hands itself to whichever DataFrame library the user has.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InvalidParameterError


def missing_dependency(extra: str | None, package: str) -> ImportError:
    """The error for an optional dependency that is not installed, naming what to install."""
    also = f" or `pip install banditkit[{extra}]`" if extra else ""
    return ImportError(f"this needs {package}; install it with `pip install {package}`{also}")


class Table:
    """Named columns of equal length.

    >>> t = Table({"policy": ["TS", "UCB1"], "regret_mean": [12.5, 40.25]})
    >>> t
    policy  regret_mean
    TS           12.500
    UCB1         40.250
    >>> t["regret_mean"].tolist(), len(t)
    ([12.5, 40.25], 2)
    """

    def __init__(self, columns: Mapping[str, Sequence[Any] | np.ndarray]):
        self._columns = {name: np.asarray(values) for name, values in columns.items()}
        lengths = {name: len(values) for name, values in self._columns.items()}
        if len(set(lengths.values())) > 1:
            raise InvalidParameterError(f"table columns must have equal lengths, got {lengths}")

    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    def __len__(self) -> int:
        return len(next(iter(self._columns.values()))) if self._columns else 0

    def __getitem__(self, column: str) -> np.ndarray:
        if column not in self._columns:
            raise KeyError(f"no column {column!r}; columns are {self.columns}")
        return self._columns[column]

    def rows(self) -> Iterator[dict[str, Any]]:
        """Each row as a dict of plain Python values."""
        for i in range(len(self)):
            yield {name: values[i].item() for name, values in self._columns.items()}

    def to_dict(self) -> dict[str, list[Any]]:
        """Columns as lists of plain Python values (JSON-ready)."""
        return {name: values.tolist() for name, values in self._columns.items()}

    def to_pandas(self):
        """A ``pandas.DataFrame`` (pandas imported here, not at import of banditkit)."""
        try:
            import pandas
        except ImportError as error:
            raise missing_dependency(None, "pandas") from error
        return pandas.DataFrame(self._columns)

    def to_polars(self):
        """A ``polars.DataFrame`` (polars imported here)."""
        try:
            import polars
        except ImportError as error:
            raise missing_dependency(None, "polars") from error
        return polars.DataFrame(self._columns)

    def to_arrow(self):
        """A ``pyarrow.Table`` (pyarrow imported here)."""
        try:
            import pyarrow
        except ImportError as error:
            raise missing_dependency("io", "pyarrow") from error
        return pyarrow.table(self._columns)

    def _cells(self, values: np.ndarray) -> list[str]:
        if values.dtype.kind == "f":
            return [f"{v:.3f}" for v in values]
        return [str(v) for v in values]

    def __repr__(self) -> str:
        lines = []
        cells = {name: self._cells(values) for name, values in self._columns.items()}
        widths = {name: max([len(name), *map(len, column)]) for name, column in cells.items()}
        numeric = {name: self._columns[name].dtype.kind in "fiu" for name in cells}
        align = lambda name, text: text.rjust(widths[name]) if numeric[name] else text.ljust(widths[name])
        lines.append("  ".join(align(name, name) for name in cells).rstrip())
        for i in range(len(self)):
            lines.append("  ".join(align(name, cells[name][i]) for name in cells).rstrip())
        return "\n".join(lines)

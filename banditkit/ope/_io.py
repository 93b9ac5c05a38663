"""Read a decision log into named numpy columns, whatever it arrived as.

Sources: a CSV or Parquet path, a folder of Parquet files (the decision
service's archive: ``experiment=E/date=D/part-*.parquet``), a pandas / polars
DataFrame or a pyarrow Table (duck-typed, never imported here), or a mapping of column name to
array. pyarrow reads Parquet (and CSV quickly when present); it is imported
only when needed, with an error naming the ``banditkit[io]`` extra.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .._csv import unescape_cell
from .._typing import AnyArray
from ..errors import BanditkitError, InvalidParameterError, InvalidTypeError

Columns = dict[str, AnyArray]


def read_columns(source: Any) -> Columns:
    """Columns of ``source`` as numpy arrays (numbers as float/int, text as object arrays)."""
    if isinstance(source, (str, Path)):
        return _read_path(Path(source))
    if isinstance(source, Mapping):
        return {str(name): _to_numpy(values) for name, values in source.items()}
    names = _column_names(source)
    if names is None:
        raise InvalidTypeError(
            "log must be a path, a DataFrame, a pyarrow Table or a mapping of column -> array, "
            f"got {type(source).__name__}"
        )
    return {str(name): _to_numpy(_column(source, name)) for name in names}


def _column_names(frame: Any) -> list[str] | None:
    if hasattr(frame, "column_names"):  # pyarrow.Table
        return list(frame.column_names)
    if hasattr(frame, "columns") and hasattr(frame, "__getitem__"):  # pandas, polars
        return [str(name) for name in frame.columns]
    return None


def _column(frame: Any, name: str) -> Any:
    if hasattr(frame, "column_names"):
        return frame.column(name)
    return frame[name]


def _to_numpy(values: Any) -> AnyArray:
    """A column as a numpy array; list columns become object arrays of lists."""
    if isinstance(values, np.ndarray):
        return values
    if hasattr(values, "combine_chunks"):  # pyarrow.ChunkedArray
        values = values.combine_chunks()
    if hasattr(values, "to_pylist") and hasattr(values, "type"):  # pyarrow.Array
        return _arrow_to_numpy(values)
    if hasattr(values, "to_list") and hasattr(values, "dtype") and str(values.dtype).startswith("List"):
        return _object_array(values.to_list())  # polars list column
    if hasattr(values, "to_numpy"):  # pandas / polars Series
        array = values.to_numpy()
        if array.dtype.kind == "O" or array.dtype.kind in "UT" or str(array.dtype).startswith("str"):
            return _object_array(list(array))
        return np.asarray(array)
    array = np.asarray(values)
    return _object_array(list(values)) if array.dtype.kind in "OU" else array


def _arrow_to_numpy(array: Any) -> AnyArray:
    import pyarrow as pa

    kind = array.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _object_array(array.to_pylist())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
        return _object_array(array.to_pylist())
    if array.null_count and (pa.types.is_integer(kind) or pa.types.is_boolean(kind)):
        return np.array([math.nan if v is None else float(v) for v in array.to_pylist()])
    values: AnyArray = array.to_numpy(zero_copy_only=False)
    return values


def _object_array(items: list[Any]) -> AnyArray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _read_path(path: Path) -> Columns:
    if not path.exists():
        raise InvalidParameterError(f"log file {str(path)!r} does not exist")
    if path.is_dir():
        return _read_parquet_folder(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        parquet = pyarrow_module("pyarrow.parquet", "read a Parquet log")
        return read_columns(parquet.read_table(path))
    if suffix in (".csv", ".txt"):
        return read_csv(path)
    raise InvalidParameterError(f"log file must end in .csv or .parquet, got {path.name!r}")


def _read_parquet_folder(path: Path) -> Columns:
    """Every ``*.parquet`` file under ``path`` (partition folders included) in path order, as one table.

    Files and folders whose name starts with ``.`` or ``_`` (temporary files, ``_SUCCESS`` markers) are
    skipped, as Hive and Spark do. The archive's paths sort by experiment, date and first stream id, so
    rows come back in the order they were logged. Columns are read from the files, not from the folder
    names, so a file's own ``experiment`` column is kept as written.
    """
    files = parquet_files(path)
    pa = pyarrow_module("pyarrow", "read a folder of Parquet files")
    parquet = pyarrow_module("pyarrow.parquet", "read a folder of Parquet files")
    tables = [parquet.read_table(file) for file in files]
    try:
        table = pa.concat_tables(tables, promote_options="default")
    except pa.ArrowInvalid as error:
        raise InvalidParameterError(f"log folder {str(path)!r}: files have incompatible columns: {error}") from None
    return read_columns(table)


def parquet_files(path: Path) -> list[Path]:
    """A Parquet log's files: the file itself, or a folder's ``*.parquet`` in path order (``.``/``_`` skipped)."""
    if path.is_file():
        return [path]
    files = [
        file
        for file in sorted(path.rglob("*.parquet"))
        if not any(part.startswith((".", "_")) for part in file.relative_to(path).parts)
    ]
    if not files:
        raise InvalidParameterError(f"log folder {str(path)!r} holds no .parquet files")
    return files


def pyarrow_module(name: str, purpose: str) -> ModuleType:
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise BanditkitError(f"pyarrow is needed to {purpose}: pip install 'banditkit[io]'") from error


def read_csv(path: Path) -> Columns:
    """Read a CSV with pyarrow when installed, else with the standard library (numbers parsed per column).

    Text cells the decision log export escaped for spreadsheets (``'=1+1``, see :mod:`banditkit._csv`) are read
    back as they were logged (``=1+1``).
    """
    try:
        import pyarrow.csv as pa_csv
    except ImportError:
        pa_csv = None
    if pa_csv is not None:
        # A quoted cell may hold a line break (a client's unit can): the log export writes it, so read it.
        columns = read_columns(pa_csv.read_csv(path, parse_options=pa_csv.ParseOptions(newlines_in_values=True)))
        return {name: _unescaped(values) if values.dtype == object else values for name, values in columns.items()}
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise InvalidParameterError(f"log file {str(path)!r} is empty")
    header, body = rows[0], rows[1:]
    return {name: _parse_text_column([row[j] if j < len(row) else "" for row in body]) for j, name in enumerate(header)}


def _parse_text_column(texts: list[str]) -> AnyArray:
    """Integers, else floats (empty -> NaN), else the text itself (unescaped)."""
    for parse in (_parse_ints, _parse_floats):
        try:
            return parse(texts)
        except ValueError:
            continue
    return _unescaped(_object_array(texts))


def _unescaped(texts: AnyArray) -> AnyArray:
    """A text column with the spreadsheet escaping of the log export undone (other values as they are)."""
    return _object_array([unescape_cell(text) if isinstance(text, str) else text for text in texts])


def _parse_ints(texts: list[str]) -> np.ndarray:
    return np.array([int(text) for text in texts], dtype=np.int64)


def _parse_floats(texts: list[str]) -> np.ndarray:
    return np.array([float(text) if text.strip() else math.nan for text in texts], dtype=np.float64)

"""Offline evaluation of a Parquet log larger than memory: one chunk of rows at a time.

:func:`banditkit.ope.evaluate` streams a Parquet file or folder of partitions
(the decision service's archive) when given ``chunk_rows=``, or by itself when
the files hold more than ``STREAM_ROWS`` rows. Every estimate is a ratio of
sums over rows, so each chunk adds its totals (:class:`TermTotals`) and its
Poisson-bootstrap sums; the bootstrap counts and the cross-fitting folds are
hashes of the row's index in the log, so the chunks reproduce the in-memory
draws and the report equals the in-memory one (to float rounding).

Passes over the files: one that reads the ``arm`` (and ``position``,
``experiment``, ``reward``) columns for the arm vocabulary and the row count,
one that fits DM/DR's ridge reward model from streamed per-(fold, arm)
sufficient statistics (exact: the same model as in memory), and the one that
sums the estimators. pyarrow reads the files batch by batch, so memory is
bounded by ``chunk_rows``, not by the log.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._typing import FloatArray
from .._validation import check_int
from ..errors import BanditkitError, InvalidParameterError
from . import estimators as est
from ._io import parquet_files, pyarrow_module
from .bootstrap import draw_key, keyed_bootstrap_sums
from .logs import LoggedData, load_log
from .per_row import MODEL_BASED, estimator_terms, model_features
from .report import Estimate
from .reward_model import RidgeRewardModel, fold_coefficients, predict_folds, ridge_statistics, row_folds
from .targets import RowTarget, resolve_target

#: A Parquet log with more rows than this streams even without ``chunk_rows``.
STREAM_ROWS = 5_000_000
#: Rows per chunk when streaming is chosen by size.
DEFAULT_CHUNK_ROWS = 262_144


@dataclass(frozen=True)
class Layout:
    """What the first pass learns: files, the arm vocabulary, positions present and rows kept."""

    files: tuple[Path, ...]
    columns: tuple[str, ...]
    arm_names: tuple[str, ...]
    named_arms: bool
    position_rows: tuple[int, ...]
    n_rows: int

    @property
    def n_positions(self) -> int:
        return max(len(self.position_rows), 1)


def streams(log: Any, chunk_rows: int | None) -> bool:
    """True when ``evaluate`` should stream ``log``: ``chunk_rows`` given, or a Parquet path above ``STREAM_ROWS``."""
    path = Path(log) if isinstance(log, (str, Path)) else None
    parquet = path is not None and path.exists() and (path.is_dir() or path.suffix.lower() in (".parquet", ".pq"))
    if chunk_rows is not None:
        check_int("chunk_rows", chunk_rows, low=1)
        if not parquet:
            raise InvalidParameterError(
                f"chunk_rows streams a Parquet file or folder; log must be such a path, got {type(log).__name__}"
            )
        return True
    if not parquet:
        return False
    assert path is not None
    parquet_module = pyarrow_module("pyarrow.parquet", "read a Parquet log")
    rows = sum(int(parquet_module.read_metadata(file).num_rows) for file in parquet_files(path))
    return rows > STREAM_ROWS


def scan_layout(path: Path, drop_unrewarded: bool) -> Layout:
    """Check the files' schemas agree and read the arm vocabulary, the positions and the row count."""
    pa = pyarrow_module("pyarrow", "stream a Parquet log")
    compute = pyarrow_module("pyarrow.compute", "stream a Parquet log")
    parquet = pyarrow_module("pyarrow.parquet", "stream a Parquet log")
    files = parquet_files(path)
    schema = parquet.read_schema(files[0])
    for name in ("arm", "reward", "propensity"):
        if name not in schema.names:
            raise InvalidParameterError(
                f"log file {str(files[0])!r} has no {name!r} column; columns are {schema.names}"
            )
    for file in files[1:]:
        other = parquet.read_schema(file)
        for field in schema:
            if field.name not in other.names:
                raise InvalidParameterError(
                    f"log file {str(file)!r} has no {field.name!r} column, which {str(files[0])!r} has: "
                    "the partitions of a log must share one schema"
                )
            if not other.field(field.name).type.equals(field.type):
                raise InvalidParameterError(
                    f"log file {str(file)!r}: column {field.name!r} is {other.field(field.name).type}, "
                    f"but {field.type} in {str(files[0])!r}: the partitions of a log must share one schema"
                )
        extra = sorted(set(other.names) - set(schema.names))
        if extra:
            raise InvalidParameterError(
                f"log file {str(file)!r} has columns {extra} that {str(files[0])!r} lacks: "
                "the partitions of a log must share one schema"
            )
    named = not pa.types.is_integer(schema.field("arm").type)
    wanted = [c for c in ("arm", "position", "experiment", "reward") if c in schema.names]
    labels: set[Any] = set()
    largest, n_rows = -1, 0
    experiments: set[str] = set()
    position_rows = np.zeros(0, dtype=np.int64)
    for file in files:
        for batch in parquet.ParquetFile(file).iter_batches(batch_size=DEFAULT_CHUNK_ROWS, columns=wanted):
            if drop_unrewarded:
                reward = batch.column("reward").cast(pa.float64())
                batch = batch.filter(compute.and_(compute.is_valid(reward), compute.invert(compute.is_nan(reward))))
            n_rows += batch.num_rows
            arms = batch.column("arm")
            if named:
                labels.update(str(v) for v in compute.unique(arms).to_pylist() if v is not None)
            elif batch.num_rows:
                largest = max(largest, int(compute.max(arms).as_py() or 0))
            if "experiment" in wanted:
                experiments.update(str(v) for v in compute.unique(batch.column("experiment")).to_pylist())
            if "position" in wanted and batch.num_rows:
                values = batch.column("position").to_numpy(zero_copy_only=False)
                if values.dtype.kind in "iu" and values.min() >= 0:  # else the chunk's validation names the row
                    counts = np.bincount(values)
                    position_rows = np.pad(position_rows, (0, max(0, counts.shape[0] - position_rows.shape[0])))
                    position_rows[: counts.shape[0]] += counts
    if len(experiments) > 1:
        raise InvalidParameterError(f"log holds several experiments {sorted(experiments)}; stream one at a time")
    if n_rows == 0:
        raise InvalidParameterError("log has no rows to evaluate")
    if named and "probabilities" in schema.names:
        raise InvalidParameterError(
            "a streamed log with arm names and a 'probabilities' column cannot take the arm order from that "
            "column; evaluate it in memory (chunk_rows=None) or log integer arms"
        )
    names = tuple(sorted(labels)) if named else tuple(str(i) for i in range(largest + 1))
    return Layout(tuple(files), tuple(schema.names), names, named, tuple(int(c) for c in position_rows), n_rows)


def chunks(layout: Layout, chunk_rows: int, drop_unrewarded: bool) -> Iterator[tuple[Path, LoggedData]]:
    """The log's rows as validated chunks of at most ``chunk_rows``, with their file; errors name the file and row."""
    parquet = pyarrow_module("pyarrow.parquet", "stream a Parquet log")
    for file in layout.files:
        first_row = 0
        for batch in parquet.ParquetFile(file).iter_batches(batch_size=chunk_rows):
            try:
                chunk = load_log(
                    batch,
                    arms=layout.arm_names if layout.named_arms else None,
                    drop_unrewarded=drop_unrewarded,
                    first_row=first_row,
                )
            except BanditkitError as error:
                raise type(error)(f"log file {str(file)!r}: {error}") from None
            first_row += batch.num_rows
            yield file, replace(chunk, arm_names=layout.arm_names)


def target_rows(target: Any, chunk: LoggedData, file: Path) -> RowTarget:
    """The target's distribution on a chunk's rows; an error names the chunk's file."""
    try:
        return resolve_target(target, chunk)
    except BanditkitError as error:
        raise type(error)(f"log file {str(file)!r}: {error}") from None


def evaluate_streamed(
    path: Path,
    target: Any,
    names: Sequence[str],
    generator: np.random.Generator,
    *,
    reward_model: Any,
    n_folds: int,
    n_bootstrap: int,
    confidence: float,
    clip_weight: float,
    switch_weight: float,
    chunk_rows: int,
    drop_unrewarded: bool,
) -> tuple[dict[str, Estimate], dict[int, dict[str, Estimate]], str, str | None, int]:
    """Estimates and per-position estimates of a streamed log, how it was read, the reward-model note, rows.

    Draws from ``generator`` in the order the in-memory path does: the folds' key, then one bootstrap key
    for the whole log and one per position present.
    """
    layout = scan_layout(path, drop_unrewarded)
    model_based = bool(MODEL_BASED & set(names))
    coefficients = None
    note = None
    if model_based:
        if reward_model is not None and not isinstance(reward_model, RidgeRewardModel):
            raise InvalidParameterError(
                "a streamed log fits DM/DR's reward model as a ridge regression per arm from streamed sufficient "
                f"statistics; reward_model must be a RidgeRewardModel, got {type(reward_model).__name__} "
                "(evaluate in memory for a scikit-learn model)"
            )
        model = reward_model or RidgeRewardModel()
        n_folds = min(check_int("n_folds", n_folds, low=2), layout.n_rows)
        if n_folds < 2:
            raise InvalidParameterError(f"cross-fitting needs at least 2 logged rows, got {layout.n_rows}")
        fold_key = draw_key(generator)
        coefficients = _streamed_ridge(layout, target, model.l2, n_folds, fold_key, chunk_rows, drop_unrewarded)
        note = (
            f"ridge per arm (l2={model.l2:g}), {n_folds}-fold cross-fitted from sufficient statistics streamed "
            f"over all {layout.n_rows:,} rows (exact, as in memory)"
        )
    keys = [draw_key(generator) if n_bootstrap else 0 for _ in range(1 + len(_present(layout)))]
    totals: list[est.TermTotals | None] = [None] * len(names)
    sums = np.zeros((n_bootstrap, 2 * len(names)))
    positions = _present(layout)
    position_totals: dict[int, list[est.TermTotals | None]] = {p: [None] * len(names) for p in positions}
    position_sums = {p: np.zeros((n_bootstrap, 2 * len(names))) for p in positions}
    position_offsets = dict.fromkeys(positions, 0)
    first_row, n_chunks = 0, 0
    for file, chunk in chunks(layout, chunk_rows, drop_unrewarded):
        rows = target_rows(target, chunk, file)
        predictions = None
        if coefficients is not None:
            features = model_features(chunk, layout.n_positions)
            predictions = predict_folds(coefficients, features, row_folds(fold_key, first_row, chunk.n_rows, n_folds))
        terms = [
            estimator_terms(
                name, chunk, rows.probabilities, rows.arms, predictions, generator, clip_weight, switch_weight
            )
            for name in names
        ]
        _add(totals, sums, terms, keys[0], first_row)
        for index, position in enumerate(positions):
            mask: np.ndarray = np.asarray(chunk.positions) == position
            if mask.any():
                offset = position_offsets[position]
                subset = [t.subset(mask) for t in terms]
                _add(position_totals[position], position_sums[position], subset, keys[1 + index], offset)
                position_offsets[position] += int(mask.sum())
        first_row += chunk.n_rows
        n_chunks += 1
    estimates = _estimates(totals, sums if n_bootstrap else None, confidence)
    by_position = {
        p: _estimates(position_totals[p], position_sums[p] if n_bootstrap else None, confidence) for p in positions
    }
    source = (
        f"streamed: {layout.n_rows:,} rows from {len(layout.files)} Parquet file"
        f"{'s' if len(layout.files) != 1 else ''} in {n_chunks} chunks of at most {chunk_rows:,} rows"
    )
    return estimates, by_position, source, note, layout.n_rows


def _present(layout: Layout) -> list[int]:
    """Positions with rows, when the log has several (per-position estimates as in memory)."""
    if layout.n_positions <= 1:
        return []
    return [p for p, count in enumerate(layout.position_rows) if count]


def _add(
    totals: list[est.TermTotals | None], sums: FloatArray, terms: list[est.Terms], key: int, first_row: int
) -> None:
    """Add a chunk's totals and bootstrap sums (rows numbered from ``first_row``) into the running ones."""
    for j, term in enumerate(terms):
        chunk_totals = term.totals()
        previous = totals[j]
        totals[j] = chunk_totals if previous is None else previous + chunk_totals
    if sums.shape[0]:
        keyed_bootstrap_sums(est.bootstrap_columns(terms), sums.shape[0], key, first_row=first_row, out=sums)


def _estimates(totals: list[est.TermTotals | None], sums: FloatArray | None, confidence: float) -> dict[str, Estimate]:
    out = {}
    for j, term_totals in enumerate(totals):
        assert term_totals is not None, "every estimator saw at least one chunk"
        estimate = est.estimate_from(term_totals, None if sums is None else sums[:, 2 * j : 2 * j + 2], confidence)
        out[estimate.estimator] = estimate
    return out


def _streamed_ridge(
    layout: Layout,
    target: Any,
    l2: float,
    n_folds: int,
    fold_key: int,
    chunk_rows: int,
    drop_unrewarded: bool,
) -> tuple[FloatArray, FloatArray]:
    """Per-fold ridge coefficients from per-(fold, arm) statistics summed over the chunks."""
    gram: FloatArray | None = None
    moments: FloatArray | None = None
    first_row = 0
    for file, chunk in chunks(layout, chunk_rows, drop_unrewarded):
        rows = target_rows(target, chunk, file)
        folds = row_folds(fold_key, first_row, chunk.n_rows, n_folds)
        features = model_features(chunk, layout.n_positions)
        chunk_gram, chunk_moments = ridge_statistics(
            features, rows.arms, chunk.rewards, folds, rows.probabilities.shape[1], n_folds
        )
        gram = chunk_gram if gram is None else gram + chunk_gram
        moments = chunk_moments if moments is None else moments + chunk_moments
        first_row += chunk.n_rows
    assert gram is not None and moments is not None, "the layout pass found rows"
    return fold_coefficients(gram, moments, l2)

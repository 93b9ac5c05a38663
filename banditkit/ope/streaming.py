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
sufficient statistics (exact: the same model as in memory; with ``model_rows``
it reads only the log's first ``model_rows`` rows), and the one that sums the
estimators. pyarrow reads the files batch by batch, so memory is bounded by
``chunk_rows``, not by the log; every pass decodes and validates the next chunk
in a background thread while it sums the current one (:func:`prefetched`).
"""

from __future__ import annotations

import inspect
import queue
import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .._typing import FloatArray, IntArray
from .._validation import check_int
from ..errors import BanditkitError, InvalidParameterError
from . import estimators as est
from ._io import parquet_files, pyarrow_module
from .bootstrap import draw_key, keyed_bootstrap_sums
from .logs import LoggedData, load_log
from .per_row import MODEL_BASED, estimator_terms, model_features
from .report import Estimate
from .reward_model import (
    CrossedRidgeRewardModel,
    RidgeRewardModel,
    check_reward_model,
    crossed_features,
    crossed_fold_coefficients,
    crossed_statistics,
    default_model,
    describe_model,
    fold_coefficients,
    fold_count,
    fresh_copy,
    predict_crossed_folds,
    predict_every_arm,
    predict_expected,
    predict_folds,
    ridge_statistics,
    sample_folds,
    sample_note,
    target_action_features,
)
from .targets import RowTarget, resolve_target

#: A Parquet log with more rows than this streams even without ``chunk_rows``.
STREAM_ROWS = 5_000_000
#: Rows per chunk when streaming is chosen by size.
DEFAULT_CHUNK_ROWS = 262_144
#: Most distinct reward values the layout pass keeps (the classes a streamed classifier is told of).
MAX_REWARD_VALUES = 256


@dataclass(frozen=True)
class Layout:
    """What the first pass learns: files, the arm vocabulary, positions present and rows kept."""

    files: tuple[Path, ...]
    columns: tuple[str, ...]
    arm_names: tuple[str, ...]
    named_arms: bool
    position_rows: tuple[int, ...]
    n_rows: int
    #: Distinct rewards (sorted) when there are at most MAX_REWARD_VALUES of them, else empty: a classifier's classes.
    #: None when the layout came from the files' statistics: :func:`distinct_rewards` reads them if needed.
    reward_values: tuple[float, ...] | None = ()

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
    """Check the files' schemas agree and read the arm vocabulary, the positions and the row count.

    A log of integer arms with neither positions nor an experiment column, read whole, needs no column:
    its row count is in the files' metadata and its largest arm in the ``arm`` column's row-group
    statistics (exact for integers). Otherwise, or when a row group has no statistics, the ``arm``,
    ``reward`` and (when present) ``position`` and ``experiment`` columns are read.
    """
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
    if not (named or drop_unrewarded or {"position", "experiment"} & set(schema.names)):
        layout = _layout_from_statistics(files, schema.names)
        if layout is not None:
            return layout
    wanted = [c for c in ("arm", "position", "experiment", "reward") if c in schema.names]
    labels: set[Any] = set()
    largest, n_rows = -1, 0
    experiments: set[str] = set()
    rewards_seen: set[float] = set()
    position_rows = np.zeros(0, dtype=np.int64)
    for file in files:
        for batch in parquet.ParquetFile(file).iter_batches(batch_size=DEFAULT_CHUNK_ROWS, columns=wanted):
            if drop_unrewarded:
                reward = batch.column("reward").cast(pa.float64())
                batch = batch.filter(compute.and_(compute.is_valid(reward), compute.invert(compute.is_nan(reward))))
            n_rows += batch.num_rows
            _add_rewards(rewards_seen, batch.column("reward"))
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
    reward_values = tuple(sorted(rewards_seen)) if len(rewards_seen) <= MAX_REWARD_VALUES else ()
    return Layout(
        tuple(files), tuple(schema.names), names, named, tuple(int(c) for c in position_rows), n_rows, reward_values
    )


Item = TypeVar("Item")


def prefetched(items: Iterator[Item]) -> Generator[Item, None, None]:
    """``items`` made one ahead in a background thread: the next chunk is read while this one is summed.

    pyarrow's decoding and numpy's large operations release the GIL, so on two cores reading a chunk
    and computing on the previous one overlap. At most two items are alive at a time (the one handed
    out and the next one being made); an exception of ``items`` is raised where it occurs in the
    sequence, after the items before it; a consumer that stops early stops the thread.

    Examples
    --------
    >>> list(prefetched(iter(range(4))))
    [0, 1, 2, 3]
    """
    handoff: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue()
    turn = threading.Semaphore(1)  # the consumer's leave to make one more item
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            while turn.acquire() and not stop.is_set():
                try:
                    item = next(items)
                except StopIteration:
                    handoff.put((done, None))
                    return
                except BaseException as error:  # handed to the consumer, raised there in order
                    handoff.put((done, error))
                    return
                handoff.put((item, None))
                del item
        finally:
            close = getattr(items, "close", None)
            if callable(close):
                close()

    thread = threading.Thread(target=produce, name="banditkit-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = handoff.get()
            if item is done:
                if error is not None:
                    raise error
                return
            turn.release()
            yield item
            del item
    finally:
        stop.set()
        turn.release()
        thread.join()


def _layout_from_statistics(files: list[Path], columns: list[str]) -> Layout | None:
    """The layout of a log of integer arms from the files' metadata alone; None when a row group lacks statistics."""
    parquet = pyarrow_module("pyarrow.parquet", "stream a Parquet log")
    largest, n_rows = -1, 0
    for file in files:
        metadata = parquet.read_metadata(file)
        arm = metadata.schema.names.index("arm")
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            if not row_group.num_rows:
                continue
            statistics = row_group.column(arm).statistics
            if statistics is None or not statistics.has_min_max:
                return None
            largest = max(largest, int(statistics.max))
            n_rows += row_group.num_rows
    if n_rows == 0:
        raise InvalidParameterError("log has no rows to evaluate")
    names = tuple(str(i) for i in range(largest + 1))
    return Layout(tuple(files), tuple(columns), names, False, (), n_rows, None)


def _add_rewards(seen: set[float], rewards: Any) -> None:
    """Add a batch's distinct rewards to ``seen`` until it holds more than MAX_REWARD_VALUES of them."""
    if len(seen) <= MAX_REWARD_VALUES:
        pa = pyarrow_module("pyarrow", "stream a Parquet log")
        compute = pyarrow_module("pyarrow.compute", "stream a Parquet log")
        values = compute.unique(rewards.cast(pa.float64())).to_pylist()
        seen.update(float(v) for v in values if v is not None and v == v)


def distinct_rewards(layout: Layout) -> tuple[float, ...]:
    """The log's distinct rewards (sorted; empty when more than MAX_REWARD_VALUES): a classifier's classes.

    Read from the ``reward`` column when the layout pass did not (a layout from the files' statistics,
    which covers whole logs only, so no row is dropped).
    """
    if layout.reward_values is not None:
        return layout.reward_values
    parquet = pyarrow_module("pyarrow.parquet", "stream a Parquet log")
    seen: set[float] = set()
    for file in layout.files:
        for batch in parquet.ParquetFile(file).iter_batches(batch_size=DEFAULT_CHUNK_ROWS, columns=["reward"]):
            _add_rewards(seen, batch.column("reward"))
    return tuple(sorted(seen)) if len(seen) <= MAX_REWARD_VALUES else ()


def chunks(layout: Layout, chunk_rows: int, drop_unrewarded: bool) -> Iterator[tuple[str, LoggedData]]:
    """The log's rows as validated chunks of at most ``chunk_rows``, with their file named as errors name it.

    Errors name the file and row.

    Read and validated one chunk ahead in a background thread (:func:`prefetched`).
    """
    return prefetched(_read_chunks(layout, chunk_rows, drop_unrewarded))


def _read_chunks(layout: Layout, chunk_rows: int, drop_unrewarded: bool) -> Iterator[tuple[str, LoggedData]]:
    parquet = pyarrow_module("pyarrow.parquet", "stream a Parquet log")
    for file in layout.files:
        where = f"log file {str(file)!r}"
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
                raise type(error)(f"{where}: {error}") from None
            first_row += batch.num_rows
            yield where, replace(chunk, arm_names=layout.arm_names)


def target_rows(target: Any, chunk: LoggedData, where: str) -> RowTarget:
    """The target's distribution on a chunk's rows; an error begins with ``where`` (the chunk's file or rows)."""
    try:
        return resolve_target(target, chunk)
    except BanditkitError as error:
        raise type(error)(f"{where}: {error}") from None


def evaluate_streamed(
    path: Path,
    target: Any,
    names: Sequence[str],
    generator: np.random.Generator,
    *,
    reward_model: Any,
    action_features: Any,
    n_folds: int,
    n_bootstrap: int,
    confidence: float,
    clip_weight: float,
    switch_weight: float,
    chunk_rows: int,
    drop_unrewarded: bool,
    model_rows: int | None = None,
) -> tuple[dict[str, Estimate], dict[int, dict[str, Estimate]], str, str | None, int]:
    """Estimates and per-position estimates of a streamed log, how it was read, the reward-model note, rows.

    Draws from ``generator`` in the order the in-memory path does: the folds' key, then one bootstrap key
    for the whole log and one per position present. ``model_rows``: the reward model is fitted on the
    log's first ``model_rows`` rows (validated by ``evaluate``), as in memory.
    """
    layout = scan_layout(path, drop_unrewarded)
    model_based = bool(MODEL_BASED & set(names))
    predictor: Predictor | None = None
    note = None
    sample_rows = layout.n_rows if model_rows is None else min(model_rows, layout.n_rows)
    if model_based:
        n_folds = fold_count(n_folds, sample_rows, layout.n_rows)
        fold_key = draw_key(generator)
        fit = FitPass(layout, target, n_folds, fold_key, chunk_rows, drop_unrewarded, action_features, sample_rows)
        predictor, note = streamed_reward_model(default_model(reward_model, action_features), fit)
    positions = _present(layout)
    keys = [draw_key(generator) if n_bootstrap else 0 for _ in range(1 + len(positions))]
    summed = Sums.zero(len(names), n_bootstrap, positions)
    position_offsets = dict.fromkeys(positions, 0)
    first_row, n_chunks = 0, 0
    for where, chunk in chunks(layout, chunk_rows, drop_unrewarded):
        rows = target_rows(target, chunk, where)
        predictions = None
        if predictor is not None:
            features = model_features(chunk, layout.n_positions)
            predictions = predictor(features, sample_folds(fold_key, first_row, chunk.n_rows, n_folds, sample_rows))
        terms = [
            estimator_terms(
                name, chunk, rows.probabilities, rows.arms, predictions, generator, clip_weight, switch_weight
            )
            for name in names
        ]
        for position, rows_added in summed.add(terms, chunk.positions, keys, first_row, position_offsets).items():
            position_offsets[position] += rows_added
        first_row += chunk.n_rows
        n_chunks += 1
    estimates, by_position = summed.estimates(confidence)
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


@dataclass
class Sums:
    """The estimators' running totals and bootstrap sums over a log's chunks: the whole log's and each position's.

    A streamed pass adds its chunks in; the sums of parts of a log (Spark's partitions) combine with ``+=``.
    """

    totals: list[est.TermTotals | None]
    sums: FloatArray
    position_totals: dict[int, list[est.TermTotals | None]]
    position_sums: dict[int, FloatArray]

    @classmethod
    def zero(cls, n_estimators: int, n_bootstrap: int, positions: Sequence[int]) -> Sums:
        """Nothing added yet, for ``n_estimators`` estimators, ``n_bootstrap`` resamples and these positions."""
        return cls(
            [None] * n_estimators,
            np.zeros((n_bootstrap, 2 * n_estimators)),
            {p: [None] * n_estimators for p in positions},
            {p: np.zeros((n_bootstrap, 2 * n_estimators)) for p in positions},
        )

    def add(
        self,
        terms: list[est.Terms],
        positions: IntArray | None,
        keys: Sequence[int],
        first_row: int,
        position_offsets: Mapping[int, int],
    ) -> dict[int, int]:
        """Add a chunk's terms; the rows it added per position.

        The chunk's rows are numbered from ``first_row`` in the whole log (bootstrap key ``keys[0]``) and from
        ``position_offsets[p]`` among the rows of position ``p`` (key ``keys[1 + i]`` for the i-th position).
        """
        _add(self.totals, self.sums, terms, keys[0], first_row)
        added = {}
        for index, position in enumerate(self.position_totals):
            mask: np.ndarray = np.asarray(positions) == position
            if mask.any():
                subset = [t.subset(mask) for t in terms]
                offset = position_offsets[position]
                _add(self.position_totals[position], self.position_sums[position], subset, keys[1 + index], offset)
                added[position] = int(mask.sum())
        return added

    def __iadd__(self, other: Sums) -> Sums:
        self.totals = _plus(self.totals, other.totals)
        self.sums += other.sums
        for p, sums in other.position_sums.items():
            self.position_totals[p] = _plus(self.position_totals[p], other.position_totals[p])
            self.position_sums[p] += sums
        return self

    def estimates(self, confidence: float) -> tuple[dict[str, Estimate], dict[int, dict[str, Estimate]]]:
        """The estimates of the whole log, and per position; intervals from the resamples when there are any."""
        resampled = self.sums.shape[0] > 0
        estimates = _estimates(self.totals, self.sums if resampled else None, confidence)
        by_position = {
            p: _estimates(totals, self.position_sums[p] if resampled else None, confidence)
            for p, totals in self.position_totals.items()
        }
        return estimates, by_position


def _plus(totals: list[est.TermTotals | None], more: list[est.TermTotals | None]) -> list[est.TermTotals | None]:
    return [b if a is None else (a if b is None else a + b) for a, b in zip(totals, more, strict=True)]


def _add(
    totals: list[est.TermTotals | None], sums: FloatArray, terms: list[est.Terms], key: int, first_row: int
) -> None:
    """Add a chunk's totals and bootstrap sums (rows numbered from ``first_row``) into the running ones."""
    totals[:] = _plus(totals, [term.totals() for term in terms])
    if sums.shape[0]:
        keyed_bootstrap_sums(est.bootstrap_columns(terms), sums.shape[0], key, first_row=first_row, out=sums)


def _estimates(totals: list[est.TermTotals | None], sums: FloatArray | None, confidence: float) -> dict[str, Estimate]:
    out = {}
    for j, term_totals in enumerate(totals):
        assert term_totals is not None, "every estimator saw at least one chunk"
        estimate = est.estimate_from(term_totals, None if sums is None else sums[:, 2 * j : 2 * j + 2], confidence)
        out[estimate.estimator] = estimate
    return out


Predictor = Callable[[FloatArray, IntArray], FloatArray]


@dataclass(frozen=True)
class FitPass:
    """What a reward model's pass over a streamed log needs: the layout, the target, the folds' key, the sample.

    The model is fitted on the log's first ``sample_rows`` rows (all of them by default), the only rows
    this pass reads.
    """

    layout: Layout
    target: Any
    n_folds: int
    fold_key: int
    chunk_rows: int
    drop_unrewarded: bool
    action_features: Any
    sample_rows: int

    @property
    def n_groups(self) -> int:
        """The folds, plus one group for the rows after the sample when it is not the whole log."""
        return self.n_folds + (self.sample_rows < self.layout.n_rows)

    def chunks(self) -> Iterator[tuple[FloatArray, IntArray, FloatArray, IntArray, FloatArray | None, int]]:
        """Per chunk of the sample: model features, target arm columns, rewards, folds, action features, K."""
        first_row = 0
        for where, chunk in chunks(self.layout, self.chunk_rows, self.drop_unrewarded):
            rows = target_rows(self.target, chunk, where)
            z = target_action_features(self.action_features, self.layout.arm_names, rows.arm_names)
            n = min(chunk.n_rows, self.sample_rows - first_row)
            folds = sample_folds(self.fold_key, first_row, n, self.n_folds, self.sample_rows)
            features = model_features(chunk, self.layout.n_positions)[:n]
            yield features, rows.arms[:n], chunk.rewards[:n], folds, z, rows.probabilities.shape[1]
            first_row += n
            if first_row >= self.sample_rows:
                return


def streamed_reward_model(model: Any, fit: FitPass) -> tuple[Predictor, str]:
    """Fit DM/DR's cross-fitted reward model in one pass over the chunks; the per-chunk predictor and its note.

    The ridge models add per-fold sufficient statistics over the chunks (exact: the model fitted in
    memory). Any other model must have ``partial_fit``: one copy per fold (per (fold, arm) without
    action features) is updated with each chunk's rows of the other folds, a one-pass online fit that
    differs from the in-memory ``fit``. A classifier's ``partial_fit`` is told the log's distinct rewards
    as ``classes``.
    """
    check_reward_model(model)
    n_folds, seen = fit.n_folds, sample_note(fit.sample_rows, fit.layout.n_rows)
    described = describe_model(model, fit.action_features)
    exact = (
        f"{described}, {n_folds}-fold cross-fitted from sufficient statistics streamed over {seen} "
        "(exact, as in memory)"
    )
    if isinstance(model, RidgeRewardModel):
        ridge = _streamed_ridge(fit, model.l2)
        return (lambda features, folds: predict_folds(ridge, features, folds)), exact
    if isinstance(model, CrossedRidgeRewardModel):
        crossed, z = _streamed_crossed(fit, model.l2)
        return (lambda features, folds: predict_crossed_folds(crossed, features, folds, z)), exact
    if not callable(getattr(model, "partial_fit", None)):
        raise InvalidParameterError(
            f"a streamed log fits DM/DR's reward model chunk by chunk: {type(model).__name__} has no partial_fit "
            "(use RidgeRewardModel, CrossedRidgeRewardModel or an estimator with partial_fit such as "
            "SGDRegressor, or evaluate in memory with chunk_rows=None)"
        )
    online = OnlineCopies(model, distinct_rewards(fit.layout) if _takes_classes(model) else ())
    for features, arms, rewards, folds, item_features, n_arms in fit.chunks():
        online.update(features, arms, rewards, folds, item_features, n_arms, fit.n_groups)
    note = f"{n_folds}-fold cross-fitted by partial_fit in one pass over {seen} (an online fit)"
    return online.predict, f"{described}, {note}"


def _takes_classes(model: Any) -> bool:
    """Whether ``model.partial_fit`` takes ``classes`` (a classifier, told the log's distinct rewards up front)."""
    return "classes" in inspect.signature(model.partial_fit).parameters


class OnlineCopies:
    """Copies of a ``partial_fit`` model per fold (and per arm without action features), updated chunk by chunk."""

    def __init__(self, model: Any, reward_values: tuple[float, ...]):
        self.model = model
        takes_classes = _takes_classes(model)
        if takes_classes and not reward_values:
            raise InvalidParameterError(
                f"reward_model {type(model).__name__} is a classifier, whose partial_fit needs the classes up "
                f"front; the log has more than {MAX_REWARD_VALUES} distinct rewards"
            )
        self.classes = np.asarray(reward_values, dtype=np.float64) if takes_classes else None
        self.copies: dict[tuple[int, int], Any] = {}
        self.sums: FloatArray = np.zeros((0, 2))  # per fold: training reward sum and rows (the fallback mean)
        self.z: FloatArray | None = None
        self.n_arms = 0

    def update(
        self,
        features: FloatArray,
        arms: IntArray,
        rewards: FloatArray,
        folds: IntArray,
        z: FloatArray | None,
        n_arms: int,
        n_folds: int,
    ) -> None:
        self.z, self.n_arms = z, n_arms
        if not self.sums.shape[0]:
            self.sums = np.zeros((n_folds, 2))
        design = features if z is None else crossed_features(features, arms, z, n_arms)
        for fold in range(n_folds):
            train = folds != fold
            self.sums[fold] += (rewards[train].sum(), train.sum())
            for arm in range(n_arms) if z is None else (-1,):
                rows = train if arm < 0 else train & (arms == arm)
                if rows.any():
                    self._copy(fold, arm).partial_fit(design[rows], rewards[rows], **self._classes())

    def _classes(self) -> dict[str, FloatArray]:
        return {} if self.classes is None else {"classes": self.classes}

    def _copy(self, fold: int, arm: int) -> Any:
        if (fold, arm) not in self.copies:
            self.copies[fold, arm] = fresh_copy(self.model)
        return self.copies[fold, arm]

    def predict(self, features: FloatArray, folds: IntArray) -> FloatArray:
        predictions = np.empty((features.shape[0], self.n_arms))
        for fold in range(self.sums.shape[0]):
            rows = np.flatnonzero(folds == fold)
            if not rows.shape[0]:
                continue
            fallback = self.sums[fold, 0] / self.sums[fold, 1] if self.sums[fold, 1] else 0.0
            if self.z is None:
                for arm in range(self.n_arms):
                    fitted = self.copies.get((fold, arm))
                    predictions[rows, arm] = fallback if fitted is None else predict_expected(fitted, features[rows])
                continue
            fitted = self.copies.get((fold, -1))
            predictions[rows] = fallback if fitted is None else predict_every_arm(fitted, features[rows], self.z)
        return predictions


def _streamed_ridge(fit: FitPass, l2: float) -> tuple[FloatArray, FloatArray]:
    """Per-fold ridge coefficients from per-(fold, arm) statistics summed over the chunks."""
    gram: FloatArray | None = None
    moments: FloatArray | None = None
    for features, arms, rewards, folds, _, n_arms in fit.chunks():
        chunk_gram, chunk_moments = ridge_statistics(features, arms, rewards, folds, n_arms, fit.n_groups)
        gram = chunk_gram if gram is None else gram + chunk_gram
        moments = chunk_moments if moments is None else moments + chunk_moments
    assert gram is not None and moments is not None, "the layout pass found rows"
    return fold_coefficients(gram, moments, l2)


def _streamed_crossed(fit: FitPass, l2: float) -> tuple[tuple[FloatArray, FloatArray], FloatArray]:
    """Per-fold crossed-ridge coefficients and means from per-fold statistics summed over the chunks."""
    gram: FloatArray | None = None
    moments: FloatArray | None = None
    z: FloatArray | None = None
    n_arms = 0
    for features, arms, rewards, folds, z, n_arms in fit.chunks():
        chunk_gram, chunk_moments = crossed_statistics(features, arms, rewards, folds, fit.n_groups, z, n_arms)
        gram = chunk_gram if gram is None else gram + chunk_gram
        moments = chunk_moments if moments is None else moments + chunk_moments
    assert gram is not None and moments is not None, "the layout pass found rows"
    return crossed_fold_coefficients(gram, moments, l2), np.zeros((n_arms, 0)) if z is None else z

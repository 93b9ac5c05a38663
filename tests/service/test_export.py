"""The log export straight from a store: CSV and Parquet agree, row groups stitch back, an empty log has columns."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from banditkit.service import export
from banditkit.service.stores import DecisionRecord, ExperimentRecord, MemoryStore, RewardRecord, SQLiteStore
from banditkit.service.stores.base import RewardWork
from banditkit.service.stores.redis import RedisStore


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "redis":
        made = RedisStore(request.getfixturevalue("shared_store")[0], spool_dir=tmp_path / "spool")
    else:
        made = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "store.db")
    made.create_experiment(ExperimentRecord("hero", {}, {}, {"counts": np.zeros((1, 2))}, 0, 0.0), {}).result()
    yield made
    made.close()


def log_five(store) -> None:
    rows = [
        DecisionRecord(
            f"d{i}",
            100.0 + i / 3,
            "hero",
            f"u{i}" if i % 2 else None,
            (0.1 * i, -2.5) if i % 2 else None,
            "ab"[i % 2],
            0.2 + i / 10,
            {"a": 0.8 - i / 10, "b": 0.2 + i / 10},
            i,
            i == 4,
        )
        for i in range(5)
    ]
    store.append_decisions(rows).result()
    rewards = [RewardRecord("d1", "hero", "b", 1.0, 200.0), RewardRecord("d3", "hero", "b", 0.0, 201.0)]
    store.commit_rewards(RewardWork("hero", rewards)).result()  # recorded, not learned


def test_parquet_row_groups_hold_every_row_once(store):
    log_five(store)
    table = pq.read_table(io.BytesIO(export.parquet_bytes(store, "hero", rows_per_group=2)))
    assert pq.ParquetFile(io.BytesIO(export.parquet_bytes(store, "hero", rows_per_group=2))).num_row_groups == 3
    assert tuple(table.column_names) == export.COLUMNS
    assert [tuple(row.values()) for row in table.to_pylist()] == list(export.rows(store, "hero"))
    assert table.column("reward").to_pylist() == [None, 1.0, None, 0.0, None]
    assert table.column("fallback").to_pylist() == [False, False, False, False, True]
    assert json.loads(table.column("context").to_pylist()[3]) == [0.30000000000000004, -2.5]
    assert json.loads(table.column("probabilities").to_pylist()[2]) == {"a": 0.6000000000000001, "b": 0.4}


def test_csv_and_parquet_agree(store):
    log_five(store)
    table = pq.read_table(io.BytesIO(export.parquet_bytes(store, "hero")))
    lines = list(csv.DictReader(io.StringIO("".join(export.csv_chunks(store, "hero", rows_per_chunk=2)))))
    assert [line["decision_id"] for line in lines] == table.column("decision_id").to_pylist()
    assert [float(line["time"]) for line in lines] == table.column("time").to_pylist()
    assert [line["context"] or None for line in lines] == table.column("context").to_pylist()
    assert [line["probabilities"] for line in lines] == table.column("probabilities").to_pylist()
    assert [line["fallback"] == "true" for line in lines] == table.column("fallback").to_pylist()


def test_an_empty_log_exports_its_columns(store):
    table = pq.read_table(io.BytesIO(export.parquet_bytes(store, "hero")))
    assert tuple(table.column_names) == export.COLUMNS and table.num_rows == 0
    assert "".join(export.csv_chunks(store, "hero")) == ",".join(export.COLUMNS) + "\r\n"

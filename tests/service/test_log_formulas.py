"""The CSV log export over real HTTP: a text cell a spreadsheet would run as a formula starts with ``'``, banditkit
reads it back as logged, numbers are never touched, and Parquet keeps every value exactly."""

from __future__ import annotations

import csv
import io
import json

import httpx
import pyarrow.parquet as pq
import pytest

from banditkit.ope import load_log

#: Arms and units a client may send, spreadsheet formulas among them (and a cell that already starts with a quote).
ARMS = ["=1+1", "-10%", "+x", "@SUM(A1)", "'=quoted", "plain", "a=b"]
UNITS = ['=HYPERLINK("http://example.com","x")', "-5", "+5", "@me", "\tx", "\rx", "''-2", "'plain", "u-1"]
ESCAPED = {
    "=1+1": "'=1+1",
    "-10%": "'-10%",
    "+x": "'+x",
    "@SUM(A1)": "'@SUM(A1)",
    "'=quoted": "''=quoted",
    '=HYPERLINK("http://example.com","x")': '\'=HYPERLINK("http://example.com","x")',
    "-5": "'-5",
    "+5": "'+5",
    "@me": "'@me",
    "\tx": "'\tx",
    "\rx": "'\rx",
    "''-2": "'''-2",
}


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A served process with a log holding every arm (allowed one at a time) and every unit, each rewarded."""
    from banditkit.service import Settings
    from banditkit.service.runner import ServiceProcess

    folder = tmp_path_factory.mktemp("formulas")
    settings = Settings(
        store=f"sqlite:///{folder / 'log.db'}", port=0, tune_interpreter=False, spool_dir=folder / "spool"
    )
    with ServiceProcess(settings) as process, httpx.Client(base_url=process.base_url, timeout=30.0) as http:
        http.post("/v1/experiments", json={"name": "hero", "arms": ARMS}).raise_for_status()
        http.post(
            "/v1/experiments", json={"name": "signed", "arms": ["a", "b"], "policy": {"name": "gaussian_thompson"}}
        ).raise_for_status()
        for index, unit in enumerate(UNITS):
            arm = ARMS[index % len(ARMS)]
            decision = http.post("/v1/experiments/hero/decisions", json={"unit": unit, "allowed": [arm]}).json()
            assert decision["arm"] == arm
            rewarded = http.post(
                "/v1/experiments/hero/rewards", json={"decision_id": decision["decision_id"], "value": float(index % 2)}
            )
            rewarded.raise_for_status()
        decision = http.post("/v1/experiments/signed/decisions", json={"unit": "-7"}).json()
        http.post(
            "/v1/experiments/signed/rewards", json={"decision_id": decision["decision_id"], "value": -1.5}
        ).raise_for_status()
        yield http, folder


def csv_rows(http: httpx.Client, name: str) -> list[dict[str, str]]:
    response = http.get(f"/v1/experiments/{name}/log", params={"format": "csv"})
    assert response.status_code == 200
    return list(csv.DictReader(io.StringIO(response.text, newline="")))


def test_formula_cells_start_with_a_quote(logged):
    http, _ = logged
    rows = csv_rows(http, "hero")
    assert [row["unit"] for row in rows] == [ESCAPED.get(unit, unit) for unit in UNITS]
    assert [row["arm"] for row in rows] == [ESCAPED.get(ARMS[i % len(ARMS)], ARMS[i % len(ARMS)]) for i in range(9)]
    for row in rows:  # JSON cells start with a bracket: never escaped, their keys exactly as logged
        assert set(json.loads(row["probabilities"])) == set(ARMS)
        assert not any(row[column].startswith("'") for column in ("decision_id", "time", "propensity", "reward"))


def test_numbers_are_never_escaped(logged):
    http, _ = logged
    (row,) = csv_rows(http, "signed")
    assert row["reward"] == "-1.5" and row["unit"] == "'-7"


def test_parquet_keeps_every_value_as_logged(logged):
    http, _ = logged
    response = http.get("/v1/experiments/hero/log", params={"format": "parquet"})
    assert response.status_code == 200
    table = pq.read_table(io.BytesIO(response.content))
    assert table.column("unit").to_pylist() == UNITS
    assert table.column("arm").to_pylist() == [ARMS[i % len(ARMS)] for i in range(len(UNITS))]


def test_banditkit_reads_the_csv_back_as_logged(logged):
    http, folder = logged
    path = folder / "hero.csv"
    path.write_bytes(http.get("/v1/experiments/hero/log", params={"format": "csv"}).content)
    log = load_log(path)
    assert [log.arm_names[index] for index in log.arms] == [ARMS[i % len(ARMS)] for i in range(len(UNITS))]

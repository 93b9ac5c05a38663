"""What the dashboard reads and draws, without a browser: decision counts per bucket, the allocation series, charts."""

from __future__ import annotations

import fnmatch
import re
import sqlite3
import tomllib
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banditkit.service import Settings, charts
from banditkit.service.dashboard import BUCKET_WIDTHS, MAX_POINTS, allocation
from banditkit.service.runner import running
from banditkit.service.schemas import ArmStatsOut
from banditkit.service.stores import DecisionRecord, ExperimentRecord, MemoryStore, SQLiteStore, Store
from banditkit.service.stores.base import DecisionCounts, Probabilities

NOW = 1_780_000_000.0  # a fixed time (2026), so that buckets are the same on every run
PROBABILITIES = Probabilities({"a": 0.5, "b": 0.5})


def decisions(times, arms, name="hero") -> list[DecisionRecord]:
    return [
        DecisionRecord(f"{name}-{i:08d}", float(t), name, None, None, arm, 0.5, PROBABILITIES, 1, False)
        for i, (t, arm) in enumerate(zip(times, arms, strict=True))
    ]


def memory_store() -> MemoryStore:
    store = MemoryStore()
    store.create_experiment(ExperimentRecord("hero", {}, {}, {"counts": np.zeros((1, 2))}, 0, 0.0), {}).result()
    return store


def test_counts_golden():
    counted = DecisionCounts.of(60, np.array([0.0, 59.9, 60.0, 61.0, 130.0]), ["a", "b", "a", "a", "c"])
    assert counted.arms == ("a", "b", "c")
    assert counted.buckets.tolist() == [0, 1, 2]
    assert counted.counts.tolist() == [[1, 1, 0], [2, 0, 0], [0, 0, 1]]
    same = DecisionCounts.from_rows(60, [2, 0, 1, 0], ["c", "a", "a", "b"], [1, 1, 2, 1])
    assert (
        same.arms == counted.arms and (same.buckets == counted.buckets).all() and (same.counts == counted.counts).all()
    )
    empty = DecisionCounts.of(3600, np.array([]), [])
    assert empty.arms == () and empty.counts.shape == (0, 0)
    # a time no clock gives (a bucket beyond 64 bits) or NaN is not counted, and warns of nothing
    odd = DecisionCounts.of(60, np.array([1e300, -1e300, np.nan, 60.0]), ["a", "a", "a", "b"])
    assert odd.arms == ("b",) and odd.buckets.tolist() == [1] and odd.counts.tolist() == [[1]]


def test_a_width_not_kept_is_refused_by_name():
    with pytest.raises(ValueError, match=r"width_s must be one of \(60, 3600\) seconds, got 61"):
        MemoryStore().decision_counts("hero", 61)


def test_sqlite_keeps_the_counts_the_log_gives_and_counts_an_older_file_once(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "counts.db"
    store = SQLiteStore(path)
    rows = decisions(NOW + np.sort(rng.uniform(0, 3 * 86_400, 3000)), rng.choice(["a", "b", "c"], 3000).tolist())
    for start in range(0, 3000, 700):  # commits of several sizes, buckets spanning commits
        store.append_decisions(rows[start : start + 700]).result()
    store.append_decisions(decisions([NOW], ["a"], name="other")).result()

    def same(kept: Store) -> None:
        for width in (60, 3600):
            got, expected = kept.decision_counts("hero", width), Store.decision_counts(kept, "hero", width)
            assert got.arms == expected.arms == ("a", "b", "c")
            assert (got.buckets == expected.buckets).all() and (got.counts == expected.counts).all()
            assert got.counts.sum() == 3000
        assert kept.decision_counts("other", 60).counts.tolist() == [[1]]

    same(store)
    store.close()
    with sqlite3.connect(path) as db:  # a file from before the counts were kept
        db.execute("DROP TABLE decision_counts")
    reopened = SQLiteStore(path)
    same(reopened)
    reopened.close()
    again = SQLiteStore(path)  # counted once: opening again adds nothing
    same(again)
    again.close()


@settings(max_examples=40, deadline=None)
@given(
    offsets=st.lists(st.floats(0, 60 * 86_400, allow_nan=False), min_size=1, max_size=200),
    arm_picks=st.lists(st.sampled_from(["a", "b", "<b>c</b>"]), min_size=200, max_size=200),
)
def test_allocation_counts_every_decision_once_in_a_bounded_number_of_buckets(offsets, arm_picks):
    store = memory_store()
    times = sorted(NOW + np.array(offsets))
    arms = arm_picks[: len(times)]
    store.append_decisions(decisions(times, arms)).result()
    series = allocation(store, "hero")
    assert series is not None
    assert len(series.counts) <= MAX_POINTS
    assert series.width_s in BUCKET_WIDTHS or series.width_s % 604_800 == 0
    assert series.start_s % series.width_s == 0
    totals = dict(zip(series.arms, series.counts.sum(axis=0).tolist(), strict=True))
    assert totals == {arm: arms.count(arm) for arm in set(arms)}
    # each decision in its own bucket
    expected = np.zeros_like(series.counts)
    for t, arm in zip(times, arms, strict=True):
        expected[int((t - series.start_s) // series.width_s), series.arms.index(arm)] += 1
    assert (expected == series.counts).all()


def test_allocation_of_an_experiment_without_decisions_is_none_and_one_arm_fills_the_chart():
    store = memory_store()
    assert allocation(store, "hero") is None
    store.append_decisions(decisions([NOW, NOW + 30, NOW + 4000], ["a", "a", "a"])).result()
    series = allocation(store, "hero")
    assert series is not None and series.arms == ("a",) and series.width_s == 60
    chart = charts.allocation_chart(series.start_s, series.width_s, ["a"], series.counts, {"a": "#000"}, [])
    (mark,) = chart.marks
    assert isinstance(mark, charts.Area) and mark.decisions == 3
    ys = {float(point.split(",")[1]) for point in mark.points.split()}
    assert ys == {10.0, 190.0}  # 100% where it served, 0% (an empty bucket) elsewhere


def arm_stats(arm: str, mean=None, low=None, high=None, cs_low=None, cs_high=None, p_best=None) -> ArmStatsOut:
    return ArmStatsOut(
        arm=arm,
        pulls=10,
        mean=mean,
        low=low,
        high=high,
        cs_low=cs_low,
        cs_high=cs_high,
        p_best=p_best,
        probability=0.5,
        active=True,
    )


def test_reward_and_p_best_charts_place_values_on_their_scale():
    arms = [arm_stats("a", 0.2, 0.1, 0.3, 0.05, 0.35, 0.1), arm_stats("b", 0.6, 0.5, 0.7, 0.45, 0.75, 0.9)]
    colors = {"a": "#000", "b": "#111"}
    chart = charts.reward_chart(arms, colors)
    assert chart is not None
    a, b = chart.marks
    assert isinstance(a, charts.Interval) and isinstance(b, charts.Interval)
    assert a.x_cs_low < a.x_low < a.x_mean < a.x_high < a.x_cs_high < b.x_mean
    assert a.x_cs_low >= charts.LEFT and b.x_cs_high <= charts.WIDTH - 20
    assert (a.mean, b.cs_high) == (0.2, 0.75)
    bars = charts.p_best_chart(arms, colors)
    assert bars is not None
    widths = [mark.width for mark in bars.marks if isinstance(mark, charts.Bar)]
    assert widths == [pytest.approx(0.1 * 470, abs=0.05), pytest.approx(0.9 * 470, abs=0.05)]
    assert charts.reward_chart([arm_stats("a")], colors) is None
    assert charts.p_best_chart([arm_stats("a", mean=0.5)], colors) is None


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(0.0, 1.0, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]), (-0.3, 0.3, [-0.2, 0.0, 0.2]), (12.0, 480.0, [100, 200, 300, 400])],
)
def test_nice_ticks(low, high, expected):
    assert charts.nice_ticks(low, high).tolist() == pytest.approx(expected)


def test_every_template_and_asset_is_package_data():
    """pyproject.toml's package-data covers every file the pages and /docs load: the wheel needs no CDN."""
    root = Path(__file__).resolve().parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "banditkit.service"
    ]
    package = root / "banditkit" / "service"
    shipped = [
        path.relative_to(package).as_posix()
        for folder in ("static", "templates")
        for path in (package / folder).rglob("*")
        if path.is_file()
    ]
    assert {"static/dashboard.js", "static/swagger-ui/swagger-ui-bundle.js", "static/swagger-ui/LICENSE"} <= set(
        shipped
    )
    for path in shipped:  # setuptools' globs do not cross folders: the file's folder must be the glob's
        folder = path.rsplit("/", 1)[0]
        assert any(fnmatch.fnmatch(path, glob) and glob.rsplit("/", 1)[0] == folder for glob in globs), path


@pytest.mark.parametrize(
    ("spec", "request_body", "absent"),
    [
        # contextual: no probability, P(best) nor regret without a context; the table and allocation still show
        ({"policy": "linucb", "n_features": 2, "arms": ["a", "b"]}, {"context": [0.1, 0.2]}, "p-best-chart"),
        # one arm, rewards without a range: no confidence sequence
        ({"policy": "gaussian_thompson", "arms": ["only"]}, {}, 'class="cs"'),
    ],
)
def test_pages_of_policies_without_some_statistics(spec, request_body, absent):
    settings = Settings(store="memory://", port=0, admin_token=None, client_tokens=(), tune_interpreter=False)
    with running(settings) as base_url, httpx.Client(base_url=base_url) as http:
        http.post("/v1/experiments", json={"name": "hero", **spec}).raise_for_status()
        assert "No decision yet." in http.get("/experiments/hero").text
        made = http.post("/v1/experiments/hero/decisions/batch", json={"requests": [request_body] * 12}).json()
        rewards = [{"decision_id": d["decision_id"], "value": float(i % 2)} for i, d in enumerate(made["decisions"])]
        http.post("/v1/experiments/hero/rewards/batch", json={"rewards": rewards}).raise_for_status()
        page = http.get("/experiments/hero")
        stats = http.get("/v1/experiments/hero/stats").json()
    assert page.status_code == 200
    assert absent not in page.text
    assert sum(int(n) for n in re.findall(r'data-decisions="(\d+)"', page.text)) == stats["decisions"] == 12
    for arm in stats["arms"]:
        assert f'data-arm="{arm["arm"]}" data-mean="{arm["mean"]!r}"' in page.text

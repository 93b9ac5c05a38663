"""Serving from cached exact distributions: same walk as the library, the right frequencies, no stale arms."""

from __future__ import annotations

import gc
import itertools
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from scipy import stats

import banditkit as bk
from banditkit.service import serving
from banditkit.service.serving import DistributionCache, compute, draw


def bandit_with_data(seed=5) -> bk.Bandit:
    bandit = bk.Bandit(["a", "b", "c", "d"], policy="thompson", seed=seed, name="hero")
    bandit.update_many(
        np.array([0] * 10 + [1] * 10 + [2] * 10),
        np.array([1.0] * 6 + [0.0] * 4 + [1.0] * 3 + [0.0] * 7 + [1.0] * 8 + [0.0] * 2),
    )
    return bandit


def test_unit_draws_match_the_library():
    bandit = bandit_with_data()
    entry = compute(bandit, None)
    ours = [entry.arms[draw(entry, "hero", [f"user-{i}"], bandit.rng)[0]] for i in range(300)]
    theirs = [bandit.select(unit=f"user-{i}").arm for i in range(300)]
    assert ours == theirs
    batch = draw(entry, "hero", [f"user-{i}" for i in range(300)], bandit.rng)
    assert [entry.arms[i] for i in batch] == theirs


@pytest.mark.slow
def test_random_draws_follow_the_distribution():
    """Chi-square goodness of fit, 20,000 draws, alpha = 0.001 (fixed seed: deterministic)."""
    bandit = bandit_with_data()
    entry = compute(bandit, None)
    rng = np.random.default_rng(11)
    counts = np.bincount([draw(entry, "hero", [None], rng)[0] for _ in range(20_000)], minlength=4)
    expected = entry.probabilities * 20_000
    assert stats.chisquare(counts, expected).pvalue > 0.001
    assert entry.probabilities.sum() == pytest.approx(1.0)


def test_disabled_and_disallowed_arms_get_nothing():
    bandit = bandit_with_data()
    bandit.disable_arm("c")
    entry = compute(bandit, ("b", "c"))
    assert entry.as_dict["c"] == 0 and entry.as_dict["b"] == pytest.approx(1.0) and not entry.fallback
    rng = np.random.default_rng(0)
    assert {draw(entry, "hero", [None], rng)[0] for _ in range(200)} == {1}


def test_nothing_servable_is_a_fallback_to_the_default_arm():
    bandit = bk.Bandit(["a", "b"], guardrails={"default_arm": "a"})
    bandit.disable_arm("b")
    entry = compute(bandit, ("b",))
    assert entry.fallback and entry.as_dict == {"a": 1.0, "b": 0.0}


def test_cache_serves_a_recent_entry_while_refreshing_but_never_across_arm_changes():
    bandit = bandit_with_data()
    lock = threading.Lock()
    with ThreadPoolExecutor(1) as executor:
        cache = DistributionCache(lock, refresh_s=30.0, executor=executor)
        first = cache.get(bandit, None)
        assert cache.get(bandit, None) is first
        bandit.update("d", 1.0)  # a new version: the old entry may still serve
        served = cache.get(bandit, None)
        if first.cost_s >= 0.001:
            assert served is first
            deadline = time.monotonic() + 10
            while cache.get(bandit, None).version != bandit.version and time.monotonic() < deadline:
                time.sleep(0.01)
        assert cache.get(bandit, None).version == bandit.version
        bandit.disable_arm("a")  # a change of arms: computed afresh at once
        fresh = cache.get(bandit, None)
        assert fresh.version == bandit.version and fresh.as_dict["a"] == 0.0


def test_a_policy_changing_all_the_time_is_integrated_twice_per_refresh_period_at_most(monkeypatch):
    """Ten new versions, each given time to be integrated, start one background computation, not ten."""
    monkeypatch.setattr(serving, "_CHEAP_S", 0.0)  # every distribution counts as costly here
    bandit = bandit_with_data()
    submitted = []

    class CountingExecutor(ThreadPoolExecutor):
        def submit(self, fn, *args, **kwargs):
            submitted.append(fn)
            return super().submit(fn, *args, **kwargs)

    with CountingExecutor(1) as executor:
        cache = DistributionCache(threading.Lock(), refresh_s=30.0, executor=executor)
        cache.get(bandit, None)
        for _ in range(10):
            bandit.update("d", 1.0)
            served = cache.get(bandit, None)
            assert served.version <= bandit.version and time.monotonic() - served.computed_at < 30.0
            deadline = time.monotonic() + 0.05  # long enough for an integral, were one started
            while cache.get(bandit, None).version != bandit.version and time.monotonic() < deadline:
                time.sleep(0.002)
    assert len(submitted) == 1


def test_without_background_refresh_every_version_is_exact():
    bandit = bandit_with_data()
    cache = DistributionCache(threading.Lock(), refresh_s=0.0, executor=None)
    cache.get(bandit, None)
    bandit.update("a", 1.0)
    assert cache.get(bandit, None).version == bandit.version


@pytest.mark.parametrize("n_arms, n_masks", [(10, 300), (100, 100), (1000, 12)])
def test_the_cache_of_one_experiment_stays_under_a_megabyte(n_arms, n_masks):
    """However many different ``allowed`` lists clients send, one experiment's cache holds at most 256 of them
    and 4,096 arm probabilities in all (about 0.7 MB). Without the second bound, the 100 masks of 100 arms here
    held 1.6 MB, the 12 masks of 1,000 arms 2 MB (and 256 such masks some 40 MB)."""
    bandit = bk.Bandit([f"arm-{i}" for i in range(n_arms)], policy="ucb1", seed=3)
    cache = DistributionCache(threading.Lock(), refresh_s=0.0, executor=None)
    masks = list(itertools.islice(itertools.combinations(bandit.arms, 4), n_masks))
    tracemalloc.start()
    try:
        for mask in masks:
            assert cache.get(bandit, mask).probabilities.shape == (n_arms,)
        gc.collect()
        full = tracemalloc.get_traced_memory()[0]
        cache.clear()
        gc.collect()
        held = full - tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert 0 < held < 1_000_000, held

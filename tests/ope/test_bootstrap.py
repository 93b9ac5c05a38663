"""The Poisson bootstrap: exact Poisson(1) counts, both passes identical, seeded."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from banditkit.ope import bootstrap
from banditkit.ope.bootstrap import keyed_bootstrap_sums, poisson_bootstrap_sums, ratio_replicates


def test_count_table_matches_the_poisson_pmf_to_two_cells():
    table = bootstrap._TABLE
    determined = table[table != bootstrap._FALLBACK]
    cells = np.bincount(determined, minlength=8)[:8]
    expected = stats.poisson.pmf(np.arange(8), 1.0) * 65536
    assert np.all(np.abs(cells - expected) <= 2.0)  # at most a partial cell lost at each end
    assert (table == bootstrap._FALLBACK).sum() == 8


def test_counts_follow_poisson_one_chi_square():
    """Sums of an identity matrix are the counts themselves: 100,000 draws, chi-square at 0.1%."""
    sums = poisson_bootstrap_sums(np.eye(500), 200, np.random.default_rng(3))
    counts = sums.ravel().astype(int)
    observed = np.bincount(np.minimum(counts, 5), minlength=6)
    pmf = stats.poisson.pmf(np.arange(5), 1.0)
    expected = np.append(pmf, 1 - pmf.sum()) * counts.size
    assert stats.chisquare(observed, expected).pvalue > 0.001
    assert np.array_equal(sums, np.round(sums))


def test_straddling_cells_are_resolved_exactly():
    """Rows forced into the cell that straddles P(0)=e^-1 get 0 or 1 in the right proportion."""
    cell = int(np.flatnonzero(bootstrap._TABLE == bootstrap._FALLBACK)[0])
    # 20,000 resamples, each with one row (of value 1) in that cell: out[k] is the count drawn.
    cells = np.column_stack([np.arange(20_000), np.zeros(20_000, int), np.full(20_000, cell)])
    out = np.zeros((20_000, 1))
    bootstrap._resolve_fallbacks(cells, np.ones((1, 1)), out, np.uint64(12345), 0)
    share_zero = float((out == 0).mean())
    expected = math.exp(-1) * 65536 - cell  # share of the cell below the CDF step
    assert share_zero == pytest.approx(expected, abs=4 * math.sqrt(expected * (1 - expected) / 20_000))


def test_compiled_and_numpy_passes_agree():
    pytest.importorskip("numba")
    rng = np.random.default_rng(1)
    columns = rng.normal(size=(30_001, 3))
    compiled = poisson_bootstrap_sums(columns, 64, np.random.default_rng(9), compiled=True)
    plain = poisson_bootstrap_sums(columns, 64, np.random.default_rng(9), compiled=False)
    np.testing.assert_allclose(compiled, plain, rtol=1e-10, atol=1e-9)


def test_bootstrap_variance_of_a_sum_is_the_sum_of_squares():
    values = np.random.default_rng(2).exponential(size=2000)
    sums = poisson_bootstrap_sums(values[:, None], 2000, np.random.default_rng(4))[:, 0]
    # Var(sum c_i a_i) = sum a_i^2 for Poisson(1) counts; the sample variance of 2000 draws is within ~10%.
    assert sums.var() == pytest.approx((values**2).sum(), rel=0.1)
    assert sums.mean() == pytest.approx(values.sum(), rel=0.01)


def test_same_seed_same_sums_and_zero_resamples():
    columns = np.ones((10, 1))
    first = poisson_bootstrap_sums(columns, 5, np.random.default_rng(0))
    assert np.array_equal(first, poisson_bootstrap_sums(columns, 5, np.random.default_rng(0)))
    assert poisson_bootstrap_sums(columns, 0, np.random.default_rng(0)).shape == (0, 1)


def test_ratio_replicates_drop_empty_resamples():
    sums = np.array([[1.0, 2.0], [3.0, 0.0], [2.0, 4.0]])
    assert ratio_replicates(sums, 0, 1).tolist() == [0.5, 0.5]


@given(
    n_rows=st.integers(1, 300),
    cuts=st.lists(st.integers(0, 300), max_size=4),
    first_row=st.integers(0, 2**34),
    key=st.integers(0, 2**64 - 1),
)
@settings(max_examples=40, deadline=None)
def test_chunks_of_a_log_sum_to_the_whole_log(n_rows: int, cuts: list[int], first_row: int, key: int) -> None:
    """Counts are a function of (key, resample, row index): any chunking gives the same sums, exactly counted."""
    columns = np.random.default_rng(n_rows).integers(0, 5, size=(n_rows, 2)).astype(float)
    whole = keyed_bootstrap_sums(columns, 17, key, first_row=first_row, compiled=False)
    parts = np.zeros_like(whole)
    edges = [0, *sorted(min(c, n_rows) for c in cuts), n_rows]
    for start, stop in itertools.pairwise(edges):
        keyed_bootstrap_sums(columns[start:stop], 17, key, first_row=first_row + start, out=parts, compiled=False)
    assert np.array_equal(whole, parts)  # integer-valued columns: sums exact whatever the order


def test_compiled_pass_agrees_on_a_chunk_that_starts_mid_word():
    pytest.importorskip("numba")
    columns = np.random.default_rng(5).normal(size=(5001, 2))
    compiled = keyed_bootstrap_sums(columns, 32, 99, first_row=7, compiled=True)
    plain = keyed_bootstrap_sums(columns, 32, 99, first_row=7, compiled=False)
    np.testing.assert_allclose(compiled, plain, rtol=1e-10, atol=1e-9)

"""The Open Bandit Dataset sample: loading with a shared vocabulary, and the standard Random -> BTS check.

Data: the Open Bandit Dataset by ZOZO, Inc. (CC BY 4.0), read from ../shared/data/obd beside the
repository or from $BANDITKIT_DATA_DIR/obd.
"""

from __future__ import annotations

import numpy as np
import pytest

from banditkit.datasets import load_open_bandit
from banditkit.errors import InvalidParameterError
from banditkit.ope import evaluate, thompson_ranking_distribution


@pytest.fixture(scope="module")
def obd_logs():
    """Both logs, read once for the module."""
    from .conftest import obd_path

    path = obd_path()
    return load_open_bandit(path, "random"), load_open_bandit(path, "bts")


def test_both_logs_load_with_the_same_context_columns(obd_logs):
    random, bts = obd_logs
    assert random.context_names == bts.context_names  # one shared one-hot vocabulary
    assert random.log.contexts.shape == (10_000, len(random.context_names))
    assert bts.log.contexts.shape == (10_000, len(random.context_names))
    assert np.all(random.log.contexts.sum(axis=1) == 4)  # one category per user feature
    assert random.log.n_arms == 80 and random.log.n_positions == 3
    assert set(np.unique(random.log.positions)) == {0, 1, 2}
    np.testing.assert_allclose(random.log.propensities, 1 / 80)
    assert random.item_features.shape[0] == 80
    assert random.prior["alpha"].shape == random.prior["beta"].shape == (80,)
    assert (random.log.rewards.sum(), bts.log.rewards.sum()) == (38, 42)
    assert bts.on_policy_value == pytest.approx(0.0042)


def test_affinity_columns_extend_the_context(obd_dir):
    data = load_open_bandit(obd_dir, "random", affinity=True)
    assert data.log.contexts.shape[1] == len(data.context_names) and data.context_names[-1] == "user-item_affinity_79"


def test_bts_value_from_the_random_log(obd_logs):
    """Golden values of the standard experiment (IPS and SNIPS need no model and no randomness)."""
    random, bts = obd_logs
    target = thompson_ranking_distribution(random.prior["alpha"], random.prior["beta"], 3).for_rows(1)
    report = evaluate(random.log, target, ["ips", "snips", "dm", "dr", "switch_dr"], n_bootstrap=300, rng=0)
    assert report["ips"].value == pytest.approx(0.00456274085, abs=1e-10)
    assert report["snips"].value == pytest.approx(0.00478602535, abs=1e-10)
    on_policy = bts.on_policy_value
    for name in ("ips", "snips", "dr"):
        assert report[name].low < on_policy < report[name].high  # 40 clicks: wide, but they cover it
    assert set(report.by_position) == {0, 1, 2}


def test_missing_files_are_named(tmp_path):
    with pytest.raises(InvalidParameterError, match="no Open Bandit Dataset file at"):
        load_open_bandit(tmp_path, "random")
    with pytest.raises(InvalidParameterError, match="behaviour_policy must be one of"):
        load_open_bandit(tmp_path, "greedy")

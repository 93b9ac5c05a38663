"""The report: indexing, rows, JSON and the pandas frame."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

from banditkit.ope import evaluate

LOG = {
    "arm": [0, 1, 1, 0, 1],
    "reward": [1.0, 0.0, 1.0, 0.0, 1.0],
    "propensity": [0.5] * 5,
    "x0": [0.1, 0.5, 0.9, 0.2, 0.4],
}


def test_index_iterate_and_unknown_name():
    twice = {column: values * 2 for column, values in LOG.items()}  # 10 rows: enough for an interval
    report = evaluate(twice, np.array([[0.3, 0.7]]), ["ips", "dm"], n_bootstrap=100)
    assert list(report) == ["ips", "dm"] and len(report) == 2
    assert report["ips"].low <= report["ips"].value <= report["ips"].high
    with pytest.raises(KeyError, match=r"no estimate 'dr'; the report holds \['ips', 'dm'\]"):
        report["dr"]


def test_json_has_no_nan_and_round_trips():
    report = evaluate(LOG, np.array([[0.3, 0.7]]), ["ips", "dm"], n_bootstrap=0)
    text = json.dumps(report.to_dict(), allow_nan=False)  # NaN intervals become null
    rows = json.loads(text)["estimates"]
    assert rows[0]["low"] is None and rows[1]["max_weight"] is None
    assert rows[0]["value"] == report["ips"].value


def test_to_frame_one_row_per_estimator():
    pd = importlib.import_module("pandas")
    frame = evaluate(pd.DataFrame(LOG), np.array([[0.3, 0.7]]), ["ips", "snips", "dr"], n_bootstrap=50).to_frame()
    assert frame["estimator"].tolist() == ["ips", "snips", "dr"]
    assert {"value", "low", "high", "normal_low", "normal_high", "ess", "max_weight"} <= set(frame.columns)


def test_polars_dataframe_when_installed():
    pl = importlib.import_module("polars")
    report = evaluate(pl.DataFrame(LOG), np.array([[0.3, 0.7]]), ["ips"], n_bootstrap=0)
    assert report["ips"].n_rows == 5


def test_given_predictions_and_a_scikit_learn_model():
    importlib.import_module("sklearn")
    from sklearn.linear_model import Ridge

    target = np.array([[0.3, 0.7]])
    given = evaluate(LOG, target, ["dm", "dr"], predicted_rewards=np.full((5, 2), 0.5), n_bootstrap=0)
    assert given["dm"].value == pytest.approx(0.5)
    fitted = evaluate(LOG, target, ["dm"], reward_model=Ridge(alpha=1.0), n_folds=2, n_bootstrap=0)
    assert 0.0 <= fitted["dm"].value <= 1.0


def test_bad_predicted_rewards_and_estimator_names():
    from banditkit.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match=r"predicted_rewards must be finite with shape \(5, 2\)"):
        evaluate(LOG, np.array([[0.3, 0.7]]), ["dr"], predicted_rewards=np.zeros((4, 2)))
    with pytest.raises(InvalidParameterError, match="estimator must be one of"):
        evaluate(LOG, np.array([[0.3, 0.7]]), ["ipw"])

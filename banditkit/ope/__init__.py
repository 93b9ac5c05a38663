"""Offline policy evaluation: the value of a target policy estimated from a logged policy's data.

    report = bk.ope.evaluate(log, target, estimators=["replay", "ips", "snips", "dm", "dr"])
    report["dr"].value, report["dr"].low, report["dr"].high, report["dr"].ess
    report.to_frame()      # one row per estimator (pandas)
    bk.ope.evaluate(log, target, action_features=item_features)   # DM/DR's model on crossed features
    bk.ope.evaluate(log, {"new": bandit, "current": probs})   # candidates side by side: a Comparison
    bk.ope.replay_learning(log, bandit)   # a learning policy replayed: .value, .low, .high, .curve()

See docs/ope.md for the estimators, the log format and an experiment on the Open Bandit Dataset.
"""

from __future__ import annotations

from .bootstrap import poisson_bootstrap_sums
from .comparison import Comparison, Ratio
from .estimators import clipped_ips, dm, dr, importance_weights, ips, replay, snips, switch_dr
from .evaluation import ESTIMATORS, evaluate
from .learning import ReplayResult, replay_learning
from .logs import LoggedData, load_log
from .per_row import model_features
from .ranking import RankingDistribution, thompson_ranking_distribution
from .report import Estimate, Report
from .reward_model import CrossedRidgeRewardModel, RidgeRewardModel, cross_fit_predictions, crossed_features

__all__ = [
    "evaluate",
    "replay_learning",
    "ReplayResult",
    "ESTIMATORS",
    "model_features",
    "Report",
    "Comparison",
    "Ratio",
    "Estimate",
    "LoggedData",
    "load_log",
    "replay",
    "ips",
    "clipped_ips",
    "snips",
    "dm",
    "dr",
    "switch_dr",
    "importance_weights",
    "RidgeRewardModel",
    "CrossedRidgeRewardModel",
    "crossed_features",
    "cross_fit_predictions",
    "poisson_bootstrap_sums",
    "thompson_ranking_distribution",
    "RankingDistribution",
]

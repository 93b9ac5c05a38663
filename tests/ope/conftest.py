"""Synthetic logs with a known truth, shared by the offline-evaluation tests."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """The shared data folder: $BANDITKIT_DATA_DIR, else ../shared/data beside the repository."""
    return Path(os.environ.get("BANDITKIT_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def obd_path() -> Path:
    """The Open Bandit Dataset sample; missing data fails in CI (where it ships) and skips elsewhere."""
    path = data_dir() / "obd"
    if not (path / "random" / "all.csv").exists():
        missing = pytest.fail if os.environ.get("CI") else pytest.skip
        missing(f"Open Bandit Dataset sample not found at {path} (set BANDITKIT_DATA_DIR)")
    return path


@pytest.fixture
def obd_dir() -> Path:
    return obd_path()


@dataclass
class Problem:
    """A contextual Bernoulli problem: expected rewards (n, K), behaviour and target distributions."""

    contexts: np.ndarray
    means: np.ndarray
    behaviour: np.ndarray
    target: np.ndarray

    @property
    def true_value(self) -> float:
        """Expected reward of the target on these contexts (the estimand, conditional on contexts)."""
        return float((self.target * self.means).sum(axis=1).mean())


def softmax(scores: np.ndarray) -> np.ndarray:
    z = np.exp(scores - scores.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


@dataclass
class Environment:
    """Logistic click model with context-dependent behaviour and target policies."""

    reward_theta: np.ndarray  # (d, K)
    behaviour_theta: np.ndarray  # (d, K)

    @classmethod
    def random(cls, rng: np.random.Generator, n_arms: int = 4, n_features: int = 3) -> Environment:
        return cls(rng.normal(size=(n_features, n_arms)), rng.normal(size=(n_features, n_arms)))

    def problem(self, rng: np.random.Generator, n: int) -> Problem:
        contexts = rng.normal(size=(n, self.reward_theta.shape[0]))
        n_arms = self.reward_theta.shape[1]
        means = 1 / (1 + np.exp(-(contexts @ self.reward_theta * 0.8 - 0.5)))
        behaviour = 0.7 * softmax(contexts @ self.behaviour_theta) + 0.3 / n_arms
        target = softmax(3.0 * contexts @ self.reward_theta)
        return Problem(contexts, means, behaviour, target)


def make_problem(rng: np.random.Generator, n: int = 2000, n_arms: int = 4, n_features: int = 3) -> Problem:
    return Environment.random(rng, n_arms, n_features).problem(rng, n)


def draw_log(problem: Problem, rng: np.random.Generator):
    """(arms, rewards, propensities) drawn from the behaviour policy on the problem's contexts."""
    cumulative = problem.behaviour.cumsum(axis=1)
    arms = (cumulative < rng.random(len(cumulative))[:, None]).sum(axis=1)
    arms = np.minimum(arms, problem.behaviour.shape[1] - 1)
    rows = np.arange(len(arms))
    rewards = (rng.random(len(arms)) < problem.means[rows, arms]).astype(np.float64)
    return arms, rewards, problem.behaviour[rows, arms]


def service_rows(problem: Problem, rng: np.random.Generator, arm_names=("red", "green", "blue", "gold")):
    """A log in the decision service's export shape (one dict per decision)."""
    arms, rewards, _ = draw_log(problem, rng)
    rows = []
    for i, arm in enumerate(arms):
        rows.append(
            {
                "decision_id": f"d{i:05d}",
                "time": f"2026-11-28T08:{i // 600 % 60:02d}:{i // 10 % 60:02d}Z",
                "experiment": "hero",
                "unit": f"user-{i % 97}",
                "context": json.dumps(problem.contexts[i].round(6).tolist()),
                "arm": arm_names[arm],
                "propensity": float(problem.behaviour[i, arm]),
                "probabilities": json.dumps(dict(zip(arm_names, problem.behaviour[i].tolist(), strict=True))),
                "policy_version": 3 + i // 500,
                "fallback": False,
                "reward": float(rewards[i]),
            }
        )
    return rows

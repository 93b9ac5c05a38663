"""Readers for public logged-bandit datasets, into banditkit's log format (no download at run time).

The Open Bandit Dataset (ZOZO, Inc., CC BY 4.0; Saito, Aihara, Matsutani and
Narita, NeurIPS 2021 Datasets and Benchmarks) logs 80 fashion items shown in 3
positions on ZOZOTOWN with clicks as rewards, once under a uniform-random
policy and once under Bernoulli Thompson sampling.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InvalidParameterError
from .ope._io import read_csv
from .ope.logs import LoggedData, load_log

OPEN_BANDIT_POLICIES = ("random", "bts")
_USER_FEATURES = [f"user_feature_{j}" for j in range(4)]


@dataclass(frozen=True, eq=False)
class OpenBanditData:
    """One Open Bandit Dataset log with what comes beside it.

    log : LoggedData (arms = item ids, positions 0..2, context = one-hot user features);
    item_features : (K, m) numeric item features (feature 0, then one-hot categorical ones);
    context_names, item_feature_names : column names of the encodings;
    prior : {"alpha": (K,), "beta": (K,)} of the Thompson-sampling behaviour policy, or None.
    """

    log: LoggedData
    item_features: np.ndarray | None
    context_names: tuple[str, ...]
    item_feature_names: tuple[str, ...]
    prior: dict[str, np.ndarray] | None
    behaviour_policy: str
    campaign: str

    @property
    def on_policy_value(self) -> float:
        """Mean reward of the log: the value of the policy that collected it."""
        return float(self.log.rewards.mean())


def load_open_bandit(
    path, behaviour_policy: str = "random", campaign: str = "all", *, affinity: bool = False
) -> OpenBanditData:
    """Read ``path/<behaviour_policy>/<campaign>.csv`` (and ``item_context.csv``, ``bts_prior_<campaign>.json``).

    User features are one-hot encoded with one vocabulary shared by every behaviour policy's file of
    the campaign found under ``path``, so the random and BTS logs get the same context columns.
    ``affinity=True`` appends the 80 user-item affinity columns to the context.
    """
    root = Path(path)
    if behaviour_policy not in OPEN_BANDIT_POLICIES:
        raise InvalidParameterError(f"behaviour_policy must be one of {OPEN_BANDIT_POLICIES}, got {behaviour_policy!r}")
    file = root / behaviour_policy / f"{campaign}.csv"
    if not file.exists():
        raise InvalidParameterError(f"no Open Bandit Dataset file at {str(file)!r}")
    columns = read_csv(file)
    vocabularies = _shared_vocabularies(root, campaign, columns, read=file)
    context_names = tuple(f"{name}={value}" for name in _USER_FEATURES for value in vocabularies[name])
    blocks = [_one_hot(columns[name], vocabularies[name]) for name in _USER_FEATURES]
    if affinity:
        names = sorted(
            (c for c in columns if c.startswith("user-item_affinity_")), key=lambda c: int(c.rsplit("_", 1)[1])
        )
        blocks.append(np.column_stack([np.asarray(columns[c], dtype=np.float64) for c in names]))
        context_names += tuple(names)
    items = np.asarray(columns["item_id"], dtype=np.int64)
    item_features, item_names = _item_features(root / behaviour_policy / "item_context.csv")
    n_items = item_features.shape[0] if item_features is not None else int(items.max()) + 1
    log = load_log(
        {
            "arm": items,
            "reward": np.asarray(columns["click"], dtype=np.float64),
            "propensity": np.asarray(columns["propensity_score"], dtype=np.float64),
            "position": np.asarray(columns["position"], dtype=np.int64) - 1,
        },
        arms=[str(i) for i in range(n_items)],
    )
    log = LoggedData(log.arms, log.rewards, log.propensities, log.arm_names, np.hstack(blocks), log.positions)
    return OpenBanditData(
        log, item_features, context_names, item_names, _prior(root, campaign), behaviour_policy, campaign
    )


def _shared_vocabularies(root: Path, campaign: str, columns, read: Path) -> dict[str, list[str]]:
    """Sorted categories of each user feature over every behaviour policy's file of the campaign."""
    values = {name: set(map(str, columns[name])) for name in _USER_FEATURES}
    for policy in OPEN_BANDIT_POLICIES:
        other = root / policy / f"{campaign}.csv"
        if other.exists() and other != read:
            for name, column in read_csv(other).items():
                if name in values:
                    values[name].update(map(str, column))
    return {name: sorted(categories) for name, categories in values.items()}


def _one_hot(values, vocabulary: list[str]) -> np.ndarray:
    lookup = {value: i for i, value in enumerate(vocabulary)}
    codes = np.array([lookup[str(v)] for v in values])
    return (codes[:, None] == np.arange(len(vocabulary))).astype(np.float64)


def _item_features(file: Path) -> tuple[np.ndarray | None, tuple[str, ...]]:
    if not file.exists():
        return None, ()
    columns = read_csv(file)
    order = np.argsort(np.asarray(columns["item_id"], dtype=np.int64))
    blocks, names = [np.asarray(columns["item_feature_0"], dtype=np.float64)[order, None]], ["item_feature_0"]
    for name in sorted(c for c in columns if c.startswith("item_feature_") and c != "item_feature_0"):
        vocabulary = sorted(set(map(str, columns[name])))
        blocks.append(_one_hot(np.asarray(columns[name])[order], vocabulary))
        names += [f"{name}={value}" for value in vocabulary]
    return np.hstack(blocks), tuple(names)


def _prior(root: Path, campaign: str) -> dict[str, np.ndarray] | None:
    file = root / f"bts_prior_{campaign}.json"
    if not file.exists():
        return None
    data = json.loads(file.read_text())
    return {"alpha": np.asarray(data["alpha"], dtype=np.float64), "beta": np.asarray(data["beta"], dtype=np.float64)}

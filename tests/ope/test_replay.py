"""replay_learning: a hand-worked log, the batched replay against a row-by-row one, unbiasedness, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import banditkit as bk
from banditkit.errors import InvalidParameterError, UnknownArmError
from banditkit.ope import replay_learning

# Hand-worked: greedy with means a = 1/1, b = 0.4/1. Row 0 (b): greedy picks a, rejected. Row 1 (a, 0):
# accepted, a -> 1/2. Row 2 (b): a, rejected. Row 3 (a, 0): accepted, a -> 1/3 < 0.4. Row 4 (a): greedy now
# picks b, rejected. Row 5 (b, 1): accepted, b -> 1.4/2.
HAND_LOG = {"arm": ["b", "a", "b", "a", "a", "b"], "reward": [1.0, 0.0, 1.0, 0.0, 0.0, 1.0], "propensity": [0.5] * 6}
BERNOULLI_MEANS = np.array([0.3, 0.5, 0.65])


def greedy_bandit() -> bk.Bandit:
    bandit = bk.Bandit(["a", "b"], policy=bk.EpsilonGreedy(epsilon=0.0), seed=0)
    bandit.update("a", 1.0)
    bandit.update("b", 0.4)
    return bandit


def bernoulli_log(n: int, propensities: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    arms = rng.choice(len(propensities), size=n, p=propensities)
    rewards = (rng.random(n) < BERNOULLI_MEANS[arms]).astype(float)
    return {"arm": arms, "reward": rewards, "propensity": propensities[arms]}


def test_hand_worked_log_is_replayed_exactly():
    bandit = greedy_bandit()
    result = replay_learning(HAND_LOG, bandit)
    assert result.rows.tolist() == [1, 3, 5]
    assert result.rewards.tolist() == [0.0, 0.0, 1.0]
    assert [result.arm_names[i] for i in result.arms] == ["a", "a", "b"]
    assert result.value == pytest.approx(1 / 3)
    assert result.cumulative_reward().tolist() == [0.0, 0.0, 1.0]
    assert result.regret(1.0).tolist() == [1.0, 2.0, 2.0]
    assert result.bandit.pulls.tolist() == [3.0, 2.0]
    assert bandit.pulls.tolist() == [1.0, 1.0], "the bandit passed in is not changed"
    assert np.isnan(result.low) and any("only 3 rows" in w for w in result.warnings)
    bootstrapped = replay_learning(HAND_LOG, greedy_bandit(), n_bootstrap=5, rng=3)
    assert 0 < bootstrapped.steps <= 3 and np.isnan([bootstrapped.low, bootstrapped.high]).all()
    assert np.isnan(bootstrapped.curve()["low"]).all() and np.isnan(bootstrapped.bootstrap_values).all()


def test_a_log_the_bandit_never_agrees_with():
    columns = {"arm": ["b"] * 30, "reward": [1.0] * 30, "propensity": [0.5] * 30}
    result = replay_learning(bk.ope.load_log(columns, arms=["a", "b"]), greedy_bandit(), n_bootstrap=5)
    assert result.steps == 0 and np.isnan(result.value) and np.isnan(result.low)
    assert result.curve()["reward"].shape == (0,) and any("only 0 rows" in w for w in result.warnings)


def test_max_steps_stops_the_replay():
    result = replay_learning(HAND_LOG, greedy_bandit(), max_steps=2)
    assert result.rows.tolist() == [1, 3]


def test_batched_linucb_replay_matches_a_row_by_row_replay():
    """Deciding batches at once and re-deciding after each update is the row-by-row algorithm, exactly."""
    rng = np.random.default_rng(3)
    n, n_arms, d = 3000, 4, 3
    contexts = rng.standard_normal((n, d))
    weights = rng.standard_normal((n_arms, d))
    arms = rng.integers(0, n_arms, n)
    rewards = (rng.random(n) < 1 / (1 + np.exp(-np.einsum("nd,nd->n", contexts, weights[arms])))).astype(float)
    log = {"arm": arms, "reward": rewards, "propensity": np.full(n, 1 / n_arms), "context": list(contexts)}
    bandit = bk.Bandit([str(k) for k in range(n_arms)], policy=bk.LinUCB(alpha=0.5), seed=0, n_features=d)
    for k in range(n_arms):  # distinct data per arm: no ties, so LinUCB's choices do not use the rng
        bandit.update(str(k), float(k % 2), context=rng.standard_normal(d))
    result = replay_learning(log, bandit, rng=5)

    reference, accepted = bk.Bandit.from_json(bandit.to_json()), []
    for row in range(n):
        decision = reference.select(context=contexts[row])
        if decision.arm == str(arms[row]):
            reference.update(decision, float(rewards[row]))
            accepted.append(row)
    assert result.rows.tolist() == accepted
    assert result.steps > n / n_arms * 0.8
    for key, value in reference.state.items():
        np.testing.assert_allclose(result.bandit.state[key], value, rtol=1e-9, atol=1e-12)
    assert result.value > rewards.mean(), "LinUCB learns: it earns more than the uniform logging policy"


def test_same_seed_same_replay_and_generators_are_accepted():
    rng = np.random.default_rng(0)
    log = bernoulli_log(600, np.full(3, 1 / 3), rng)
    first = replay_learning(log, bk.ThompsonSampling(), rng=11)
    again = replay_learning(log, bk.ThompsonSampling(), rng=11)
    assert first.rows.tolist() == again.rows.tolist()
    from_generator = replay_learning(log, bk.ThompsonSampling(), rng=np.random.default_rng(11))
    assert from_generator.steps > 0


@settings(max_examples=30, deadline=None)
@given(
    arms=st.lists(st.integers(0, 2), min_size=1, max_size=60),
    seed=st.integers(0, 2**16),
    max_steps=st.integers(1, 40),
)
def test_replay_invariants(arms, seed, max_steps):
    rng = np.random.default_rng(seed)
    arms = np.array(arms)
    columns = {"arm": arms, "reward": rng.random(arms.shape[0]), "propensity": np.full(arms.shape[0], 1 / 3)}
    log = bk.ope.load_log(columns, arms=["0", "1", "2"])  # every arm is in the log's vocabulary
    bandit = bk.Bandit(["0", "1", "2"], policy=bk.EpsilonGreedy(epsilon=0.3), seed=0)
    result = replay_learning(log, bandit, max_steps=max_steps, rng=seed)
    assert (np.diff(result.rows) > 0).all()
    assert result.steps <= max_steps
    assert result.rewards.tolist() == columns["reward"][result.rows].tolist()
    assert result.arms.tolist() == arms[result.rows].tolist()
    np.testing.assert_allclose(result.bandit.pulls, np.bincount(result.arms, minlength=3))
    assert result.kept_rows == arms.shape[0]


def online_average_rewards(policy: bk.Policy, steps: int, runs: int, seed: int) -> np.ndarray:
    """Average reward of ``runs`` online runs of ``steps`` steps in the Bernoulli environment."""
    rng = np.random.default_rng(seed)
    out = np.empty(runs)
    for run in range(runs):
        bandit = bk.Bandit(["0", "1", "2"], policy=policy, seed=int(rng.integers(2**32)))
        total = 0.0
        for _ in range(steps):
            decision = bandit.select()
            reward = float(rng.random() < BERNOULLI_MEANS[decision.arm_index])
            bandit.update(decision, reward)
            total += reward
        out[run] = total / steps
    return out


def replayed_average_rewards(propensities: np.ndarray, steps: int, runs: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = int(8 * steps / (len(propensities) * propensities.min()))  # accepts ~2.7 * steps on average
    out = np.empty(runs)
    for run in range(runs):
        result = replay_learning(
            bernoulli_log(rows, propensities, rng),
            bk.EpsilonGreedy(epsilon=0.2),
            max_steps=steps,
            rng=int(rng.integers(2**32)),
        )
        assert result.steps == steps
        out[run] = result.value
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    "propensities", [np.full(3, 1 / 3), np.array([0.6, 0.3, 0.1])], ids=["uniform", "rejection-sampled"]
)
def test_replay_is_unbiased_for_the_online_value(propensities):
    """Mean replayed value over 300 logs == mean online value over 300 runs of the same length.

    Each side's mean has standard error sd / sqrt(300) (about 0.005 here); the difference must stay within
    4 standard errors of a difference (two-sided significance about 6e-5). An estimate that ignored the
    non-uniform propensities (replaying every row, ``floor=0.6``) gives 0.43 against 0.55 online: it would fail.
    """
    steps, runs = 40, 300
    online = online_average_rewards(bk.EpsilonGreedy(epsilon=0.2), steps, runs, seed=1)
    replayed = replayed_average_rewards(propensities, steps, runs, seed=2)
    standard_error = np.sqrt(online.var(ddof=1) / runs + replayed.var(ddof=1) / runs)
    assert abs(replayed.mean() - online.mean()) < 4 * standard_error


def test_non_uniform_log_is_thinned_to_a_uniform_one():
    rng = np.random.default_rng(4)
    log = bernoulli_log(30_000, np.array([0.6, 0.3, 0.1]), rng)
    result = replay_learning(log, bk.EpsilonGreedy(epsilon=1.0), rng=0)  # uniform target: accepts 1/3 of kept
    # Each row is kept with probability 0.1 / p: 30,000 * 3 * 0.1 = 9,000 expected, sd ~ 80.
    assert abs(result.kept_rows - 9000) < 400
    shares = np.bincount(result.arms, minlength=3) / result.steps
    np.testing.assert_allclose(shares, 1 / 3, atol=0.04)
    assert any("rejection sampling kept" in w for w in result.warnings)
    biased = replay_learning(log, bk.EpsilonGreedy(epsilon=1.0), floor=0.3, rng=0)
    assert biased.kept_rows > result.kept_rows and any("biases" in w for w in biased.warnings)


def test_bootstrap_interval_and_curve():
    rng = np.random.default_rng(6)
    log = bernoulli_log(3000, np.full(3, 1 / 3), rng)
    result = replay_learning(log, bk.ThompsonSampling(), n_bootstrap=30, rng=1)
    assert result.low < result.value < result.high
    curve = result.curve()
    assert curve["step"].shape == curve["low"].shape == (result.steps,)
    assert (curve["low"] <= curve["high"]).all()
    normal = replay_learning(log, bk.ThompsonSampling(), rng=1)
    assert normal.low < normal.value < normal.high
    assert result.rows.tolist() == normal.rows[: result.steps].tolist(), "the same replay, up to the bootstrap cut"
    assert result.to_dict()["n_bootstrap"] == 30 and result.to_dict()["run_steps"] == normal.steps


def test_bootstrap_interval_is_taken_over_every_replay_when_the_run_was_lucky():
    """The replay (seed 22) accepts 540 rows, more than 39 of the 40 bootstrap replays.

    An interval at 540 steps could only use the replays that reach 540: one of 40 here, the lucky ones. The
    result stops where every replay still has a reward, and each percentile is over all 40 replays.
    """
    log = bernoulli_log(1500, np.full(3, 1 / 3), np.random.default_rng(6))
    result = replay_learning(log, bk.ThompsonSampling(), n_bootstrap=40, rng=22)
    plain = replay_learning(log, bk.ThompsonSampling(), rng=22)
    assert result.run_steps == plain.steps
    assert (result.bootstrap_steps < result.run_steps).sum() >= 36, "most bootstrap replays fall short of the run"
    assert result.steps == result.bootstrap_steps.min() < result.run_steps
    assert result.rows.tolist() == plain.rows[: result.steps].tolist()
    assert result.value == pytest.approx(plain.rewards[: result.steps].mean(), rel=1e-12)
    assert result.bandit.pulls.sum() == result.steps, "the returned bandit learned from the reported steps only"
    assert result.acceptance_rate == plain.acceptance_rate
    assert result.bootstrap_values.shape == (40,) and np.isfinite(result.bootstrap_values).all()
    np.testing.assert_allclose([result.low, result.high], np.quantile(result.bootstrap_values, [0.025, 0.975]))
    assert result.low < result.value < result.high
    curve = result.curve()
    assert (
        curve["low"].shape == (result.steps,) and np.isfinite(curve["low"]).all() and np.isfinite(curve["high"]).all()
    )
    np.testing.assert_allclose(
        [curve["low"][-1], curve["high"][-1]], [result.low * result.steps, result.high * result.steps]
    )
    assert any(f"cover the first {result.steps} steps" in w for w in result.warnings)


def test_a_bootstrap_replay_that_accepts_nothing_leaves_no_step():
    result = replay_learning(HAND_LOG, greedy_bandit(), n_bootstrap=100)  # some resample drops all six rows
    assert result.run_steps == 3 and result.bootstrap_steps.min() == 0
    assert result.steps == 0 and result.rows.tolist() == [] and np.isnan(result.value) and np.isnan(result.low)
    assert result.bandit.pulls.tolist() == [1.0, 1.0], "the returned bandit learned from no step"
    assert np.isnan(result.bootstrap_values).all()


def thompson_online_mean_rewards(steps: int, runs: int, seed: int) -> np.ndarray:
    """Expected mean reward over the first t online steps of Beta(1, 1) Thompson sampling, t = 1..steps.

    ``runs`` runs at once, in numpy: standard error about 0.02 / sqrt(runs / 1000) at t = 300.
    """
    rng = np.random.default_rng(seed)
    successes, pulls, total = np.zeros((runs, 3)), np.zeros((runs, 3)), np.zeros(runs)
    out, run = np.empty(steps), np.arange(runs)
    for t in range(steps):
        arm = rng.beta(1.0 + successes, 1.0 + pulls - successes).argmax(axis=1)
        reward = rng.random(runs) < BERNOULLI_MEANS[arm]
        successes[run, arm] += reward
        pulls[run, arm] += 1.0
        total += reward
        out[t] = total.mean() / (t + 1)
    return out


def test_bootstrap_interval_covers_the_online_value():
    """Over 60 logs, the 95% bootstrap interval covers Thompson sampling's online mean reward at least 53 times.

    For intervals that cover 95% of the time, fewer than 53 of 60 has probability 0.01; intervals that cover
    80% of the time reach 53 with probability 0.07. The truth, from 10,000 online runs, has standard error
    below 0.001, against interval widths about 0.14.
    """
    from banditkit.policies import _jit

    n = 900  # about 300 accepted steps
    truth = thompson_online_mean_rewards(n // 2, 10_000, seed=0)
    _jit.set_enabled(True)  # the compiled loop from the first replay on (the per-row path's rows, sooner)
    covered = 0
    for seed in range(60):
        log = bernoulli_log(n, np.full(3, 1 / 3), np.random.default_rng(100 + seed))
        result = replay_learning(log, bk.ThompsonSampling(), n_bootstrap=50, rng=seed)
        covered += result.low <= truth[result.steps - 1] <= result.high
    assert covered >= 53


def test_one_arm():
    log = {"arm": ["a"] * 20, "reward": [1.0, 0.0] * 10, "propensity": [1.0] * 20}
    result = replay_learning(log, bk.Bandit(["a"], policy="ucb1"))
    assert result.steps == 20 and result.value == 0.5


BAD_INPUT = [
    ({**HAND_LOG, "propensity": [0.5, 0.0, 0.5, 0.5, 0.5, 0.5]}, None, InvalidParameterError, r"at rows \[1\]"),
    ({**HAND_LOG, "propensity": [0.5, 0.5, 1.5, 0.5, 0.5, 0.5]}, None, InvalidParameterError, r"at rows \[2\]"),
    ({**HAND_LOG, "arm": ["b", "a", "z", "a", "z", "b"]}, None, UnknownArmError, r"'z'.*at rows \[2, 4\]"),
    ({**HAND_LOG, "reward": [1.0, float("nan"), 0, 0, 0, 0]}, None, InvalidParameterError, r"reward.*rows \[1\]"),
    (HAND_LOG, {"floor": 0.1}, InvalidParameterError, "floor"),
    (HAND_LOG, {"max_steps": 0}, InvalidParameterError, "max_steps"),
]


@pytest.mark.parametrize(("log", "options", "error", "message"), BAD_INPUT)
def test_bad_input_is_named(log, options, error, message):
    with pytest.raises(error, match=message):
        replay_learning(log, greedy_bandit(), **(options or {}))


def test_arms_the_log_never_shows():
    bandit = bk.Bandit(["a", "b", "c"], policy="thompson")
    with pytest.raises(InvalidParameterError, match=r"\['c'\] never appear in the log"):
        replay_learning(HAND_LOG, bandit)
    bandit.disable_arm("c")
    assert replay_learning(HAND_LOG, bandit).steps > 0


def test_propensities_that_cannot_cover_the_bandit():
    log = {"arm": ["a", "b", "c"], "reward": [1.0, 0.0, 1.0], "propensity": [0.5, 0.5, 0.5]}
    with pytest.raises(InvalidParameterError, match="cannot cover the bandit's 3 active arms"):
        replay_learning(log, "thompson")


def test_contextual_policy_needs_contexts():
    with pytest.raises(InvalidParameterError, match="contextual but the log has no context"):
        replay_learning(HAND_LOG, bk.Bandit(["a", "b"], policy="linucb", n_features=2))
    with pytest.raises(TypeError, match="policy_or_bandit"):
        replay_learning(HAND_LOG, 3.5)


def contextual_log(
    seed: int, n: int, n_arms: int, d: int, propensities: np.ndarray | None = None, ties: bool = True
) -> dict:
    """A log of logistic clicks, uniform or logged with ``propensities`` (n_arms,); integer contexts give ties."""
    rng = np.random.default_rng(seed)
    contexts = rng.integers(-2, 3, (n, d)).astype(float) if ties else rng.standard_normal((n, d))
    weights = rng.standard_normal((n_arms, d))
    if propensities is None:
        propensities = np.full(n_arms, 1 / n_arms)
    arms = rng.choice(n_arms, size=n, p=propensities)
    rewards = (rng.random(n) < 1 / (1 + np.exp(-np.einsum("nd,nd->n", contexts, weights[arms])))).astype(float)
    return {"arm": arms, "reward": rewards, "propensity": propensities[arms], "context": list(contexts)}


def replayed_row_by_row(bandit: bk.Bandit, log: dict, seed: int, max_steps: int | None) -> tuple[bk.Bandit, list]:
    """select() and update() per row (with the row's context if any) on a copy drawing from the replay's stream.

    The replay's stream is the seed's second spawned one (the first thins the log).
    """
    data = bandit.to_dict()
    data["rng"] = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1]).bit_generator.state
    reference, accepted = bk.Bandit.from_dict(data), []
    contexts = log.get("context", [None] * len(log["arm"]))
    for row, (arm, reward, context) in enumerate(zip(log["arm"], log["reward"], contexts, strict=True)):
        decision = reference.select(context=context)
        if decision.arm == str(arm):
            reference.update(decision, float(reward))
            accepted.append(row)
            if len(accepted) == max_steps:
                break
    return reference, accepted


@pytest.mark.parametrize(
    "policy",
    [bk.LinUCB(alpha=0.0), bk.LinUCB(alpha=0.5, standardize=True), bk.LinTS(v=0.5)],
    ids=["linucb-ties", "linucb-standardized", "lints"],
)
@pytest.mark.parametrize(("seed", "max_steps"), [(0, None), (1, None), (2, 120)])
def test_contextual_replay_is_the_row_by_row_replay(policy, seed, max_steps):
    """Rows, arms, state, ledger, version and generator all as select() and update() row by row give them.

    LinTS and tied LinUCB draw from the generator at every row: only a replay that decides each row once, in
    order, from the bandit's own stream accepts the same rows.
    """
    n_arms = 3
    log = contextual_log(seed, 3000, n_arms, 3)
    bandit = bk.Bandit([str(k) for k in range(n_arms)], policy=policy, seed=0, n_features=3)
    bandit.update("1", 1.0, context=[1.0, 0.0, -1.0])
    before = bandit.to_json()
    result = replay_learning(log, bandit, max_steps=max_steps, rng=seed)
    reference, accepted = replayed_row_by_row(bandit, log, seed, max_steps)

    assert result.rows.tolist() == accepted
    assert result.steps == (max_steps or result.steps) and result.steps > 100
    assert result.arms.tolist() == log["arm"][accepted].tolist()
    for key, value in reference.state.items():
        np.testing.assert_allclose(result.bandit.state[key], value, rtol=1e-9, atol=1e-12, err_msg=key)
    np.testing.assert_allclose(result.bandit.reward_sums, reference.reward_sums, rtol=1e-9)
    assert result.bandit.pulls.tolist() == reference.pulls.tolist()
    assert result.bandit.version == reference.version
    assert result.bandit.rng.random() == reference.rng.random(), "the same draws from the bandit's generator"
    assert bandit.to_json() == before, "the bandit passed in is not changed"


@pytest.mark.parametrize(
    "policy",
    [bk.ThompsonSampling(), bk.UCB1(reward_range=(-1.0, 3.0)), bk.EpsilonGreedy(epsilon=0.3, decay=0.01)],
    ids=["thompson", "ucb1", "epsilon-greedy"],
)
@pytest.mark.parametrize("loaded", [True, False], ids=["compiled-loop", "select-per-row"])
def test_count_policy_replay_is_the_row_by_row_replay(policy, loaded):
    """A count policy replays in one compiled loop once the kernels are loaded, else by select() per row: alike."""
    from banditkit.policies import _jit

    log = bernoulli_log(5000, np.full(3, 1 / 3), np.random.default_rng(9))
    bandit = bk.Bandit(["0", "1", "2"], policy=policy, seed=0)
    bandit.update("2", 1.0)
    try:
        _jit.set_enabled(True if loaded else None)
        result = replay_learning(log, bandit, max_steps=1000, rng=4)
    finally:
        _jit.set_enabled(True)
    reference, accepted = replayed_row_by_row(bandit, log, 4, 1000)
    assert result.rows.tolist() == accepted and result.steps == 1000
    for key, value in reference.state.items():
        np.testing.assert_array_equal(result.bandit.state[key], value, err_msg=key)
    np.testing.assert_allclose(result.bandit.reward_sums, reference.reward_sums, rtol=1e-12)
    assert result.bandit.version == reference.version
    assert result.bandit.rng.random() == reference.rng.random()


def test_thinned_contextual_log_replays_alike_on_the_compiled_and_numpy_paths():
    """On a non-uniform log the kept rows are replayed alike by the compiled loop and the batched numpy path.

    Each arm is first given its own data, so LinUCB meets no ties and its choices do not depend on the
    generator (which the two paths advance differently: the batched one decides some rows twice).
    """
    from banditkit.policies import _jit

    log = contextual_log(5, 6000, 3, 3, propensities=np.array([0.5, 0.3, 0.2]), ties=False)
    rng = np.random.default_rng(5)
    bandit = bk.Bandit(["0", "1", "2"], policy=bk.LinUCB(alpha=0.5), seed=0, n_features=3)
    for k in range(3):
        bandit.update(str(k), float(k % 2), context=rng.standard_normal(3))
    results = {}
    try:
        for enabled in (True, False):
            _jit.set_enabled(enabled)
            results[enabled] = replay_learning(log, bandit, max_steps=800, rng=7)
    finally:
        _jit.set_enabled(True)
    compiled, numpy_path = results[True], results[False]
    assert compiled.kept_rows < 6000 and any("rejection sampling kept" in w for w in compiled.warnings)
    assert compiled.rows.tolist() == numpy_path.rows.tolist() and compiled.steps == 800
    for key, value in numpy_path.bandit.state.items():
        np.testing.assert_allclose(compiled.bandit.state[key], value, rtol=1e-9, atol=1e-12, err_msg=key)
    assert compiled.bandit.version == numpy_path.bandit.version


def test_guardrails_that_act_on_rewards_replay_through_select():
    """An abort rule decides later rows after it fires: the replay follows it as select() does."""
    log = contextual_log(6, 2000, 2, 3)
    guarded = bk.Bandit(
        ["0", "1"],
        policy=bk.LinTS(v=0.5),
        seed=0,
        n_features=3,
        guardrails={"default_arm": "0", "ruin_threshold": -1.0},
    )
    result = replay_learning({**log, "reward": log["reward"] - 1.0}, guarded, rng=0)
    assert result.bandit.aborted, "every reward is -1: the abort rule fires during the replay"
    assert set(result.arms[-20:].tolist()) == {0}, "after the abort only the default arm is served"

"""``run``: every policy, every replication, one vectorized pass per block of replications.

A policy's state carries all R replications on its leading (batch) axis, so a
step is one ``sample`` and one ``update`` call for the whole block, never a
Python loop over replications. Randomness comes from one seed:

* replication r's environment stream is ``SeedSequence(seed, spawn_key=(0, r))``,
  the same for every policy (common random numbers) and whatever R is;
* block b's policy stream is ``SeedSequence(seed, spawn_key=(1, b))``, where
  blocks are consecutive runs of at most ``BLOCK_SIZE`` replications.

Blocks (and policies) run on a thread pool; numpy releases the GIL in its
samplers, so two cores help, and the numbers do not depend on ``workers``.
With R = 1 the run is exactly a loop over ``Bandit(seed=policy_seed(seed, 0))``.
"""

from __future__ import annotations

import os
import time as clock
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .._validation import check_int
from ..errors import InvalidParameterError, InvalidTypeError
from ..policies import REGISTRY, Policy, make_policy
from .environments import Environment
from .feedback import Feedback, Observations
from .results import SimulationResult, recording_steps

#: Replications per policy stream and per thread task.
BLOCK_SIZE = 512
#: Steps of environment draws generated at once per replication (fixed: draws depend on it).
CHUNK_STEPS = 1024

Progress = Callable[[str, int], None]


def environment_seed(entropy: int | Sequence[int] | None, replication: int) -> np.random.SeedSequence:
    """Seed of replication ``replication``'s environment draws.

    A spawn key per replication: replication r sees the same rewards whatever the number of replications,
    the policies compared or the order they run in, and never shares a stream with a policy's draws.

    Examples
    --------
    >>> import numpy as np
    >>> environment_seed(7, 3).spawn_key
    (0, 3)
    >>> float(np.random.default_rng(environment_seed(7, 3)).random()) == float(
    ...     np.random.default_rng(environment_seed(7, 3)).random()
    ... )
    True
    """
    return np.random.SeedSequence(entropy, spawn_key=(0, replication))


def policy_seed(entropy: int | Sequence[int] | None, block: int) -> np.random.SeedSequence:
    """Seed of the policy generator of block ``block`` (replications [b * BLOCK_SIZE, ...)).

    Spawned apart from every :func:`environment_seed` of the same entropy, so policy and environment draws
    are independent streams.

    Examples
    --------
    >>> policy_seed(7, 0).spawn_key
    (1, 0)
    >>> policy_seed(7, 0).generate_state(1) != environment_seed(7, 0).generate_state(1)
    array([ True])
    """
    return np.random.SeedSequence(entropy, spawn_key=(1, block))


@dataclass
class _BlockOutcome:
    regret_sums: np.ndarray  # (G,) sum over the block's replications of cumulative regret
    regret_squares: np.ndarray  # (G,) sum of squares of the same
    final_regret: np.ndarray  # (Rb,)
    total_reward: np.ndarray  # (Rb,)
    pulls: np.ndarray  # (K,) pulls summed over replications and steps
    started: float
    finished: float


def _apply(policy: Policy, state: dict, observations: Observations) -> dict:
    """State after one update pass; rows not in the pass keep their state."""
    kwargs = {"propensities": observations.propensities, "context": observations.contexts}
    if observations.rows is None:
        return policy.update(state, observations.arms, observations.rewards, **kwargs)
    rows = observations.rows
    updated = policy.update(
        {key: value[rows] for key, value in state.items()}, observations.arms, observations.rewards, **kwargs
    )
    merged = {key: value.copy() for key, value in state.items()}
    for key, value in updated.items():
        merged[key][rows] = value
    return merged


def _run_block(
    name: str,
    policy: Policy,
    env: Environment,
    horizon: int,
    replications: range,
    entropy: int | Sequence[int] | None,
    block: int,
    grid: np.ndarray,
    progress: Progress | None,
) -> _BlockOutcome:
    started = clock.perf_counter()
    n, n_arms = len(replications), env.n_arms
    env_rngs = [np.random.default_rng(environment_seed(entropy, r)) for r in replications]
    rng = np.random.default_rng(policy_seed(entropy, block))
    state = policy.init_state(n_arms, n, env.n_features if policy.contextual else None)
    mask = np.ones((n, n_arms), dtype=bool)
    rows = np.arange(n)
    feedback = Feedback(n)
    regret, total_reward = np.zeros(n), np.zeros(n)
    pulls = np.zeros(n_arms, dtype=np.int64)
    regret_sums, regret_squares = np.zeros(grid.size), np.zeros(grid.size)
    record = 0
    for start in range(0, horizon, CHUNK_STEPS):
        n_steps = min(CHUNK_STEPS, horizon - start)
        chunk = env.draw(env_rngs, start, n_steps)
        for step in range(n_steps):
            time = start + step
            for observations in feedback.due(time):
                state = _apply(policy, state, observations)
            context = env.contexts(chunk, step) if policy.contextual else None
            arms = policy.sample(state, rng, mask, context)
            propensities = policy.probabilities(state, mask, context)[rows, arms] if policy.needs_propensities else None
            rewards, step_regret = env.outcome(chunk, step, arms)
            regret += step_regret
            total_reward += rewards
            pulls += np.bincount(arms, minlength=n_arms)
            feedback.add(env.arrival_steps(time, chunk, step), Observations(None, arms, rewards, propensities, context))
            if time + 1 == grid[record]:
                regret_sums[record] = regret.sum()
                regret_squares[record] = regret @ regret
                record = min(record + 1, grid.size - 1)
        if progress is not None:
            progress(name, n * n_steps)
    return _BlockOutcome(regret_sums, regret_squares, regret, total_reward, pulls, started, clock.perf_counter())


def _policies(policies) -> dict[str, Policy]:
    if isinstance(policies, Mapping):
        named = dict(policies)
    elif isinstance(policies, Sequence) and not isinstance(policies, str):
        built = [make_policy(spec) for spec in policies]
        named = {policy.name: policy for policy in built}
        if len(named) != len(built):
            raise InvalidParameterError("policies given as a list must have distinct names; pass a dict instead")
    else:
        raise InvalidTypeError(f"policies must be a dict of name -> policy or a list, got {type(policies).__name__}")
    if not named:
        raise InvalidParameterError("policies must hold at least one policy")
    out = {}
    for name, spec in named.items():
        if not isinstance(name, str) or not name:
            raise InvalidParameterError(f"policy names must be non-empty strings, got {name!r}")
        out[name] = make_policy(spec)
    return out


def incompatibility(policy: Policy | type[Policy], env: Environment) -> str | None:
    """Why ``policy`` cannot run on ``env`` (the end of a sentence about the policy), or None when it can."""
    if policy.contextual and env.n_features is None:
        return "is contextual but the environment shows no context"
    low, high = policy.reward_bounds
    env_low, env_high = env.reward_bounds
    # A policy that accepts rewards up to 1e100 in size is fit for unbounded (Gaussian) rewards.
    unbounded_ok = low <= -1e100 and high >= 1e100
    if not unbounded_ok and (env_low < low or env_high > high):
        return f"accepts rewards in [{low}, {high}] but the environment pays in [{env_low}, {env_high}]"
    return None


def check_compatible(name: str, policy: Policy, env: Environment) -> None:
    """Refuse a policy that cannot learn from ``env``; the message names the registered policies that can."""
    reason = incompatibility(policy, env)
    if reason is None:
        return
    fitting = [key for key, cls in sorted(REGISTRY.items()) if incompatibility(cls, env) is None]
    # A reward range helps only a policy that fails on rewards the environment bounds.
    advice = ""
    if not (policy.contextual and env.n_features is None) and np.isfinite(env.reward_bounds).all():
        advice = policy.reward_advice()
    raise InvalidParameterError(
        f"policy {name!r} ({policy.name}) {reason}{advice}; policies that fit this environment: {', '.join(fitting)}"
    )


def run(
    policies: Mapping[str, Policy | str | dict] | Sequence[Policy | str | dict],
    env: Environment,
    horizon: int,
    replications: int = 100,
    seed: int | np.random.SeedSequence | None = 0,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
) -> SimulationResult:
    """Simulate each policy for ``horizon`` steps in ``replications`` independent runs of ``env``.

    Parameters
    ----------
    policies : mapping or sequence
        ``{"label": policy}`` (a Policy, registry name or spec dict), or a list labelled by name.
    env : Environment
        A banditkit.sim environment; every policy sees the same draws.
    horizon : int >= 1
        Decisions per replication.
    replications : int >= 1
        Independent runs; intervals need at least 2.
    seed : int, SeedSequence or None
        None draws fresh entropy (recorded in the result).
    workers : int, optional
        Threads (default: the machine's cores); the numbers do not depend on it.
    progress : callable, optional
        Called as ``progress(label, decisions_done)`` after each chunk of steps.

    Returns
    -------
    SimulationResult
        Regret curves, final regret, reward per step, pull shares and timings of each policy.

    Examples
    --------
    >>> from banditkit.sim import Bernoulli
    >>> result = run({"greedy": "epsilon_greedy"}, Bernoulli([0.2, 0.8]), horizon=50, replications=4)
    >>> result.regret("greedy").shape
    (50,)
    """
    if not isinstance(env, Environment):
        raise InvalidTypeError(f"env must be a banditkit.sim environment, got {type(env).__name__}")
    horizon = check_int("horizon", horizon, low=1)
    replications = check_int("replications", replications, low=1)
    env.check_horizon(horizon)
    named = _policies(policies)
    for name, policy in named.items():
        check_compatible(name, policy, env)
    entropy = (seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)).entropy
    grid = recording_steps(horizon)
    blocks = [range(b, min(b + BLOCK_SIZE, replications)) for b in range(0, replications, BLOCK_SIZE)]
    tasks = [(name, policy, index, block) for name, policy in named.items() for index, block in enumerate(blocks)]
    workers = min(len(tasks), workers or os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(_run_block, name, policy, env, horizon, block, entropy, index, grid, progress)
            for name, policy, index, block in tasks
        ]
        outcomes = [future.result() for future in futures]
    return SimulationResult.from_blocks(
        named, outcomes, len(blocks), env=env, horizon=horizon, replications=replications, seed=entropy, steps=grid
    )

"""An oblivious adversary against a deterministic policy: why EXP3 exists.

UCB1 is deterministic once ties are gone, so an adversary who knows it can
write the whole reward table in advance: 0 for the arm UCB1 is about to play,
1 for the other. The table is fixed before the run (oblivious), yet UCB1 earns
nothing after the first two steps, while the best fixed arm earns about half.
Randomised policies cannot be predicted this way: EXP3's regret against the
best fixed arm is O(sqrt(T K log K)) on *every* table.

    python examples/adversarial.py [docs/img/adversarial.png]
"""

from __future__ import annotations

import sys

import numpy as np

import banditkit as bk
from banditkit.sim import Adversarial

HORIZON, REPLICATIONS, SEED = 10_000, 100, 5
POLICIES = {
    "EXP3 (gamma 0.1)": bk.EXP3(gamma=0.1),
    "Thompson sampling": bk.ThompsonSampling(),
    "UCB1": bk.UCB1(),
    "epsilon-greedy": bk.EpsilonGreedy(),
}


def table_against_ucb1(horizon: int) -> np.ndarray:
    """Reward table (horizon, 2): two warm-up steps that leave no tie, then 0 for UCB1's next arm, 1 for the other."""
    policy = bk.UCB1()
    table = np.empty((horizon, 2))
    table[:2] = [0.6, 0.4]
    state = policy.update(policy.init_state(2), np.array([0, 1]), np.array([0.6, 0.4]))
    for step in range(2, horizon):
        indices = policy.indices(state)[0]
        if indices[0] == indices[1]:
            raise RuntimeError(f"UCB1 indices tie at step {step}; the table would not be deterministic")
        arm = int(np.argmax(indices))
        table[step, arm], table[step, 1 - arm] = 0.0, 1.0
        state = policy.update(state, np.array([arm]), np.array([0.0]))
    return table


def main(plot_path: str | None = None) -> None:
    env = Adversarial(table_against_ucb1(HORIZON))
    result = bk.sim.run(POLICIES, env, HORIZON, REPLICATIONS, SEED)
    print(f"best fixed arm: {env.best_arm}, its total reward {env.table[:, env.best_arm].sum():,.0f} of {HORIZON:,}")
    print("| policy | regret vs best fixed arm (95% CI) | reward per decision |")
    print("|---|---|---|")
    for row in result.summary().rows():
        print(
            f"| {row['policy']} | {row['regret_mean']:,.0f} ({row['regret_low']:,.0f} to {row['regret_high']:,.0f})"
            f" | {row['reward_mean']:.3f} |"
        )
    if plot_path:
        result.plot(plot_path, title="Oblivious adversary built against UCB1 (2 arms)", log_x=False)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)

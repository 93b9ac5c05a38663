"""The peer side of docs/coming-from.md: the code each section shows for MABWiser, OBP and Vowpal Wabbit.

Each function's body is the code the guide prints (tests/test_docs_commands.py checks it word for word); the
banditkit side runs in the test suite. The peers never enter banditkit's environment: run this with theirs.

    python3 -m venv ~/.venvs/banditkit-peers
    ~/.venvs/banditkit-peers/bin/pip install -r benchmarks/peers/requirements.txt
    ~/.venvs/banditkit-peers/bin/python benchmarks/peers/guide_peers.py mabwiser vw
    ~/.venvs/banditkit-peers-ope/bin/python benchmarks/peers/guide_peers.py obp      # see requirements-ope.txt
"""

from __future__ import annotations

import sys


def mabwiser() -> None:
    from mabwiser.mab import MAB, LearningPolicy

    arms, rewards = ["red", "green", "blue", "green", "red", "green"], [0, 1, 0, 1, 1, 1]
    mab = MAB(arms=["red", "green", "blue"], learning_policy=LearningPolicy.ThompsonSampling(), seed=7)
    mab.fit(decisions=arms, rewards=rewards)
    arm = mab.predict()  # an arm name
    mab.partial_fit(decisions=[arm], rewards=[1])
    print(arm, mab.predict_expectations())  # a draw per arm


def obp() -> None:
    import numpy as np
    from obp.ope import (
        DirectMethod,
        DoublyRobust,
        InverseProbabilityWeighting,
        OffPolicyEvaluation,
        SelfNormalizedInverseProbabilityWeighting,
    )

    rng = np.random.default_rng(0)
    n, n_actions = 5_000, 3
    action = rng.integers(0, n_actions, n)  # a uniform-random logging policy
    reward = (rng.random(n) < np.array([0.2, 0.5, 0.6])[action]).astype(float)
    bandit_feedback = {
        "n_rounds": n,
        "n_actions": n_actions,
        "action": action,
        "reward": reward,
        "pscore": np.full(n, 1 / n_actions),
        "position": None,
        "context": np.zeros((n, 1)),  # required, even without contexts
    }
    action_dist = np.tile([0.1, 0.3, 0.6], (n, 1))[:, :, None]  # the target, (n, K, 1)
    q_hat = np.tile([0.2, 0.5, 0.6], (n, 1))[:, :, None]  # reward predictions, from a model fit elsewhere
    ope = OffPolicyEvaluation(
        bandit_feedback=bandit_feedback,
        ope_estimators=[
            InverseProbabilityWeighting(),
            SelfNormalizedInverseProbabilityWeighting(),
            DirectMethod(),
            DoublyRobust(),
        ],
    )
    print(ope.estimate_policy_values(action_dist=action_dist, estimated_rewards_by_reg_model=q_hat))
    values, intervals = ope.summarize_off_policy_estimates(
        action_dist=action_dist, estimated_rewards_by_reg_model=q_hat, n_bootstrap_samples=1000, random_state=0
    )
    print(values)  # estimated_policy_value, relative_estimated_policy_value
    print(intervals)  # bootstrap mean, 95.0% CI (lower), 95.0% CI (upper)


def vw() -> None:
    import numpy as np
    from vowpalwabbit import Workspace

    rng = np.random.default_rng(0)
    theta = rng.normal(size=(3, 4))  # the true model: 3 actions, 4 features
    vw = Workspace("--cb_explore_adf --epsilon 0.05 -q sa --quiet --random_seed 0")
    actions = [f"|a a{k}" for k in range(3)]
    earned = 0.0
    for _ in range(2_000):
        x = rng.normal(size=4)
        shared = "shared |s " + " ".join(f"{j}:{value:.6f}" for j, value in enumerate(x))
        pmf = np.asarray(vw.predict([shared, *actions]))
        action = int(rng.choice(3, p=pmf / pmf.sum()))
        reward = x @ theta[action] + 0.1 * rng.normal()
        labelled = list(actions)
        labelled[action] = f"0:{-reward:.6f}:{pmf[action]:.6f} |a a{action}"  # VW minimises a cost
        vw.learn([shared, *labelled])
        earned += reward
    vw.finish()
    print(f"mean reward {earned / 2_000:.3f}")


SIDES = {"mabwiser": mabwiser, "obp": obp, "vw": vw}

if __name__ == "__main__":
    for side in sys.argv[1:] or list(SIDES):
        print(f"--- {side}")
        SIDES[side]()

"""How much does each policy's regret grow when feedback is late or batched?

Runs Thompson sampling and UCB1 on the same 10-arm Bernoulli problem (best arm
0.5, nine at 0.4) under seven feedback patterns, on common random numbers, and
prints a markdown table: regret at the horizon (95% interval), the regret added
by the delay, and the ratio to the same policy with immediate feedback. Writes a plot when an output path is given.

    python examples/delayed_feedback.py [docs/img/delayed_feedback.png]
"""

from __future__ import annotations

import sys

import banditkit as bk
from banditkit.sim import Bernoulli, Delayed

HORIZON, REPLICATIONS, SEED = 10_000, 200, 3
PROBLEM = Bernoulli([0.5] + [0.4] * 9)
PATTERNS = {
    "immediate": PROBLEM,
    "fixed delay 10": Delayed(PROBLEM, delay=10),
    "fixed delay 100": Delayed(PROBLEM, delay=100),
    "fixed delay 1,000": Delayed(PROBLEM, delay=1000),
    "random delay, mean 100": Delayed(PROBLEM, mean_delay=100.0),
    "batches of 100": Delayed(PROBLEM, batch=100),
    "batches of 1,000": Delayed(PROBLEM, batch=1000),
}
POLICIES = {"Thompson sampling": "thompson", "UCB1": "ucb1"}


def main(plot_path: str | None = None) -> None:
    results = {label: bk.sim.run(POLICIES, env, HORIZON, REPLICATIONS, SEED) for label, env in PATTERNS.items()}
    baseline = {name: results["immediate"].regret_at(name, HORIZON) for name in POLICIES}
    header = " | ".join(f"{name}: regret (95% CI) | added | x immediate" for name in POLICIES)
    print(f"| feedback | {header} |")
    print("|---|" + "---|---|---|" * len(POLICIES))
    for label, result in results.items():
        cells = []
        for name in POLICIES:
            low, high = (bound[-1] for bound in result.interval(name))
            regret = result.regret_at(name, HORIZON)
            cells += [
                f"{regret:,.0f} ({low:,.0f}-{high:,.0f})",
                f"{regret - baseline[name]:+,.0f}",
                f"{regret / baseline[name]:.2f}",
            ]
        print(f"| {label} | " + " | ".join(cells) + " |")
    if plot_path:
        plot(results, plot_path)


def plot(results, path: str) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=110)
    axis = figure.subplots()
    for style, name in zip(("-", "--"), POLICIES, strict=True):
        for colour, label in zip(
            ("C0", "C1", "C2", "C3"),
            ("immediate", "fixed delay 100", "batches of 1,000", "fixed delay 1,000"),
            strict=True,
        ):
            result = results[label]
            axis.plot(result.steps, result.regret(name), style, color=colour, label=f"{name}, {label}")
    axis.set_xlabel("decisions t")
    axis.set_ylabel("cumulative pseudo-regret")
    axis.set_title(f"Late feedback, 10 Bernoulli arms (0.5 vs 0.4), {REPLICATIONS} replications")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8, ncol=2)
    figure.tight_layout()
    figure.savefig(path)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)

"""A Bandit learning online on a simulated Bernoulli stream, ending with a table of its arms.

Run: python examples/quickstart.py
"""

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

import banditkit as bk

CLICK_RATES = {"red": 0.04, "green": 0.05, "blue": 0.07, "yellow": 0.03}
ROUNDS = 20_000


def main() -> None:
    bandit = bk.Bandit(
        list(CLICK_RATES), policy=bk.ThompsonSampling(), seed=7, guardrails=bk.Guardrails(default_arm="red")
    )
    visitors = np.random.default_rng(2026)  # the simulated world has its own random stream
    for _ in track(range(ROUNDS), description="Serving visitors"):
        decision = bandit.select()
        clicked = visitors.random() < CLICK_RATES[decision.arm]
        bandit.update(decision, float(clicked))

    table = Table(title=f"Thompson sampling after {ROUNDS:,} visitors")
    for column in ("arm", "true rate", "pulls", "mean reward", "95% interval", "probability now"):
        table.add_column(column, justify="right")
    for row in bandit.stats():
        interval = "-" if row.low is None else f"[{row.low:.4f}, {row.high:.4f}]"
        mean = "-" if row.mean is None else f"{row.mean:.4f}"
        table.add_row(
            row.arm, f"{CLICK_RATES[row.arm]:.2f}", f"{row.pulls:,}", mean, interval, f"{row.probability:.4f}"
        )
    console = Console()
    console.print(table)
    best = max(CLICK_RATES.values())
    regret = best * ROUNDS - bandit.total_reward
    console.print(
        f"Clicks: {bandit.total_reward:,.0f}; an oracle expects {best * ROUNDS:,.0f} (realised regret {regret:,.0f})."
    )


if __name__ == "__main__":
    main()

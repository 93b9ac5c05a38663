"""The images of the documentation, made by code: ``make figures`` writes every image docs/ shows.

Each figure is made by the command a reader would run: ``banditkit simulate CONFIG`` for a simulation
(its ``regret.png`` becomes ``docs/img/NAME.png``, and its ``result.json`` and ``summary.md`` go to
``docs/runs/NAME/``, the numbers the pages quote), or an example script given the image's path. Same seed,
same numbers. tests/test_docs_site.py checks that every image in docs/img/ is one of these, so none is drawn
by hand.

    python docs/figures.py                     # every figure: several minutes (the Chapelle & Li runs)
    python docs/figures.py tutorial_regret     # only the figures named

The dashboard's screenshots are figures too: its browser tests (tests/service/test_dashboard.py) start
``banditkit serve``, drive it and capture the pages into docs/img/ when ``DASHBOARD_SCREENSHOTS`` names it.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "img"
RUNS = ROOT / "docs" / "runs"


def simulation(config: str) -> Callable[[str], None]:
    """A figure made by ``banditkit simulate examples/CONFIG``: its regret plot, result and summary."""

    def make(name: str) -> None:
        with tempfile.TemporaryDirectory() as out:
            run([sys.executable, "-m", "banditkit.cli", "simulate", str(ROOT / "examples" / config), "--out", out])
            (RUNS / name).mkdir(parents=True, exist_ok=True)
            for kept in ("result.json", "summary.md"):
                shutil.copyfile(Path(out) / kept, RUNS / name / kept)
            shutil.copyfile(Path(out) / "regret.png", IMAGES / f"{name}.png")

    return make


def script(path: str) -> Callable[[str], None]:
    """A figure made by ``python examples/PATH docs/img/NAME.png``."""

    def make(name: str) -> None:
        run([sys.executable, str(ROOT / "examples" / path), str(IMAGES / f"{name}.png")])

    return make


@functools.cache
def dashboard_tests() -> None:
    """Run the dashboard's browser tests once; they save their screenshots into docs/img/ as they go."""
    test = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/service/test_dashboard.py"]
    run([sys.executable, *test], env={**os.environ, "DASHBOARD_SCREENSHOTS": str(IMAGES)})


def screenshot(name: str) -> None:
    """A screenshot of the dashboard, taken by tests/service/test_dashboard.py in headless chromium."""
    dashboard_tests()


def run(command: list[str], env: dict[str, str] | None = None) -> None:
    print("$", " ".join(Path(word).name if word == sys.executable else word for word in command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True, env=env)


# docs/img/NAME.png -> how it is made
FIGURES: dict[str, Callable[[str], None]] = {
    "tutorial_regret": simulation("tutorial/buttons.toml"),
    "chapelle_li_eps_0.1": simulation("chapelle_li_eps_0.1.toml"),
    "chapelle_li_eps_0.02": simulation("chapelle_li_eps_0.02.toml"),
    "non_stationary": simulation("non_stationary.toml"),
    "drifting": simulation("drifting.toml"),
    "many_arms": simulation("many_arms.toml"),
    "contextual": simulation("contextual.toml"),
    "delayed_feedback": script("delayed_feedback.py"),
    "adversarial": script("adversarial.py"),
    # against `banditkit serve` with six hours of logged decisions (the tests' fixture); one run makes all three
    "dashboard-experiment": screenshot,
    "dashboard-experiments": screenshot,
    "dashboard-admin": screenshot,
}


def main(names: list[str]) -> None:
    unknown = sorted(set(names) - FIGURES.keys())
    if unknown:
        sys.exit(f"error: no figure named {', '.join(unknown)}; figures: {', '.join(FIGURES)}")
    IMAGES.mkdir(parents=True, exist_ok=True)
    for name in names or list(FIGURES):
        FIGURES[name](name)


if __name__ == "__main__":
    main(sys.argv[1:])

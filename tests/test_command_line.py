"""The command line as a new user meets it: setup mistakes, --version, --help, tables in a pipe.

Every case runs ``python -m banditkit.cli`` in a child process, with stdout and stderr piped, as a
script or a CI job would run it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

GAUSSIAN_THOMPSON = """
[run]
horizon = 50
replications = 2
[environment]
kind = "gaussian"
means = [0.1, 1.4]
[policies.TS]
name = "thompson"
"""
BERNOULLI_LINUCB = """
[run]
horizon = 50
replications = 2
[environment]
kind = "bernoulli"
means = [0.1, 0.4]
[policies.L]
name = "linucb"
"""
NO_ENVIRONMENT = """
[run]
horizon = 50
[policies.UCB1]
name = "ucb1"
"""
MISSPELT_POLICY = """
[[experiments]]
name = "hero"
arms = ["red", "green"]
policy = { name = "thompsn" }
"""
UNREWARDED_LOG = "arm,reward,propensity\nred,1.0,0.5\ngreen,,0.5\n"


def banditkit(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60.0):
    """Run the command line in ``cwd`` with this worktree's package; the completed process."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "banditkit.cli", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# (case, files written to the working folder, command-line arguments, environment, exit code, fragments of
# the one error line)
SETUP_MISTAKES = [
    (
        "Bernoulli Thompson on Gaussian rewards",
        {"gauss.toml": GAUSSIAN_THOMPSON},
        ["simulate", "gauss.toml", "--out", "out"],
        {},
        2,
        ["gauss.toml", "'policies.TS'", "accepts rewards in [0.0, 1.0]", "gaussian_thompson"],
    ),
    (
        "LinUCB on a Bernoulli environment",
        {"linucb.toml": BERNOULLI_LINUCB},
        ["simulate", "linucb.toml", "--out", "out"],
        {},
        2,
        ["linucb.toml", "'policies.L'", "is contextual but the environment shows no context"],
    ),
    (
        "a config without [environment]",
        {"bare.toml": NO_ENVIRONMENT},
        ["simulate", "bare.toml", "--out", "out"],
        {},
        2,
        ["bare.toml", "'environment'", "must be a table ([environment] section)"],
    ),
    (
        "a file path as the store",
        {},
        ["serve", "--store", "./foo.db"],
        {},
        2,
        ["store must be", "'./foo.db'", "sqlite:///./foo.db"],
    ),
    (
        "a port that is not a number",
        {},
        ["serve", "--store", "memory://"],
        {"BANDITKIT_PORT": "abc"},
        2,
        ["BANDITKIT_PORT='abc'", "valid integer"],
    ),
    (
        "a SQLite file in a folder that does not exist",
        {},
        ["serve", "--store", "sqlite:///nonexistent_dir/x.db"],
        {},
        2,
        ["sqlite:///nonexistent_dir/x.db", "'nonexistent_dir'", "does not exist"],
    ),
    (
        "a misspelt policy in the experiments file",
        {"experiments.toml": MISSPELT_POLICY},
        ["serve", "--store", "memory://", "--experiments", "experiments.toml"],
        {},
        2,
        ["experiments file 'experiments.toml'", "entry 0 ('hero')", "field 'policy'", "'thompsn'"],
    ),
    (
        "an experiments file that does not exist",
        {},
        ["serve", "--store", "memory://", "--experiments", "nope.toml"],
        {},
        2,
        ["'--experiments'", "'nope.toml' does not exist", "serve --help"],
    ),
    (
        "a header timeout of zero",
        {},
        ["serve", "--store", "memory://", "--header-timeout", "0"],
        {},
        2,
        ["header_timeout_s", "greater than 0", "got 0.0"],
    ),
    (
        "a connection cap of zero in the environment",
        {},
        ["serve", "--store", "memory://"],
        {"BANDITKIT_MAX_CONNECTIONS": "0"},
        2,
        ["BANDITKIT_MAX_CONNECTIONS='0'", "greater than 0"],
    ),
    (
        "a misspelt BANDITKIT_ variable",
        {},
        ["serve"],
        {"BANDITKIT_STROE": "memory://"},
        2,
        ["BANDITKIT_STROE", "did you mean BANDITKIT_STORE?"],
    ),
    (
        "a log with decisions still waiting for their reward",
        {"log.csv": UNREWARDED_LOG},
        ["evaluate", "log.csv", "--policy", "thompson"],
        {},
        2,
        ["reward must be finite", "--drop-unrewarded"],
    ),
]


@pytest.mark.parametrize(
    "files, args, env, code, fragments",
    [case[1:] for case in SETUP_MISTAKES],
    ids=[case[0] for case in SETUP_MISTAKES],
)
def test_a_setup_mistake_is_one_line_naming_what_is_wrong(tmp_path, files, args, env, code, fragments):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    completed = banditkit(*args, cwd=tmp_path, env=env)
    lines = [line for line in (completed.stdout + completed.stderr).splitlines() if line.strip()]
    assert completed.returncode == code, completed.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for fragment in fragments:
        assert fragment in lines[0]
    assert "drop_unrewarded=True" not in lines[0]  # the command line names its flag, not the Python keyword
    assert not (tmp_path / "out").exists()  # nothing ran


def test_debug_shows_the_traceback(tmp_path):
    (tmp_path / "gauss.toml").write_text(GAUSSIAN_THOMPSON)
    completed = banditkit("--debug", "simulate", "gauss.toml", "--out", "out", cwd=tmp_path)
    assert completed.returncode != 0
    assert "Traceback" in completed.stderr and "InvalidParameterError" in completed.stderr


def test_version_and_help(tmp_path):
    from banditkit import __version__

    completed = banditkit("--version", cwd=tmp_path)
    assert completed.returncode == 0 and completed.stdout.strip() == f"banditkit {__version__}"
    for args in (["--help"], ["serve", "--help"], ["evaluate", "--help"]):
        completed = banditkit(*args, cwd=tmp_path)
        assert completed.returncode == 0 and "--help" in completed.stdout
        assert "<bool>" not in completed.stdout  # a flag takes no value


def test_tables_in_a_pipe_keep_every_name_and_number_whole(tmp_path):
    (tmp_path / "two.toml").write_text(
        'title = "[beta] two arms"\n[run]\nhorizon = 100\nreplications = 4\n'
        '[environment]\nkind = "bernoulli"\nmeans = [0.1, 0.4]\n'
        '[policies."Thompson sampling [prior 1, 1]"]\nname = "thompson"\n'
        '[policies."Sliding-window UCB (window 1,000)"]\nname = "sliding_window_ucb"\n'
    )
    completed = banditkit("simulate", "two.toml", "--out", "out", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    # Labels and the title are the config's text, shown as written (not read as markup), each on one line.
    assert any(line.startswith("[beta] two arms") for line in lines)
    for label in ("Thompson sampling [prior 1, 1]", "Sliding-window UCB (window 1,000)"):
        assert any(label in line and "│" in line for line in lines), label
    assert "…" not in completed.stdout

    rows = ["arm,reward,propensity"] + [f"{'abc'[i % 3]},{float(i % 7 == 0)},0.3333333333333333" for i in range(300)]
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    completed = banditkit("evaluate", "log.csv", "--policy", "thompson", "--bootstrap", "50", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    header = next(line for line in completed.stdout.splitlines() if "estimator" in line)
    for column in ("position", "estimator", "value", "95% bootstrap", "95% normal", "ESS", "max weight", "p < 1e-3"):
        assert column in header
    assert any("clipped_ips" in line and "switch" not in line for line in completed.stdout.splitlines())
    assert "…" not in completed.stdout

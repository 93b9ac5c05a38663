"""When the compiled kernels load: not for a first decision, and from numba's on-disk cache once compiled.

Each test runs a fresh interpreter, as a new user's first run does; the timing
itself is reported by ``banditkit bench`` (a timed assertion would be flaky on
a loaded machine). That the switch to the kernels in the middle of a run
changes no decision is ``test_policy_contract.py::test_compiled_path_equals_numpy_path``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from policy_cases import NON_CONTEXTUAL

import banditkit
from banditkit import benchmark

ROOT = Path(banditkit.__file__).parent.parent


def run_fresh(code: str, cache_dir: Path) -> dict:
    """Run ``code`` in a new interpreter on this checkout with numba's cache in ``cache_dir``; its JSON output."""
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(ROOT)}
    environment.pop("BANDITKIT_DISABLE_JIT", None)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=environment
    )
    output: dict = json.loads(result.stdout)
    return output


FIRST_DECISIONS = f"""
import importlib.util, json, sys
import banditkit as bk
from banditkit.policies import _jit
for name in {NON_CONTEXTUAL!r}:
    bandit = bk.Bandit(["a", "b", "c"], policy=name, seed=0)
    bandit.update(bandit.select(), 1.0)
    bandit.update_many(["a", "b"], [0.0, 1.0])
    bandit.select()
print(json.dumps({{"numba_imported": "numba" in sys.modules, "kernels_loaded": _jit.kernels() is not None,
                  "numba_installed": importlib.util.find_spec("numba") is not None}}))
"""


def test_first_decisions_import_no_compiler(tmp_path):
    """Every policy's first decisions run on the numpy path: numba is not even imported, nothing is compiled."""
    report = run_fresh(FIRST_DECISIONS, tmp_path)
    assert report == {"numba_imported": False, "kernels_loaded": False, "numba_installed": True}
    assert [path for path in tmp_path.rglob("*") if path.is_file()] == []  # nothing compiled into numba's cache


COMPILED_DECISION = """
import json
import banditkit as bk
from banditkit.policies import _jit
kernels = _jit.load()
bandit = bk.Bandit(["a", "b", "c"], policy="thompson", seed=0)
bandit.update(bandit.select(), 1.0)
stats = kernels.bernoulli_thompson_choice.stats
print(json.dumps({"hits": sum(stats.cache_hits.values()), "misses": sum(stats.cache_misses.values())}))
"""


@pytest.mark.slow
def test_a_kernel_compiled_once_is_loaded_from_the_cache(tmp_path):
    """The first run on a machine (here ``banditkit bench``'s cold run) compiles the kernel it uses into numba's
    cache; the next process loads it from there, compiling nothing."""
    first, loading = benchmark.first_decision_seconds(tmp_path)
    assert math.isfinite(first) and first > 0 and math.isfinite(loading) and loading > 0
    assert any(path.name.startswith("_jit_kernels.bernoulli_thompson_choice-") for path in tmp_path.rglob("*.nbi"))
    assert run_fresh(COMPILED_DECISION, tmp_path) == {"hits": 1, "misses": 0}

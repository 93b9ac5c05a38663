"""The import graph of banditkit has no cycles, and ``import banditkit`` stays light.

The rule: module A depends on module B when any import statement in A's
source names B, wherever it sits (module level, inside a function, under
``if TYPE_CHECKING:``): a lazy import only moves the cycle to run time.
Relative imports are resolved against A's package; ``from P import x`` is an
edge to ``P.x`` when that is a module of banditkit and to ``P`` otherwise. The
implicit import of a module's parent packages is not an edge (every package
re-exporting its modules would otherwise be a cycle).
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import banditkit

ROOT = Path(banditkit.__file__).parent
HEAVY = ("fastapi", "uvicorn", "redis", "prometheus_client", "matplotlib", "pyarrow", "pyspark", "sklearn", "numba")


def modules() -> dict[str, Path]:
    """Every module of banditkit by dotted name, with its source file."""
    found = {"banditkit": ROOT / "__init__.py"}
    for info in pkgutil.walk_packages([str(ROOT)], "banditkit."):
        relative = Path(*info.name.split(".")[1:])
        found[info.name] = ROOT / relative / "__init__.py" if info.ispkg else (ROOT / relative).with_suffix(".py")
    return found


def imported(name: str, source: Path, known: set[str]) -> set[str]:
    """The banditkit modules that ``name`` imports anywhere in its source."""
    package = name if source.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                prefixes = (".".join(parts[:i]) for i in range(len(parts), 0, -1))
                targets.update(next(([p] for p in prefixes if p in known), []))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                submodule = f"{origin}.{alias.name}"
                if submodule in known:
                    targets.add(submodule)
                elif origin in known:
                    targets.add(origin)
    targets.discard(name)
    return targets


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported(name, source, set(found)) for name, source in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each as one cycle through them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_one_cycle(graph, set(component)) for component in components]


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, for the failure message."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    return paths[node] + [start]
                if target not in paths:
                    paths[target] = paths[node] + [target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"{sorted(component)} is not strongly connected")


def test_the_import_graph_has_no_cycles():
    graph = import_graph()
    assert {"banditkit.bandit", "banditkit.sim.results", "banditkit.service.model"} <= set(graph)
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in found)


def test_the_graph_sees_every_kind_of_import(tmp_path):
    """The rule catches imports at module level, in functions and under TYPE_CHECKING, relative or absolute."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    known = {"banditkit.sim", "banditkit.sim.results", "banditkit.sim.table", "banditkit.errors", "banditkit"}
    source = ROOT / "sim" / "plotting.py"
    assert imported("banditkit.sim.plotting", source, known) == {"banditkit.sim.table"}
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .results import X\n"
        "def f():\n    from ..errors import E\n    import banditkit.sim.table\nfrom . import results\n"
    )
    assert imported("banditkit.sim.sample", sample, known) == {
        "banditkit.sim.results",
        "banditkit.errors",
        "banditkit.sim.table",
    }


def test_import_banditkit_stays_light():
    """The core imports numpy and scipy; the service, plotting, IO and compiled extras load on first use."""
    code = f"import sys, banditkit, banditkit.bandit; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT.parent)
    loaded = result.stdout.strip()
    assert loaded == "", f"import banditkit loaded {loaded}"


def test_offline_evaluation_imports_no_spark():
    """``banditkit.ope`` (and even ``banditkit.ope.spark``) leave pyspark unimported until Spark is asked for."""
    code = (
        "import sys, banditkit, banditkit.ope, banditkit.ope.spark; "
        "print(','.join(m for m in ('pyspark', 'py4j') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT.parent)
    assert result.stdout.strip() == "", f"import banditkit.ope loaded {result.stdout.strip()}"

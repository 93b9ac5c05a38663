"""Every public name of banditkit, banditkit.sim and banditkit.ope has a docstring, and the docstring an example.

The names are those the docs site's Python reference shows: each package's ``__all__``, read statically by
griffe (as mkdocstrings reads them), each resolved to the object it names. An example is a numpydoc
``Examples`` section or a ``>>>`` line. The examples of classes and functions run as doctests (pytest collects
banditkit/ with ``--doctest-modules``); those of module attributes, which doctest cannot find, run here.
"""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import griffe
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("banditkit", "banditkit.sim", "banditkit.ope", "banditkit.ope.spark")


def _public_objects() -> dict[str, griffe.Object]:
    loaded = griffe.load("banditkit", search_paths=[str(ROOT)], resolve_aliases=True, resolve_external=False)
    assert isinstance(loaded, griffe.Module)
    found: dict[str, griffe.Object] = {}
    for package in PACKAGES:
        module = loaded if package == "banditkit" else loaded[package.removeprefix("banditkit.")]
        assert module.exports, f"{package} declares no __all__"
        for export in module.exports:
            name = export if isinstance(export, str) else export.name
            member = module[name]
            found[f"{package}.{name}"] = member.final_target if member.is_alias else member
    return found


PUBLIC = _public_objects()


def _docstring(name: str) -> str:
    docstring = PUBLIC[name].docstring
    return docstring.value if docstring is not None else ""


def _has_example(text: str) -> bool:
    return ">>>" in text or re.search(r"^Examples\n-{8,}$", text, re.MULTILINE) is not None


def test_the_packages_export_names():
    assert {"banditkit.Bandit", "banditkit.sim.run", "banditkit.ope.evaluate"} <= PUBLIC.keys()


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_a_public_name_has_a_docstring_with_an_example(name):
    text = _docstring(name)
    assert text.strip(), f"{name} ({PUBLIC[name].path}) has no docstring"
    assert _has_example(text), f"{name} ({PUBLIC[name].path}): its docstring has no example (>>> or Examples)"


ATTRIBUTES = sorted(name for name, target in PUBLIC.items() if target.is_attribute and _has_example(_docstring(name)))


@pytest.mark.parametrize("name", ATTRIBUTES)
def test_the_example_of_a_public_attribute_runs(name):
    target = PUBLIC[name]
    module = importlib.import_module(target.module.path)
    test = doctest.DocTestParser().get_doctest(
        _docstring(name), dict(vars(module)), name, str(target.filepath), target.lineno or 0
    )
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    output: list[str] = []
    runner.run(test, out=output.append)
    assert runner.failures == 0 and test.examples, "".join(output) or f"{name}: no example to run"

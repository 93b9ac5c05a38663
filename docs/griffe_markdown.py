"""A griffe extension for the API reference: the package's reST-flavoured docstrings read as markdown.

The docstrings are written for ``help()`` and doctest as much as for the site: a doctest may stand outside an
``Examples`` section (a short docstring, a module attribute's), and cross-references are Sphinx roles
(``:class:`Bandit```). mkdocstrings would render the first as nested block quotes and print the roles raw; this
fences such doctests as ``pycon`` code and turns each role into a code span. ``Examples`` sections are left to
the numpydoc parser, which renders their doctests itself.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):`[~.]?([^`]+)`")
UNDERLINE = re.compile(r"-{3,}")


def as_markdown(text: str) -> str:
    """``text`` with Sphinx roles as code spans and doctests outside an ``Examples`` section fenced."""
    lines, out, section, i = text.splitlines(), [], None, 0
    while i < len(lines):
        line = lines[i]
        if line.strip() and i + 1 < len(lines) and UNDERLINE.fullmatch(lines[i + 1].strip()):
            section = line.strip()
            out += [line, lines[i + 1]]
            i += 2
        elif line.startswith(">>>") and section != "Examples":
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i])
                i += 1
            out += [*([""] if out and out[-1].strip() else []), "```pycon", *block, "```"]
        else:
            out.append(ROLE.sub(r"`\1`", line))
            i += 1
    return "\n".join(out)


class DocstringsAsMarkdown(griffe.Extension):
    """Rewrite every docstring with :func:`as_markdown` once the package is loaded, before it is parsed."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = as_markdown(obj.docstring.value)

"""Text cells that a spreadsheet would run as formulas, written and read back exactly.

A spreadsheet opening a CSV treats a cell that starts with ``=``, ``+``, ``-``
or ``@`` (and, in some, a tab or a carriage return) as a formula: a client's
``unit`` of ``=HYPERLINK(...)`` in the decision log would run when an analyst
opens it. The common convention (OWASP's "CSV injection") is to prefix such a
cell with ``'``, which spreadsheets show as a text marker and hide.

To keep the round trip exact, a cell that already starts with quotes before a
formula character gets one more quote, and reading removes exactly one:

>>> escape_cell("=1+1"), escape_cell("'=1+1"), escape_cell("'plain"), escape_cell("red")
("'=1+1", "''=1+1", "'plain", 'red')
>>> all(unescape_cell(escape_cell(text)) == text for text in ["=1+1", "'=1+1", "''-2", "'x", "-", "", "a=b"])
True
"""

from __future__ import annotations

#: First characters that make a spreadsheet read a cell as a formula.
FORMULA_START = frozenset("=+-@\t\r")


def _is_formula_after_quotes(text: str) -> bool:
    """True when ``text``, leading quotes aside, starts with a formula character."""
    rest = text.lstrip("'")
    return bool(rest) and rest[0] in FORMULA_START


def escape_cell(text: str) -> str:
    """``text`` prefixed with ``'`` when a spreadsheet would run it (leading quotes aside), else unchanged."""
    return "'" + text if _is_formula_after_quotes(text) else text


def unescape_cell(text: str) -> str:
    """The inverse of :func:`escape_cell`: one leading ``'`` removed from a cell it escaped."""
    return text[1:] if text.startswith("'") and _is_formula_after_quotes(text) else text

"""The commands README.md and docs/*.md mark runnable, run as printed.

The convention: a line ``<!-- runnable -->`` right before a code block (indented or fenced) marks each
non-empty line of the block as a command a reader can paste; ``# ...`` ends a line's command. Commands are
``banditkit ...`` or ``python ...``; the block's commands run in order in a fresh folder where ``examples/``
is this repository's, so a command may read what an earlier one of its block wrote.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- runnable -->"
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Block:
    document: str
    line: int
    commands: tuple[str, ...]


def runnable_blocks(path: Path) -> list[Block]:
    """The commands of every block marked runnable in ``path``, with the line of its marker."""
    lines = path.read_text().splitlines()
    blocks = []
    for number, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        start = number + 1
        while start < len(lines) and not lines[start].strip():
            start += 1
        body: list[str] = []
        if start < len(lines) and lines[start].lstrip().startswith("```"):
            end = start + 1
            while end < len(lines) and not lines[end].lstrip().startswith("```"):
                body.append(lines[end])
                end += 1
        else:
            end = start
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                body.append(lines[end])
                end += 1
        commands = tuple(command for text in body if (command := re.split(r"\s#", text)[0].strip()))
        assert commands, f"{path.name}:{number + 1}: {MARKER} is not followed by a code block of commands"
        blocks.append(Block(path.relative_to(ROOT).as_posix(), number + 1, commands))
    return blocks


BLOCKS = [block for path in DOCUMENTS for block in runnable_blocks(path)]


def argv(command: str) -> list[str]:
    """The command as this interpreter and this worktree's package run it."""
    words = shlex.split(command)
    if words[0] == "banditkit":
        return [sys.executable, "-m", "banditkit.cli", *words[1:]]
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    raise AssertionError(f"a runnable command starts with banditkit or python, got {command!r}")


def test_the_documents_mark_commands_to_run():
    """The marker is found where it is used: the first steps of Get started and the offline evaluation's demo."""
    marked = {block.document for block in BLOCKS}
    assert {"docs/index.md", "docs/ope.md"} <= marked
    commands = [command for block in BLOCKS for command in block.commands]
    assert "python examples/quickstart.py" in commands and "banditkit --version" in commands


@pytest.mark.parametrize("block", BLOCKS, ids=[f"{block.document}:{block.line}" for block in BLOCKS])
def test_a_runnable_block_runs_as_printed(block, tmp_path):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for command in block.commands:
        completed = subprocess.run(
            argv(command), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert completed.returncode == 0, f"{block.document}:{block.line}: {command}\n{completed.stderr}"
        assert "Traceback" not in completed.stderr, command

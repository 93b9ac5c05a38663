"""The commands and code README.md and docs/*.md mark runnable, run as printed.

The convention: a line ``<!-- runnable -->`` right before a code block (indented or fenced) marks it to run.
In a fenced ```` ```python ```` block the whole block is one Python script; in any other block each non-empty
line is a command a reader can paste (``# ...`` ends a line's command), ``banditkit ...`` or ``python ...``.
A block runs in a fresh folder where ``examples/`` is this repository's, so a command may read what an earlier
one of its block wrote. A fenced Python block followed by a line ``It prints`` and an indented block must print
exactly that (the numbers a page quotes are the ones its code gives).

A step-by-step page marks its blocks ``<!-- runnable: session -->`` instead: they run in order, as one test,
in one folder, so a step uses what the steps before it wrote. ``<!-- runnable: background -->`` marks a
session's server, one ``banditkit serve`` command: it is started in the background, the next block runs once
``/v1/health`` answers, and it is stopped (SIGTERM, as Ctrl+C stops it) when the session ends. The session
sets ``BANDITKIT_PORT`` to a free port, which the server reads as its port and the page's code reads to reach
it, so sessions run beside any other server on the machine.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!-- runnable(?:: (?P<mode>session|background))? -->")
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]  # the guides in docs/guides/ too
TIMEOUT_S = 120


@dataclass(frozen=True)
class Block:
    document: str
    line: int
    commands: tuple[str, ...]  # the commands of a shell block, or the one script of a Python block
    python: bool = False
    mode: str = "alone"  # alone, session or background
    prints: str | None = None  # what a Python block must print, when the page shows it ("It prints")

    @property
    def name(self) -> str:
        return f"{self.document}:{self.line}"


def runnable_blocks(path: Path) -> list[Block]:
    """The code of every block marked runnable in ``path``, with the line of its marker."""
    lines = path.read_text().splitlines()
    blocks = []
    for number, line in enumerate(lines):
        marker = MARKER.fullmatch(line.strip())
        if marker is None:
            continue
        start = number + 1
        while start < len(lines) and not lines[start].strip():
            start += 1
        body: list[str] = []
        fence = lines[start].strip() if start < len(lines) else ""
        if fence.startswith("```"):
            end = start + 1
            while end < len(lines) and not lines[end].lstrip().startswith("```"):
                body.append(lines[end])
                end += 1
        else:
            end = start
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                body.append(lines[end])
                end += 1
        python = fence == "```python"
        prints = printed_after(lines, end + 1) if python else None
        if python:
            commands: tuple[str, ...] = ("\n".join(body),)
        else:
            commands = tuple(command for text in body if (command := re.split(r"\s#", text)[0].strip()))
        where = f"{path.name}:{number + 1}"
        assert any(c.strip() for c in commands), f"{where}: {line.strip()} is not followed by a code block"
        mode = marker["mode"] or "alone"
        if mode == "background":
            assert not python and len(commands) == 1 and commands[0].startswith("banditkit serve"), (
                f"{where}: a background block is one `banditkit serve` command"
            )
        document = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
        blocks.append(Block(document, number + 1, commands, python, mode, prints))
    return blocks


def printed_after(lines: list[str], start: int) -> str | None:
    """The indented block under an ``It prints`` line that follows a code block, if there is one."""
    while start < len(lines) and not lines[start].strip():
        start += 1
    if start >= len(lines) or lines[start].strip() != "It prints":
        return None
    start += 1
    while start < len(lines) and not lines[start].strip():
        start += 1
    shown = []
    while start < len(lines) and lines[start].startswith("    "):
        shown.append(lines[start][4:])
        start += 1
    return "\n".join(shown)


BLOCKS = [block for path in DOCUMENTS for block in runnable_blocks(path)]
ALONE = [block for block in BLOCKS if block.mode == "alone"]
SESSIONS = sorted({block.document for block in BLOCKS if block.mode != "alone"})


def argv(command: str) -> list[str]:
    """The command as this interpreter and this worktree's package run it."""
    words = shlex.split(command)
    if words[0] == "banditkit":
        return [sys.executable, "-m", "banditkit.cli", *words[1:]]
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    raise AssertionError(f"a runnable command starts with banditkit or python, got {command!r}")


def run_block(block: Block, folder: Path, env: dict[str, str]) -> None:
    """Run a shell block's commands in order, or a Python block as one script; each must succeed."""
    for command in block.commands:
        args = [sys.executable, "-c", command] if block.python else argv(command)
        completed = subprocess.run(
            args, cwd=folder, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
        shown = f"the Python block\n{command}" if block.python else command
        assert completed.returncode == 0, f"{block.name}: {shown}\n{completed.stderr}"
        assert "Traceback" not in completed.stderr, f"{block.name}: {shown}\n{completed.stderr}"
        if block.prints is not None:
            assert completed.stdout.rstrip() == block.prints, f"{block.name} printed\n{completed.stdout}"


def start_server(block: Block, folder: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start a background block's server and wait until its health endpoint answers."""
    import httpx

    log = (folder / f"server-{block.line}.log").open("w")
    process = subprocess.Popen(argv(block.commands[0]), cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{block.name}: the server exited\n{Path(log.name).read_text()}"
        try:
            if httpx.get(f"http://127.0.0.1:{env['BANDITKIT_PORT']}/v1/health", timeout=1.0).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    stop_server(process)
    raise AssertionError(f"{block.name}: the server did not answer within 60 s\n{Path(log.name).read_text()}")


def stop_server(process: subprocess.Popen) -> None:
    """Stop a server as Ctrl+C in its terminal does, and wait for it to finish."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def folder_with_examples(tmp_path: Path) -> Path:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    return tmp_path


def test_the_documents_mark_commands_to_run():
    """The marker is found where it is used: Get started, the offline evaluation's demo, the tutorial, a guide."""
    marked = {block.document for block in BLOCKS}
    assert {"docs/index.md", "docs/ope.md", "docs/tutorial.md", "docs/guides/ope-pitfalls.md"} <= marked
    commands = [command for block in BLOCKS for command in block.commands]
    assert "python examples/quickstart.py" in commands and "banditkit --version" in commands
    tutorial = [block for block in BLOCKS if block.document == "docs/tutorial.md"]
    assert all(block.mode != "alone" for block in tutorial), "the tutorial's steps run as one session"
    assert sum(block.mode == "background" for block in tutorial) == 1
    assert any(block.python for block in tutorial) and any(not block.python for block in tutorial)


def test_the_markers_are_parsed_as_documented(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- runnable -->\n\n    banditkit --version   # a comment\n    python -V\n\ntext\n"
        "<!-- runnable: session -->\n```python\nimport banditkit  # kept: a script\nprint(1)\n```\n"
        "\nIt prints\n\n    1\n\n"
        "<!-- runnable: background -->\n```\nbanditkit serve --store memory://\n```\n"
        "<!-- not runnable -->\n    banditkit demo\n"
    )
    alone, script, server = runnable_blocks(page)
    assert alone.commands == ("banditkit --version", "python -V") and (alone.mode, alone.python) == ("alone", False)
    assert script.commands == ("import banditkit  # kept: a script\nprint(1)",) and script.python
    assert (script.mode, script.line, script.prints, alone.prints) == ("session", 7, "1", None)
    assert server.commands == ("banditkit serve --store memory://",) and server.mode == "background"
    page.write_text("<!-- runnable: background -->\n    python -V\n")
    with pytest.raises(AssertionError, match="one `banditkit serve` command"):
        runnable_blocks(page)


def test_the_tutorial_shows_its_config_as_it_is():
    """The TOML the tutorial prints is the file its first command simulates, word for word."""
    page = (ROOT / "docs" / "tutorial.md").read_text()
    shown = re.search(r"```toml\n(.*?)```", page, re.DOTALL)
    assert shown is not None and "banditkit simulate examples/tutorial/buttons.toml" in page
    assert shown[1] == (ROOT / "examples" / "tutorial" / "buttons.toml").read_text()


def test_the_peer_side_of_the_guides_is_the_code_that_runs_in_the_peers_environment():
    """A ``<!-- peer: NAME -->`` block of docs/coming-from.md is the body of benchmarks/peers/guide_peers.NAME()."""
    import ast
    import textwrap

    page = (ROOT / "docs" / "coming-from.md").read_text()
    shown = dict(re.findall(r"<!-- peer: (\w+) -->\n```python\n(.*?)```", page, re.DOTALL))
    source = (ROOT / "benchmarks" / "peers" / "guide_peers.py").read_text()
    lines = source.splitlines(keepends=True)
    bodies = {
        node.name: textwrap.dedent("".join(lines[node.lineno : node.end_lineno]))
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef)
    }
    assert set(shown) == {"mabwiser", "obp", "vw"}
    for name, code in shown.items():
        assert code == bodies[name], f"docs/coming-from.md shows {name}'s code other than guide_peers.{name}()"


@pytest.mark.parametrize("block", ALONE, ids=[block.name for block in ALONE])
def test_a_runnable_block_runs_as_printed(block, tmp_path):
    run_block(block, folder_with_examples(tmp_path), {**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("document", SESSIONS)
def test_a_runnable_session_runs_in_order(document, tmp_path):
    from banditkit.service.runner import free_port

    folder = folder_with_examples(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BANDITKIT_PORT": str(free_port())}
    servers: list[tuple[Block, subprocess.Popen]] = []
    try:
        for block in (block for block in BLOCKS if block.document == document):
            if block.mode == "background":
                servers.append((block, start_server(block, folder, env)))
            else:
                run_block(block, folder, env)
    finally:
        for _, process in servers:
            stop_server(process)
    for block, process in servers:
        output = (folder / f"server-{block.line}.log").read_text()
        stopped = process.returncode in (0, 130)  # 130: the status of a command stopped by Ctrl+C
        clean = "Application shutdown complete" in output and "Traceback" not in output
        assert stopped and clean, f"{block.name}: the server failed\n{output}"

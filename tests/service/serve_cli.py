"""``banditkit serve`` in a child process, as a user runs it: the real command line, its log read as it comes.

The log is read from a pipe (not a file), so it keeps flowing when a test limits the server's file sizes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from banditkit.service.runner import free_port

ROOT = Path(__file__).resolve().parents[2]


class Serve:
    """One ``banditkit serve`` process on a free port of 127.0.0.1, with ``options`` on its command line and
    ``env`` (``BANDITKIT_*`` settings) in its environment; no token."""

    def __init__(self, cwd: Path, options: tuple[str, ...], env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cwd = cwd
        self.options = options
        self.env = env
        self.lines: list[str] = []
        self.process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def start(self, timeout_s: float = 60.0) -> Serve:
        command = [sys.executable, "-m", "banditkit.cli", "serve", "--port", str(self.port), "--log-level", "warning"]
        environment = {
            **os.environ,
            "PYTHONPATH": str(ROOT),  # this checkout's banditkit, whatever is installed
            "BANDITKIT_ADMIN_TOKEN": "",
            "BANDITKIT_CLIENT_TOKENS": "",
            **self.env,
        }
        self.process = process = subprocess.Popen(
            [*command, *self.options],
            cwd=self.cwd,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout_s
        while True:
            assert process.poll() is None, f"banditkit serve exited: {self.log()}"
            assert time.monotonic() < deadline, f"banditkit serve did not answer in {timeout_s} s: {self.log()}"
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)

    def _read(self, process: subprocess.Popen) -> None:
        assert process.stderr is not None  # stderr=PIPE
        for line in process.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def log(self) -> str:
        """What the server wrote to its log (stderr) so far."""
        return "\n".join(self.lines)

    def stop(self) -> None:
        """SIGTERM, then wait for the process and the end of its log."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._reader is not None:
            self._reader.join(5)


@pytest.fixture
def banditkit_serve(tmp_path):
    """``banditkit_serve(*options, env=None)``: a started :class:`Serve` in ``tmp_path``; all are stopped at the end."""
    started: list[Serve] = []

    def start(*options: str, env: dict[str, str] | None = None) -> Serve:
        server = Serve(tmp_path, options, env or {})
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()

"""A reference reward service: Beta parameters per arm from a CSV of outcomes, for an experiment's ``source``.

Reads ``arm,reward`` rows (a header line is allowed; rewards in [0, 1], 1 a success) and answers every GET
with the Beta-Bernoulli posterior of each arm under a uniform prior::

    {"arms": {"red": {"alpha": 3, "beta": 7}, ...}, "rows": 8}

alpha = 1 + successes, beta = 1 + failures (a fractional reward r adds r and 1 - r). The CSV is read again
whenever its modification time or size changes, so appending outcomes moves the answer at the next poll.
An unreadable CSV answers 503 (the decision service then keeps the last good parameters).

Run it, then point an experiment at it::

    python examples/reward_source.py outcomes.csv --port 8081 --arms red,green,blue
    curl -X POST localhost:8000/v1/experiments -H 'Content-Type: application/json' -d '{"name": "hero",
      "arms": ["red", "green", "blue"], "source": {"url": "http://127.0.0.1:8081/", "refresh_s": 60}}'
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Outcomes:
    """The CSV's Beta parameters, read again when the file changes (thread-safe)."""

    def __init__(self, path: Path, arms: list[str] | None = None) -> None:
        self.path = path
        self.arms = arms
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None
        self._answer: dict | None = None

    def answer(self) -> dict:
        """The answer for the CSV as it is now; OSError or ValueError when it cannot be read."""
        stat = os.stat(self.path)
        seen = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if seen != self._seen or self._answer is None:
                self._answer, self._seen = self._read(), seen
            return self._answer

    def _read(self) -> dict:
        successes: dict[str, float] = {arm: 0.0 for arm in self.arms or []}
        failures: dict[str, float] = dict.fromkeys(successes, 0.0)
        rows = 0
        with open(self.path, newline="") as file:
            for line, row in enumerate(csv.reader(file), start=1):
                if not row or (line == 1 and row[:2] == ["arm", "reward"]):
                    continue
                if len(row) != 2:
                    raise ValueError(f"{self.path}:{line}: expected arm,reward, got {row!r}")
                arm, text = row[0].strip(), row[1].strip()
                reward = float(text)
                if not math.isfinite(reward) or not 0.0 <= reward <= 1.0:
                    raise ValueError(f"{self.path}:{line}: reward must be in [0, 1], got {text!r}")
                if self.arms is not None and arm not in successes:
                    raise ValueError(f"{self.path}:{line}: arm {arm!r} is not one of {self.arms}")
                successes[arm] = successes.get(arm, 0.0) + reward
                failures[arm] = failures.get(arm, 0.0) + (1.0 - reward)
                rows += 1
        arms = {arm: {"alpha": 1.0 + successes[arm], "beta": 1.0 + failures[arm]} for arm in successes}
        return {"arms": arms, "rows": rows}


def make_server(outcomes: Outcomes, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server answering every GET with ``outcomes``' parameters (call ``serve_forever``)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                status, body = 200, json.dumps(outcomes.answer()).encode()
            except (OSError, ValueError) as error:
                status, body = 503, json.dumps({"detail": str(error)}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("csv", type=Path, help="arm,reward rows")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081, help="0: any free port (printed)")
    parser.add_argument("--arms", help="comma-separated arms, answered even before their first row")
    options = parser.parse_args(argv)
    arms = None if options.arms is None else [arm.strip() for arm in options.arms.split(",") if arm.strip()]
    server = make_server(Outcomes(options.csv, arms), options.host, options.port)
    print(f"serving http://{options.host}:{server.server_address[1]}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())

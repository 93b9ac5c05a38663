"""Run the service beside the caller: uvicorn in a thread, or in a child process (the demo, tests, benchmarks)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from .app import create_app
from .config import Settings
from .metrics import Metrics


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running(settings: Settings, timeout_s: float = 20.0, app=None) -> Iterator[str]:
    """Serve ``settings`` with uvicorn in a thread; yields the base URL and stops the server on exit.

    The server shares this process, so pass ``tune_interpreter=False`` unless its GIL and garbage
    collector settings are wanted here too. ``app`` (default ``create_app(settings)``) lets the caller
    keep a handle on the app it serves, e.g. to read ``app.state.engine``.
    """
    import uvicorn

    from .connections import ServerConfig

    port = settings.port or free_port()
    config = ServerConfig(
        create_app(settings) if app is None else app,
        settings,
        host=settings.safe_host(),
        port=port,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="banditkit-service", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the decision service did not start on port {port}")
        time.sleep(0.01)
    try:
        yield f"http://{settings.safe_host()}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)


def serve(settings: Settings, *, workers: int = 1, log_level: str = "info") -> None:
    """Run the decision service in this process until it is stopped.

    With ``workers`` > 1, that many child processes share the listening socket, each building its app from
    the environment. The open-file limit is raised to the hard limit first; the connections' timeouts and cap are the
    settings' (:mod:`.connections`).
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from .connections import ServerConfig, raise_descriptor_limit

    raise_descriptor_limit()
    options = {"host": settings.safe_host(), "port": settings.port, "log_level": log_level}
    if settings.metrics and settings.metrics_dir is not None:  # the counts of an earlier server are not this one's
        settings.metrics_dir.mkdir(parents=True, exist_ok=True)
        Metrics.clear_folder(settings.metrics_dir)
    if workers == 1:
        server = uvicorn.Server(ServerConfig(create_app(settings), settings, **options))
        server.run()
        if not server.started:
            sys.exit(3)  # uvicorn's start-up failure status (the port is taken, the store would not open)
        return
    # Each worker process builds its app from the environment. uvicorn stops every worker when a restarted
    # one fails its start-up: during a Redis outage a restarted worker must wait for Redis instead.
    update: dict = {"wait_for_store": True}
    with contextlib.ExitStack() as cleanup:
        if settings.metrics and settings.metrics_dir is None:  # the workers add up each other's counts there
            folder = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="banditkit-metrics-"))
            update["metrics_dir"] = Path(folder)
        os.environ.update(settings_env(settings.model_copy(update=update)))
        config = ServerConfig("banditkit.service.app:create_app", settings, factory=True, workers=workers, **options)
        Multiprocess(config, sockets=[config.bind_socket()]).run()


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as the ``BANDITKIT_*`` environment variables that reproduce them in another process."""
    env = {}
    for name, value in settings.model_dump().items():
        if name == "client_tokens":
            value = ",".join(token.get_secret_value() for token in value)
        elif value is None:
            value = ""
        elif hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"BANDITKIT_{name.upper()}"] = str(value)
    return env


class ServiceProcess:
    """``banditkit serve`` in a child process: a real, separate server that can be killed.

    Its settings go to it in the environment.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = settings.port or free_port()
        self.base_url = f"http://{settings.safe_host()}:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> ServiceProcess:
        import httpx

        root = Path(__file__).resolve().parents[2]
        env = {
            **os.environ,
            **settings_env(self.settings),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
        }
        self.process = process = subprocess.Popen(
            [sys.executable, "-m", "banditkit.cli", "serve", "--port", str(self.port), "--log-level", "warning"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                assert process.stderr is not None  # stderr=PIPE
                raise RuntimeError(f"the decision service exited: {process.stderr.read().decode()}")
            try:
                if httpx.get(f"{self.base_url}/v1/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the decision service did not start on port {self.port}")

    def kill(self) -> None:
        """Kill with SIGKILL (kill -9): no shutdown handler runs."""
        if self.process is None:
            raise RuntimeError("the decision service process was never started")
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM (the lifespan closes the store), then wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

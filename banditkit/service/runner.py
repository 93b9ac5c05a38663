"""Run the service in a background thread of this process (the demo, tests, embedded use)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from .app import create_app
from .config import Settings


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running(settings: Settings, timeout_s: float = 20.0) -> Iterator[str]:
    """Serve ``settings`` with uvicorn in a thread; yields the base URL and stops the server on exit."""
    import uvicorn

    port = settings.port or free_port()
    config = uvicorn.Config(create_app(settings), host=settings.safe_host(), port=port, log_level="warning",
                            lifespan="on")
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

"""The server's connections: deadlines for reading a request, and a cap on open connections.

uvicorn's HTTP protocol times a connection out only after answering a request
on it (``timeout_keep_alive``): a connection that sends nothing, half a request
line or half a body keeps its file descriptor for ever, and enough of them
(anyone can open them, no token needed) exhaust the process's descriptors, after
which every new connection fails. :class:`GuardedProtocol` adds what is missing
with one timer per connection, set only when what the connection waits for
changes:

- a request's head (request line and headers) must arrive within
  ``header_timeout_s`` of the connection opening, or of the head's first byte
  on a kept-alive connection; its body within ``body_timeout_s`` of the head.
  A deadline is fixed when its wait starts, so a client trickling one byte at
  a time gains nothing. A request that arrives whole sets no timer.
- between requests, uvicorn's own keep-alive timer (``keep_alive_timeout_s``).

Open connections are capped below the descriptor limit (``max_connections``,
by default 90% of the limit, which :func:`raise_descriptor_limit` first lifts
to the hard limit). At the cap, the connections waiting longest for a request
are closed, those that never sent a whole one first, so a client with a
request to send still gets in; when every connection has a request in flight,
a new one is answered 503 and closed. One warning is logged when the cap is
reached and one when the count is back under it.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import resource
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from .config import Settings

logger = logging.getLogger("banditkit.service")

#: Descriptors kept free for the store, the log and the listening socket: 10% of the limit, at least this many.
MIN_SPARE_DESCRIPTORS = 64
_HEAD, _BODY = "head", "body"
_REFUSED_BODY = json.dumps({"detail": "the server is at its connection limit, retry in 1 s"}).encode()
_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nretry-after: 1\r\nconnection: close\r\n\r\n%s" % (len(_REFUSED_BODY), _REFUSED_BODY)
)


def raise_descriptor_limit() -> int:
    """Lift this process's soft limit on open files to its hard limit, where the system allows.

    Returns the soft limit the process has then.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # an unlimited hard limit some systems refuse as a soft one
            logger.debug("open-file limit kept at %d (hard limit %d)", soft, hard)
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_cap(requested: int | None) -> int:
    """The open connections a server process allows.

    ``requested`` (None: as many as the descriptor limit allows), and never more than the limit less its
    spare descriptors (:data:`MIN_SPARE_DESCRIPTORS`).
    """
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    limit = soft if soft != resource.RLIM_INFINITY else 1 << 20
    bound = max(1, limit - max(MIN_SPARE_DESCRIPTORS, limit // 10))
    if requested is not None and requested > bound:
        logger.warning(
            "max_connections=%d is over what %d open files allow; capping connections at %d", requested, limit, bound
        )
    return bound if requested is None else min(requested, bound)


class ConnectionGuard:
    """The cap on one server process's open connections, and the count of what was closed at it."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self.resume_below = max(1, max_connections * 9 // 10)
        self.closing = 0  # connections closed to make room whose close has not completed yet
        self.capped = False
        self.closed = 0  # waiting connections closed at the cap (this episode)
        self.refused = 0  # new connections refused at the cap (this episode)

    def make_room(self, newcomer: GuardedProtocol, connections: set) -> None:
        """At the cap: close a batch of the connections waiting longest for a request.

        When every connection has a request in flight, ``newcomer`` is refused instead.
        """
        if not self.capped:
            self.capped, self.closed, self.refused = True, 0, 0
            logger.warning(
                "%d connections open, the cap (max_connections=%d): closing the connections that wait longest "
                "for a request",
                len(connections) - self.closing,
                self.max_connections,
            )
        waiting = [
            connection
            for connection in connections
            if connection is not newcomer and isinstance(connection, GuardedProtocol) and connection.idle
        ]
        if not waiting:
            self.refused += 1
            newcomer.refuse()
            return
        # A batch per scan: the scan is linear in the open connections.
        batch = heapq.nsmallest(max(1, self.max_connections // 50), waiting, key=GuardedProtocol.eviction_order)
        for connection in batch:
            connection.evict()
        self.closed += len(batch)

    def lost(self, connection: GuardedProtocol, connections: set) -> None:
        """After ``connection`` closed: the end of a capped episode once the count is well under the cap."""
        if connection.closed_here:
            self.closing -= 1
        if self.capped and len(connections) - self.closing < self.resume_below:
            self.capped = False
            logger.warning(
                "%d connections open, under the cap (max_connections=%d) again: %d waiting connections were "
                "closed and %d new ones refused",
                len(connections) - self.closing,
                self.max_connections,
                self.closed,
                self.refused,
            )


class ServerConfig(uvicorn.Config):
    """uvicorn's configuration for the decision service.

    :class:`GuardedProtocol` with the settings' timeouts and connection cap; ``options`` are uvicorn's
    (host, port, log_level, workers, ...).
    """

    def __init__(self, app: Any, settings: Settings, **options: Any) -> None:
        super().__init__(
            app,
            http=GuardedProtocol,
            timeout_keep_alive=settings.keep_alive_timeout_s,  # type: ignore[arg-type]  # a delay for call_later
            **options,
        )
        self.header_timeout_s = settings.header_timeout_s
        self.body_timeout_s = settings.body_timeout_s
        self.max_connections = settings.max_connections
        self.guard: ConnectionGuard | None = None  # made in the serving process (each worker has its own)

    def load(self) -> None:
        super().load()
        self.guard = ConnectionGuard(connection_cap(self.max_connections))


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with request read deadlines and the connection cap (module docstring)."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        assert isinstance(config, ServerConfig) and config.guard is not None  # loaded by the protocol's __init__
        self.guard = config.guard
        self.header_timeout_s = config.header_timeout_s
        self.body_timeout_s = config.body_timeout_s
        self.deadline: asyncio.TimerHandle | None = None
        self.waiting: str | None = None  # what the deadline is for: _HEAD, _BODY or nothing
        self.opened = 0.0
        self.closed_here = False
        self.upgraded = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.opened = self.loop.time()
        self._wait(_HEAD)
        guard = self.guard
        if len(self.connections) - guard.closing > guard.max_connections:
            guard.make_room(self, self.connections)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        super().connection_lost(exc)
        if self.closed_here or self.guard.capped:
            self.guard.lost(self, self.connections)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.upgraded:  # a WebSocket's protocol has the connection now
            return
        cycle = self.cycle
        if self.scope is not None and "method" not in self.scope:
            waiting: str | None = _HEAD  # a head has begun and is not complete
        elif cycle is not None and not cycle.response_complete:
            waiting = _BODY if cycle.more_body else None  # the app has the request; its body may be due
        else:  # no request: stray bytes between requests, or the keep-alive timer runs
            waiting = None if self.timeout_keep_alive_task is not None else _HEAD
        if waiting is not self.waiting:
            self._wait(waiting)

    def handle_websocket_upgrade(self) -> None:
        self.upgraded = True
        self._wait(None)
        super().handle_websocket_upgrade()

    def _wait(self, waiting: str | None) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.waiting = waiting
        if waiting is None:
            self.deadline = None
        else:
            delay = self.header_timeout_s if waiting is _HEAD else self.body_timeout_s
            self.deadline = self.loop.call_later(delay, self._expire)

    def _expire(self) -> None:
        """The head or body did not arrive in time: close (the app, if it waits for the body, sees a disconnect)."""
        self.deadline = None
        self.transport.close()

    @property
    def idle(self) -> bool:
        """No request in flight: none received whole yet, or kept alive between requests."""
        cycle = self.cycle
        return (
            not self.transport.is_closing()
            and (cycle is None or cycle.response_complete)
            and (self.waiting is _HEAD or self.timeout_keep_alive_task is not None)
        )

    def eviction_order(self) -> tuple[bool, float]:
        """Closed first at the cap: connections that never sent a whole request, then the oldest."""
        return self.cycle is not None, self.opened

    def evict(self) -> None:
        """Close to make room under the cap."""
        self.closed_here = True
        self.guard.closing += 1
        self.transport.close()

    def refuse(self) -> None:
        """Answer 503 (with Retry-After) before any request, and close."""
        self.transport.write(_REFUSED)
        self.evict()

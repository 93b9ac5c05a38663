"""The fast front: the endpoints declared in an :class:`~.endpoints.EndpointRouter`, answered before FastAPI.

FastAPI's per-request machinery (middleware layers, routing through nested
routers, dependency resolution, body handling) costs more CPU than choosing,
logging and answering a decision. :class:`HotPaths` therefore matches the
declared endpoints' paths itself and takes the same steps in the same order as
their FastAPI routes: the token (the endpoint's :class:`~.deps.BearerToken`),
the body size (the app's ``max_body_size``), validation and the handler
(:meth:`~.endpoints.Endpoint.answer`), and the error answers
(:func:`~.errors.error_answer`). Every other request, and every request under a
``root_path``, goes through FastAPI, whose routes for these endpoints are
generated from the same declarations and document them in OpenAPI.
"""

from __future__ import annotations

import json
import math
from operator import itemgetter

from .endpoints import Endpoint
from .errors import error_answer

#: The 413 answer of the fast front (on FastAPI's routes, Starlette's limit answers in plain text).
TOO_LARGE = b'{"detail":"Content Too Large"}'


class _Pattern:
    """A path template split into segments: fixed segments must be equal, parameters non-empty."""

    def __init__(self, endpoint: Endpoint) -> None:
        segments = endpoint.path.split("/")
        fixed = [index for index, segment in enumerate(segments) if not segment.startswith("{")]
        self.endpoint = endpoint
        self.length = len(segments)
        self.fixed_of = itemgetter(*fixed)
        self.fixed = self.fixed_of(segments)
        self.parameters = [(index, segment[1:-1]) for index, segment in enumerate(segments) if segment.startswith("{")]

    def match(self, parts: list[str]) -> dict[str, str] | None:
        """The path parameters if ``parts`` (a path split at ``/``) is this template's, else None."""
        if self.fixed_of(parts) != self.fixed:
            return None
        path = {name: parts[index] for index, name in self.parameters}
        return path if all(path.values()) else None


class HotPaths:
    """Serves ``endpoints`` for ``app``, the FastAPI app that also routes them (under a ``root_path``)."""

    def __init__(self, app, endpoints: list[Endpoint]) -> None:
        self.app = app
        self.max_body_bytes = math.inf if app.max_body_size is None else app.max_body_size
        self._patterns: dict[tuple[str, int], list[_Pattern]] = {}
        for endpoint in endpoints:
            pattern = _Pattern(endpoint)
            self._patterns.setdefault((endpoint.method, pattern.length), []).append(pattern)

    async def handle(self, scope, receive, send) -> bool:
        """Answer the request if it is one of the endpoints (True); leave it untouched otherwise (False)."""
        if scope["type"] != "http" or scope.get("root_path"):
            return False
        parts = scope["path"].split("/")
        for pattern in self._patterns.get((scope["method"], len(parts)), ()):
            path = pattern.match(parts)
            if path is not None:
                await self._serve(pattern.endpoint, path, scope, receive, send)
                return True
        return False

    async def _serve(self, endpoint: Endpoint, path: dict[str, str], scope, receive, send) -> None:
        app = self.app
        body = b""
        try:
            if endpoint.auth is not None or endpoint.body is not None:
                headers = dict(scope["headers"])
                if endpoint.auth is not None:
                    endpoint.auth.role(app.state.settings, headers.get(b"authorization", b"").decode("latin-1"))
                if endpoint.body is not None:
                    received = await self._body(headers, receive)
                    if received is None:
                        return await _respond(send, 413, TOO_LARGE)
                    body = received
            payload = await endpoint.answer(app.state.engine, path, body)
        except Exception as error:
            answer = error_answer(error)
            if answer is None:
                raise
            extra = [(key.encode(), value.encode()) for key, value in (answer.headers or {}).items()]
            return await _respond(send, answer.status, json.dumps(answer.body).encode(), extra)
        await _respond(send, 200, payload)

    async def _body(self, headers: dict, receive) -> bytes | None:
        """The request body, or None once it exceeds the limit (declared or streamed)."""
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return None
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


async def _respond(send, status: int, payload: bytes, headers: list | None = None) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})

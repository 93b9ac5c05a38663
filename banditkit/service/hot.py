"""The fast front: the endpoints declared in an :class:`~.endpoints.EndpointRouter`, answered before FastAPI.

FastAPI's per-request machinery (middleware layers, routing through nested
routers, dependency resolution, body handling) costs more CPU than choosing,
logging and answering a decision. :class:`HotPaths` therefore matches the
declared endpoints' paths itself and takes the same steps in the same order as
their FastAPI routes: the token (the endpoint's :class:`~.deps.BearerToken`),
then :meth:`~.endpoints.Endpoint.answer` (media type, body size, JSON,
validation, handler), and the error answers (:func:`~.errors.error_answer`).
Every other request, and every request under a ``root_path``, goes through
FastAPI, whose routes for these endpoints are generated from the same
declarations and document them in OpenAPI.

It is also the service's front door for one check on every request, whatever
its path: more than one ``Authorization`` header gets 400.
"""

from __future__ import annotations

import json
from operator import itemgetter

from .deps import repeated_authorization
from .endpoints import ClientGone, Endpoint
from .errors import BadRequestError, error_answer
from .metrics import UNMATCHED_ROUTE

#: The answer to a request with more than one Authorization header (whichever one a component reads, another
#: may read the other).
REPEATED_AUTHORIZATION = BadRequestError("more than one Authorization header: send exactly one")


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
        self.max_body_bytes: int = app.state.settings.max_body_bytes
        self._patterns: dict[tuple[str, int], list[_Pattern]] = {}
        for endpoint in endpoints:
            pattern = _Pattern(endpoint)
            self._patterns.setdefault((endpoint.method, pattern.length), []).append(pattern)

    async def handle(self, scope, receive, send) -> str | None:
        """Answer the request if it is one of the endpoints or has more than one Authorization header.

        The route it was answered as when answered (the endpoint's path template;
        :data:`~.metrics.UNMATCHED_ROUTE` for two Authorization headers); None leaves the request untouched
        for the application.
        """
        if repeated_authorization(scope["headers"]):
            await _respond_error(send, REPEATED_AUTHORIZATION)
            return UNMATCHED_ROUTE
        if scope.get("root_path"):
            return None
        parts = scope["path"].split("/")
        for pattern in self._patterns.get((scope["method"], len(parts)), ()):
            path = pattern.match(parts)
            if path is not None:
                await self._serve(pattern.endpoint, path, scope, receive, send)
                return pattern.endpoint.path
        return None

    async def _serve(self, endpoint: Endpoint, path: dict[str, str], scope, receive, send) -> None:
        app = self.app
        try:
            headers = dict(scope["headers"]) if endpoint.auth is not None or endpoint.body is not None else {}
            if endpoint.auth is not None:
                endpoint.auth.role(app.state.settings, headers.get(b"authorization", b"").decode("latin-1"))
            payload = await endpoint.answer(app.state.engine, path, scope, headers, receive, self.max_body_bytes)
        except ClientGone:
            return  # nobody to answer; a partial body is never handled
        except Exception as error:
            if not await _respond_error(send, error):
                raise
            return
        await _respond(send, endpoint.status, payload)


async def _respond_error(send, error: Exception) -> bool:
    """Send the answer to ``error`` (True), or nothing if it is a real failure (False: a 500, left to the server)."""
    answer = error_answer(error)
    if answer is None:
        return False
    extra = [(key.encode(), value.encode()) for key, value in (answer.headers or {}).items()]
    # The bytes FastAPI's JSONResponse writes for the same answer on the routes.
    body = json.dumps(answer.body, ensure_ascii=False, separators=(",", ":")).encode()
    await _respond(send, answer.status, body, extra)
    return True


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

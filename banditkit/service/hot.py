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
from typing import Any

from .deps import repeated_authorization
from .endpoints import ClientGone, Endpoint
from .errors import BadRequestError, error_answer
from .metrics import UNMATCHED_ROUTE

#: The answer to a request with more than one Authorization header (whichever one a component reads, another
#: may read the other).
REPEATED_AUTHORIZATION = BadRequestError("more than one Authorization header: send exactly one")


class _Route:
    """An endpoint as the fast front serves it: its place among the declarations and the metrics key of its success."""

    __slots__ = ("endpoint", "rank", "success")

    def __init__(self, endpoint: Endpoint, rank: int) -> None:
        self.endpoint = endpoint
        self.rank = rank  # its place among the declarations: where two match a path, the first declared answers
        self.success = endpoint.path, endpoint.method, endpoint.status


class _Template:
    """The path templates of one method, length and set of fixed segments, looked up by those segments at once.

    Templates that differ only in their fixed segments' values (``.../{name}/decisions``, ``.../{name}/rewards``)
    share one: a path is matched by a single dictionary look-up, however many endpoints there are.
    """

    def __init__(self, segments: list[str]) -> None:
        fixed = [index for index, segment in enumerate(segments) if not segment.startswith("{")]
        self.order = len(fixed), tuple(fixed)
        self.fixed_of = itemgetter(*fixed)
        self.parameters = [(index, segment[1:-1]) for index, segment in enumerate(segments) if segment.startswith("{")]
        self.routes: dict[Any, _Route] = {}  # by the values of the fixed segments

    def match(self, parts: list[str]) -> tuple[_Route, dict[str, str]] | None:
        """The route and the path parameters if ``parts`` (a path split at ``/``) is one of these templates'."""
        route = self.routes.get(self.fixed_of(parts))
        if route is None:
            return None
        path = {}
        for index, name in self.parameters:  # a loop, not a comprehension and all(): once per request
            value = parts[index]
            if not value:
                return None
            path[name] = value
        return route, path


class HotPaths:
    """Serves ``endpoints`` for ``app``, the FastAPI app that also routes them (under a ``root_path``).

    A path without parameters is found in one look-up by method and path; the others by method, number of
    segments and fixed segments (:class:`_Template`). Where two declarations match one path, the first declared
    answers.
    """

    def __init__(self, app, endpoints: list[Endpoint]) -> None:
        self.app = app
        self.settings = app.state.settings
        self.auth_enabled: bool = self.settings.auth_enabled  # without tokens, every caller is admin
        self.max_body_bytes: int = self.settings.max_body_bytes
        self._exact: dict[tuple[str, str], _Route] = {}
        self._templates: dict[tuple[str, int], list[_Template]] = {}
        routes = [_Route(endpoint, rank) for rank, endpoint in enumerate(endpoints)]
        for route in routes:
            segments = route.endpoint.path.split("/")
            templates = self._templates.setdefault((route.endpoint.method, len(segments)), [])
            template = _Template(segments)
            for known in templates:
                if known.order == template.order:
                    template = known
                    break
            else:
                templates.append(template)
            template.routes.setdefault(template.fixed_of(segments), route)
        for route in routes:  # a fixed path, unless a template declared before it takes it
            method, path = route.endpoint.method, route.endpoint.path
            if "{" not in path and self._match(method, path.split("/")) == (route, {}):
                self._exact[method, path] = route

    def _match(self, method: str, parts: list[str]) -> tuple[_Route, dict[str, str]] | None:
        """The first declared route whose template ``parts`` (a path split at ``/``) matches, and its parameters."""
        templates = self._templates.get((method, len(parts)))
        if templates is None:
            return None
        if len(templates) == 1:
            return templates[0].match(parts)
        best = None
        for template in templates:
            found = template.match(parts)
            if found is not None and (best is None or found[0].rank < best[0].rank):
                best = found
        return best

    async def handle(self, scope, receive, send) -> tuple[str, str, int] | None:
        """Answer the request if it is one of the endpoints or has more than one Authorization header.

        When answered, the key its metrics count it under: route (the endpoint's path template;
        :data:`~.metrics.UNMATCHED_ROUTE` for two Authorization headers), method and status (500 when the client
        left before its body arrived: nothing is answered). None leaves the request untouched for the
        application.
        """
        raw = scope["headers"]
        headers = dict(raw)  # a name given twice is kept once: only then can Authorization be repeated
        if len(headers) < len(raw) and repeated_authorization(raw):
            await _respond_error(send, REPEATED_AUTHORIZATION)
            return UNMATCHED_ROUTE, scope["method"], REPEATED_AUTHORIZATION.status
        if scope.get("root_path"):
            return None
        method, path = scope["method"], scope["path"]
        route = self._exact.get((method, path))
        if route is not None:
            return await self._serve(route, {}, scope, headers, receive, send)
        found = self._match(method, path.split("/"))
        if found is None:
            return None
        return await self._serve(*found, scope, headers, receive, send)

    async def _serve(
        self, route: _Route, path: dict[str, str], scope, headers: dict[bytes, bytes], receive, send
    ) -> tuple[str, str, int]:
        endpoint = route.endpoint
        try:
            if endpoint.auth is not None and self.auth_enabled:
                endpoint.auth.role(self.settings, headers.get(b"authorization", b"").decode("latin-1"))
            payload = await endpoint.answer(self.app.state.engine, path, scope, headers, receive, self.max_body_bytes)
        except ClientGone:
            return endpoint.path, endpoint.method, 500  # nobody to answer; a partial body is never handled
        except Exception as error:
            status = await _respond_error(send, error)
            if status is None:
                raise
            return endpoint.path, endpoint.method, status
        await _respond(send, endpoint.status, payload)
        return route.success


async def _respond_error(send, error: Exception) -> int | None:
    """Send the answer to ``error`` and return its status.

    Nothing (None) if it is a real failure: a 500, left to the server.
    """
    answer = error_answer(error)
    if answer is None:
        return None
    extra = [(key.encode(), value.encode()) for key, value in (answer.headers or {}).items()]
    # The bytes FastAPI's JSONResponse writes for the same answer on the routes.
    body = json.dumps(answer.body, ensure_ascii=False, separators=(",", ":")).encode()
    await _respond(send, answer.status, body, extra)
    return answer.status


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

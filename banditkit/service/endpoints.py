"""Endpoints declared once, as functions of the engine and the request, served two ways from that one declaration.

An :class:`Endpoint` holds everything about one URL: method, path template,
handler, request body and query models, response model and status, token level
and the error statuses its handler answers with. :class:`EndpointRouter` turns
each declaration into a FastAPI route (which documents it in OpenAPI, every
error status included, and serves it under a ``root_path``), and
:class:`banditkit.service.hot.HotPaths` serves the same declarations before
FastAPI's middleware stack. A URL, a token level or a body model therefore
changes in one place.

Every call takes the same steps in the same order on both paths: the token
(401, 403), then, for an endpoint with a body, its media type (415), its size
(``max_body_bytes``, 413), its JSON (400) and its fields (422), the query
parameters (422), and the handler. A request is never judged by its body
before its token; the answers come from
:func:`banditkit.service.errors.error_answer` on both paths.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from .deps import BearerToken
from .engine import Engine
from .errors import STATUSES, BadRequestError, TooLargeError, UnsupportedMediaTypeError
from .schemas import ErrorOut, ValidationErrorOut

Model = TypeVar("Model", bound=BaseModel)
#: ``handler(engine, [body model], [query model], **path_params)`` -> JSON bytes.
Handler = Callable[..., Awaitable[bytes]]
_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
JSON_MEDIA_TYPE = b"application/json"
#: An ASGI ``receive`` callable: the next message of the request.
Receive = Callable[[], Awaitable[Mapping[str, Any]]]


def parse(model: type[Model], body: bytes) -> Model:
    """``model`` from JSON bytes, parsed and validated by pydantic-core in one step.

    400 when the body is not
    JSON at all, 422 naming the field when it is JSON but not a valid request.
    """
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        errors = error.errors()
        if errors[0]["type"] == "json_invalid":
            reason = errors[0].get("ctx", {}).get("error", errors[0]["msg"])
            raise BadRequestError(f"the body is not valid JSON: {reason}") from None
        raise RequestValidationError([{**item, "loc": ("body", *item["loc"])} for item in errors]) from None


def parse_query(model: type[Model], query_string: bytes) -> Model:
    """``model`` from a URL's query string (texts converted by pydantic's lax mode).

    422 naming the parameter,
    also when one is given twice.
    """
    values: dict[str, str] = {}
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key in values:
            raise RequestValidationError(
                [{"loc": ("query", key), "msg": "query parameter given more than once", "type": "value_error"}]
            )
        values[key] = value
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise RequestValidationError([{**item, "loc": ("query", *item["loc"])} for item in error.errors()]) from None


def check_json_media_type(content_type: bytes | None) -> None:
    """415 unless the body is declared ``application/json`` (parameters such as a charset aside).

    A browser sends a cross-origin ``text/plain`` or form body (or a body without a type) without asking the
    server first; it asks before sending ``application/json``, so requiring it keeps a web page from writing
    decisions or rewards from a visitor's browser.
    """
    if content_type == JSON_MEDIA_TYPE:
        return
    if content_type is None or content_type.split(b";", 1)[0].strip().lower() != JSON_MEDIA_TYPE:
        received = "none" if content_type is None else repr(content_type.decode("latin-1"))
        raise UnsupportedMediaTypeError(f"Content-Type must be application/json, got {received}")


class ClientGone(Exception):
    """The connection closed before the whole request body arrived: there is nobody to answer."""


async def read_body(headers: dict[bytes, bytes], receive: Receive, max_bytes: int) -> bytes:
    """The request body; 413 once it is over ``max_bytes``, declared (Content-Length) or streamed.

    Raises :class:`ClientGone` if the connection closes first (the client left, or its body did not arrive
    in time): a partial body is never handled.
    """
    declared = headers.get(b"content-length", b"")
    if declared.isdigit() and int(declared) > max_bytes:
        raise TooLargeError(f"Content Too Large: the body is over max_body_bytes ({max_bytes} bytes)")
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise TooLargeError(f"Content Too Large: the body is over max_body_bytes ({max_bytes} bytes)")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def to_json(model: BaseModel) -> bytes:
    """A response model as compact JSON bytes, straight from its pydantic-core serializer."""
    return model.__pydantic_serializer__.to_json(model)


@dataclass(frozen=True)
class Endpoint:
    """One HTTP endpoint: where it is, who may call it, what it reads and answers, and the function that answers.

    ``path`` is a template whose parameters are whole segments (``/v1/experiments/{name}/decisions``);
    ``body`` is the request model (parsed from the raw body before the handler runs; None: the body is not
    read); ``query`` the model of the query parameters (None: none are read); ``response`` documents the
    answer, sent with ``status``; ``auth`` is the token level (None: open to anyone); ``errors`` are the
    statuses the handler itself may answer with (404, 409, 410, 503), beside those of the steps before it.
    """

    method: str
    path: str
    handler: Handler
    response: Any
    body: type[BaseModel] | None = None
    auth: BearerToken | None = None
    status: int = 200
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for segment in self.path.split("/")[1:]:
            if ("{" in segment or "}" in segment) and not _PARAMETER.fullmatch(segment):
                raise ValueError(
                    f"path {self.path!r}: a parameter must be a whole segment like '{{name}}', got {segment!r}"
                )
        unknown = sorted(set(self.errors) - set(STATUSES))
        if unknown:
            raise ValueError(f"endpoint {self.path!r}: errors {unknown} are not statuses of the service")

    @property
    def name(self) -> str:
        return self.handler.__name__

    @property
    def parameters(self) -> list[str]:
        """The path parameters, in the order they appear."""
        return _PARAMETER.findall(self.path)

    @property
    def error_statuses(self) -> list[int]:
        """Every error status a call can get.

        Two Authorization headers (400), the token's (401, 403), the
        body's (400, 413, 415, 422), the query's (422) and the handler's own.
        """
        statuses = {400, *self.errors}
        if self.auth is not None:
            statuses.add(401)
            if self.auth.admin:
                statuses.add(403)
        if self.body is not None:
            statuses.update((413, 415, 422))
        if self.query is not None:
            statuses.add(422)
        return sorted(statuses)

    async def answer(
        self,
        engine: Engine,
        path: dict[str, str],
        scope: Mapping[str, Any],
        headers: dict[bytes, bytes],
        receive: Receive,
        max_body_bytes: int,
    ) -> bytes:
        """The JSON answer to a call whose token has been checked.

        The body (media type, size, JSON, fields),
        the query parameters, then the handler.
        """
        models: list[BaseModel] = []
        if self.body is not None:
            check_json_media_type(headers.get(b"content-type"))
            models.append(parse(self.body, await read_body(headers, receive, max_body_bytes)))
        if self.query is not None:
            models.append(parse_query(self.query, scope.get("query_string", b"")))
        return await self.handler(engine, *models, **path)


def error_responses(statuses: Iterable[int]) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI answers of ``statuses``: when each happens (:data:`~.errors.STATUSES`), its body and headers."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {
            "description": STATUSES[status],
            "model": ValidationErrorOut if status == 422 else ErrorOut,
        }
        if status == 401:
            response["headers"] = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
        elif status == 503:
            response["headers"] = {
                "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
            }
        responses[status] = response
    return responses


class EndpointRouter(APIRouter):
    """An APIRouter whose :meth:`endpoint` declarations are also served by the fast front (:mod:`.hot`).

    The fast front serves each endpoint at the path declared here (the router's own ``prefix`` included), so
    include the router in the app without a further prefix.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.endpoints: list[Endpoint] = []

    def endpoint(
        self,
        method: str,
        path: str,
        *,
        response: Any,
        body: type[BaseModel] | None = None,
        auth: BearerToken | None = None,
        status: int = 200,
        query: type[BaseModel] | None = None,
        errors: tuple[int, ...] = (),
    ) -> Callable[[Handler], Handler]:
        """Declare ``handler`` as ``method path``; its name and docstring become the operation's id and text."""

        def declare(handler: Handler) -> Handler:
            endpoint = Endpoint(method, self.prefix + path, handler, response, body, auth, status, query, errors)
            self.endpoints.append(endpoint)
            extra: dict[str, Any] = {}
            if body is not None:
                extra["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body.__name__}"}}},
                }
            if query is not None:
                extra["parameters"] = _query_parameters(query)
            self.add_api_route(
                path,
                _route(endpoint),
                methods=[method],
                name=endpoint.name,
                response_model=response,
                status_code=status,
                responses=error_responses(endpoint.error_statuses),
                openapi_extra=extra or None,
                dependencies=None if auth is None else [Depends(auth)],
            )
            return handler

        return declare


def _query_parameters(query: type[BaseModel]) -> list[dict[str, Any]]:
    """The OpenAPI parameters of a query model.

    One per field, with its schema and description (an optional
    parameter is left out of the URL, never null, so the schema of its value is the non-null one).
    """
    properties = query.model_json_schema()["properties"]
    parameters = []
    for name, field in query.model_fields.items():
        schema = {key: value for key, value in properties[name].items() if key not in ("title", "description")}
        values = [option for option in schema.pop("anyOf", []) if option.get("type") != "null"]
        if len(values) == 1:
            schema.update(values[0])
            if schema.get("default", 0) is None:
                del schema["default"]
        elif values:
            schema["anyOf"] = values
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": field.is_required(),
                "description": field.description or "",
                "schema": schema,
            }
        )
    return parameters


def _route(endpoint: Endpoint) -> Callable[..., Awaitable[Response]]:
    """The FastAPI endpoint function of ``endpoint``: path parameters as strings, the same answer and status."""

    async def route(request: Request, **path: str) -> Response:
        app = request.app
        try:
            payload = await endpoint.answer(
                app.state.engine,
                path,
                request.scope,
                dict(request.scope["headers"]),
                request.receive,
                app.state.settings.max_body_bytes,
            )
        except ClientGone:
            return Response(status_code=400)  # never sent: the client is gone
        return Response(payload, status_code=endpoint.status, media_type="application/json")

    route.__name__ = endpoint.name
    route.__doc__ = endpoint.handler.__doc__
    # A function takes any attribute; inspect.signature (and so FastAPI) reads this one.
    route.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=str) for name in endpoint.parameters]
        + [inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request)]
    )
    return route


def document_endpoints(app: FastAPI, routers: list[APIRouter]) -> None:
    """Complete the OpenAPI document for ``endpoints``.

    Their request models (parsed by the endpoints, not by
    FastAPI) in the components, and exactly the error statuses each can answer (FastAPI adds a 422 to every
    operation with a path parameter, which an endpoint without a body or query never answers; the same holds
    for the plain FastAPI routes that do not declare a 422).
    """
    endpoints = [endpoint for router in routers if isinstance(router, EndpointRouter) for endpoint in router.endpoints]
    plain = [
        route
        for router in routers
        if not isinstance(router, EndpointRouter)
        for route in router.routes
        if isinstance(route, APIRoute) and route.include_in_schema
    ]
    models = list(dict.fromkeys(endpoint.body for endpoint in endpoints if endpoint.body is not None))
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = app.openapi_schema
        if schema is None:
            schema = generate()  # FastAPI's own, which keeps it as app.openapi_schema
            _, definitions = models_json_schema(
                [(model, "validation") for model in models], ref_template="#/components/schemas/{model}"
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(definitions["$defs"])
            for endpoint in endpoints:
                responses = schema["paths"][endpoint.path][endpoint.method.lower()]["responses"]
                allowed = {str(endpoint.status), *map(str, endpoint.error_statuses)}
                for status in [status for status in responses if status not in allowed]:
                    del responses[status]
            for route in plain:  # the plain FastAPI routes: a 422 only where they declare one
                if 422 not in route.responses:
                    for method in route.methods or ():
                        schema["paths"][route.path_format][method.lower()]["responses"].pop("422", None)
            # FastAPI's own 422 models, unused once every 422 documents the service's answer.
            components = schema["components"]["schemas"]
            for unused in ("HTTPValidationError", "ValidationError"):
                if f'"#/components/schemas/{unused}"' not in json.dumps(schema["paths"]):
                    components.pop(unused, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented hook for a custom schema

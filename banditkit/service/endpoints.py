"""Endpoints declared once, as functions of the engine and the body, served two ways from that one declaration.

An :class:`Endpoint` holds everything about one URL: method, path template,
handler, request and response models, token level and documented answers.
:class:`EndpointRouter` turns each declaration into a FastAPI route (which
documents it in OpenAPI and serves it under a ``root_path``), and
:class:`banditkit.service.hot.HotPaths` serves the same declarations before
FastAPI's middleware stack. A URL, a token level or a body model therefore
changes in one place; the body limit is the app's ``max_body_size`` and the
error answers come from :func:`banditkit.service.errors.error_answer` on both
paths.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from .deps import BearerToken
from .engine import Engine

Model = TypeVar("Model", bound=BaseModel)
#: ``handler(engine, request_model, **path_params)`` (no request model for an endpoint without a body) -> JSON bytes.
Handler = Callable[..., Awaitable[bytes]]
_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse(model: type[Model], body: bytes) -> Model:
    """``model`` from JSON bytes, parsed and validated by pydantic-core in one step; 422 naming the field."""
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        raise RequestValidationError([{**item, "loc": ("body", *item["loc"])} for item in error.errors()]) from None


def to_json(model: BaseModel) -> bytes:
    """A response model as compact JSON bytes, straight from its pydantic-core serializer."""
    return model.__pydantic_serializer__.to_json(model)


@dataclass(frozen=True)
class Endpoint:
    """One HTTP endpoint: where it is, who may call it, what it reads and answers, and the function that answers.

    ``path`` is a template whose parameters are whole segments (``/v1/experiments/{name}/decisions``);
    ``body`` is the request model (parsed from the raw body before the handler runs; None: the body is not
    read); ``response`` documents the 200 answer; ``auth`` is the token level (None: open to anyone).
    """

    method: str
    path: str
    handler: Handler
    response: Any
    body: type[BaseModel] | None = None
    auth: BearerToken | None = None
    responses: dict[int | str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for segment in self.path.split("/")[1:]:
            if ("{" in segment or "}" in segment) and not _PARAMETER.fullmatch(segment):
                raise ValueError(
                    f"path {self.path!r}: a parameter must be a whole segment like '{{name}}', got {segment!r}"
                )

    @property
    def name(self) -> str:
        return self.handler.__name__

    @property
    def parameters(self) -> list[str]:
        """The path parameters, in the order they appear."""
        return _PARAMETER.findall(self.path)

    async def answer(self, engine: Engine, path: dict[str, str], body: bytes) -> bytes:
        """The JSON answer to a call whose token and body size have been checked: validation, then the handler."""
        if self.body is None:
            return await self.handler(engine, **path)
        return await self.handler(engine, parse(self.body, body), **path)


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
        responses: dict[int | str, dict[str, Any]] | None = None,
    ) -> Callable[[Handler], Handler]:
        """Declare ``handler`` as ``method path``; its name and docstring become the operation's id and text."""

        def declare(handler: Handler) -> Handler:
            endpoint = Endpoint(method, self.prefix + path, handler, response, body, auth, responses or {})
            self.endpoints.append(endpoint)
            extra = (
                None
                if body is None
                else {
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body.__name__}"}}},
                    }
                }
            )
            self.add_api_route(
                path,
                _route(endpoint),
                methods=[method],
                name=endpoint.name,
                response_model=response,
                responses=responses,
                openapi_extra=extra,
                dependencies=None if auth is None else [Depends(auth)],
            )
            return handler

        return declare


def _route(endpoint: Endpoint) -> Callable[..., Awaitable[Response]]:
    """The FastAPI endpoint function of ``endpoint``: path parameters as strings, the raw body, the same answer."""

    async def route(request: Request, **path: str) -> Response:
        body = b"" if endpoint.body is None else await request.body()
        return Response(await endpoint.answer(request.app.state.engine, path, body), media_type="application/json")

    route.__name__ = endpoint.name
    route.__doc__ = endpoint.handler.__doc__
    # A function takes any attribute; inspect.signature (and so FastAPI) reads this one.
    route.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=str) for name in endpoint.parameters]
        + [inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request)]
    )
    return route


def document_bodies(app: FastAPI, endpoints: list[Endpoint]) -> None:
    """Add the request models of ``endpoints`` (parsed by the endpoints, not by FastAPI) to the OpenAPI components."""
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
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented hook for a custom schema

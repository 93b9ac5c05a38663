"""Request bodies parsed straight from bytes by pydantic, for the hot endpoints.

FastAPI's own body handling (JSON decode, then validation, then the response
model's validation and encoding) costs about as much as the decision itself;
here pydantic-core parses and validates the bytes in one step and encodes the
answer. Errors keep FastAPI's 422 shape, and the OpenAPI schema documents the
same bodies.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)


async def parse(request: Request, model: type[Model]) -> Model:
    """``model`` from the request's JSON body; a 422 naming the field if it is not valid."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as error:
        raise RequestValidationError([{**item, "loc": ("body", *item["loc"])} for item in error.errors()]) from None


def answer(model: BaseModel, status_code: int = 200) -> Response:
    """``model`` encoded as JSON by pydantic-core."""
    return Response(model.__pydantic_serializer__.to_json(model), status_code=status_code,
                    media_type="application/json")


def documented(body: type[BaseModel], response: type[BaseModel]) -> dict[str, Any]:
    """Route keywords that document ``body`` and ``response`` in the OpenAPI schema."""
    return {"response_model": response, "openapi_extra": {"requestBody": {
        "required": True, "content": {"application/json": {"schema": {
            "$ref": f"#/components/schemas/{body.__name__}"}}}}}}

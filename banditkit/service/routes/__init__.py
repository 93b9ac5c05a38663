"""HTTP routes, one module per resource."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def documented(body: type[BaseModel], response: type[BaseModel]) -> dict[str, Any]:
    """Route keywords that document a body the route parses itself, and its answer, in OpenAPI."""
    return {"response_model": response, "openapi_extra": {"requestBody": {
        "required": True, "content": {"application/json": {"schema": {
            "$ref": f"#/components/schemas/{body.__name__}"}}}}}}

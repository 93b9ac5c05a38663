"""The served model of an experiment, as a Bandit's JSON: to decide locally, evaluate offline or warm-start another."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ..deps import ClientAuth, EngineDep
from ..endpoints import error_responses, parse_query
from ..schemas import ModelOut, NoQuery

router = APIRouter(prefix="/v1/experiments/{name}", tags=["experiments"], dependencies=[ClientAuth])


@router.get(
    "/model",
    response_model=ModelOut,
    responses={
        304: {"description": "the model is still the one the ETag given in If-None-Match names (no body)"},
        **error_responses([400, 401, 404, 422, 503]),
    },
)
async def get_model(name: str, engine: EngineDep, request: Request) -> Response:
    """The served model (``Bandit.from_dict(answer["model"])`` rebuilds it) and its policy version.

    The ETag names the version: a client that sends it back in ``If-None-Match`` gets 304 until the model
    changes. ``POST /v1/experiments`` with this ``model`` starts another experiment from it.
    """
    parse_query(NoQuery, request.scope.get("query_string", b""))  # 422 for any query parameter
    served = engine.experiment(name).bandit.version  # 404 before any work
    known = {tag.strip() for tag in request.headers.get("if-none-match", "").split(",")}
    if _etag(name, served) in known or "*" in known:
        return Response(status_code=304, headers={"ETag": _etag(name, served)})
    version, body = await run_in_threadpool(engine.model_json, name)
    return Response(body, media_type="application/json", headers={"ETag": _etag(name, version)})


def _etag(name: str, version: int) -> str:
    """Weak: two workers serving one version give the same model, with their own random stream's state."""
    return f'W/"{name}:{version}"'

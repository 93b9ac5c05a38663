"""Decisions: which arm to serve, logged with its propensity before the answer.

Served by :class:`banditkit.service.hot.HotPaths` in a running server; these
routes document the endpoints and serve them when the app runs under a
``root_path``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from .. import hot
from ..deps import ClientAuth
from ..schemas import DecisionBatchRequest, DecisionBatchResponse, DecisionRequest, DecisionResponse
from . import documented

router = APIRouter(prefix="/v1/experiments/{name}", tags=["decisions"], dependencies=[ClientAuth])


@router.post("/decisions", **documented(DecisionRequest, DecisionResponse))
async def decide(name: str, request: Request) -> Response:
    """Choose an arm (deterministic for a ``unit``, restricted to ``allowed`` arms if given)."""
    return Response(await hot.decide(request.app.state.engine, name, await request.body()),
                    media_type="application/json")


@router.post("/decisions/batch", **documented(DecisionBatchRequest, DecisionBatchResponse))
async def decide_batch(name: str, request: Request) -> Response:
    """Up to 1,000 decisions in one call, logged in one transaction."""
    return Response(await hot.decide_batch(request.app.state.engine, name, await request.body()),
                    media_type="application/json")

"""Decisions: which arm to serve, logged with its propensity before the answer.

A hot path: bodies are parsed by :mod:`._body` and the engine is read from the
app's state (each FastAPI dependency costs a resolution step per request).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ..deps import ClientAuth
from ..schemas import DecisionBatchRequest, DecisionBatchResponse, DecisionRequest, DecisionResponse
from ._body import answer, documented, parse

router = APIRouter(prefix="/v1/experiments/{name}", tags=["decisions"], dependencies=[ClientAuth])


@router.post("/decisions", **documented(DecisionRequest, DecisionResponse))
async def decide(name: str, request: Request) -> Response:
    """Choose an arm (deterministic for a ``unit``, restricted to ``allowed`` arms if given)."""
    body = await parse(request, DecisionRequest)
    (decision,) = await request.app.state.engine.decide(name, [body])
    return answer(decision)


@router.post("/decisions/batch", **documented(DecisionBatchRequest, DecisionBatchResponse))
async def decide_batch(name: str, request: Request) -> Response:
    """Up to 1,000 decisions in one call, logged in one transaction."""
    body = await parse(request, DecisionBatchRequest)
    decisions = await request.app.state.engine.decide(name, body.requests, field="requests.")
    return answer(DecisionBatchResponse(decisions=decisions))

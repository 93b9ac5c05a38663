"""Decisions: which arm to serve, logged with its propensity before the answer.

The hot endpoints read the engine from ``request.app.state`` instead of a
dependency: each dependency costs FastAPI a resolution step per request.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..deps import ClientAuth
from ..schemas import DecisionBatchRequest, DecisionBatchResponse, DecisionRequest, DecisionResponse

router = APIRouter(prefix="/v1/experiments/{name}", tags=["decisions"], dependencies=[ClientAuth])


@router.post("/decisions")
async def decide(name: str, body: DecisionRequest, request: Request) -> DecisionResponse:
    """Choose an arm (deterministic for a ``unit``, restricted to ``allowed`` arms if given)."""
    (decision,) = await request.app.state.engine.decide(name, [body])
    return decision


@router.post("/decisions/batch")
async def decide_batch(name: str, body: DecisionBatchRequest, request: Request) -> DecisionBatchResponse:
    """Up to 1,000 decisions in one call, logged in one transaction."""
    return DecisionBatchResponse(decisions=await request.app.state.engine.decide(name, body.requests,
                                                                                 field="requests."))

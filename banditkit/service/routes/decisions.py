"""Decisions: which arm to serve, logged with its propensity before the answer."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import ClientAuth, EngineDep
from ..schemas import DecisionBatchRequest, DecisionBatchResponse, DecisionRequest, DecisionResponse

router = APIRouter(prefix="/v1/experiments/{name}", tags=["decisions"], dependencies=[ClientAuth])


@router.post("/decisions")
async def decide(name: str, body: DecisionRequest, engine: EngineDep) -> DecisionResponse:
    """Choose an arm (deterministic for a ``unit``, restricted to ``allowed`` arms if given)."""
    (decision,) = await engine.decide(name, [body])
    return decision


@router.post("/decisions/batch")
async def decide_batch(name: str, body: DecisionBatchRequest, engine: EngineDep) -> DecisionBatchResponse:
    """Up to 1,000 decisions in one call, logged in one transaction."""
    return DecisionBatchResponse(decisions=await engine.decide(name, body.requests, field="requests."))

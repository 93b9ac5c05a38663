"""Decisions: which arm to serve, logged with its propensity before the answer (served by :mod:`..hot`)."""

from __future__ import annotations

from ..deps import CLIENT
from ..endpoints import EndpointRouter, to_json
from ..engine import Engine
from ..schemas import (
    DecisionBatchRequest,
    DecisionBatchResponse,
    DecisionLogRequest,
    DecisionLogResponse,
    DecisionRequest,
    DecisionResponse,
)

router = EndpointRouter(tags=["decisions"])


@router.endpoint(
    "POST",
    "/v1/experiments/{name}/decisions",
    body=DecisionRequest,
    response=DecisionResponse,
    auth=CLIENT,
    errors=(404, 409, 503),
)
async def decide(engine: Engine, request: DecisionRequest, name: str) -> bytes:
    """Choose an arm (deterministic for a ``unit``, restricted to ``allowed`` arms if given)."""
    return to_json(await engine.decide_one(name, request))


@router.endpoint(
    "POST",
    "/v1/experiments/{name}/decisions/batch",
    body=DecisionBatchRequest,
    response=DecisionBatchResponse,
    auth=CLIENT,
    errors=(404, 409, 503),
)
async def decide_batch(engine: Engine, request: DecisionBatchRequest, name: str) -> bytes:
    """Up to 1,000 decisions in one call, logged in one transaction."""
    return to_json(DecisionBatchResponse(decisions=await engine.decide(name, request.requests, field="requests.")))


@router.endpoint(
    "POST",
    "/v1/experiments/{name}/decisions/log",
    body=DecisionLogRequest,
    response=DecisionLogResponse,
    auth=CLIENT,
    errors=(404, 409, 503),
)
async def log_decisions(engine: Engine, request: DecisionLogRequest, name: str) -> bytes:
    """Log up to 1,000 decisions a client made itself from ``GET …/model``; idempotent by decision id.

    Rewards for them join like rewards for served decisions.
    """
    logged, duplicates = await engine.log_decisions(name, request.decisions)
    return to_json(DecisionLogResponse(logged=logged, duplicates=duplicates))

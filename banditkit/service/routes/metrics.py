"""Prometheus metrics in the text exposition format (docs/monitoring.md lists them); included when ``metrics`` is on."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..deps import ClientAuth, EngineDep
from ..endpoints import error_responses
from ..metrics import CONTENT_TYPE

router = APIRouter(tags=["metrics"], dependencies=[ClientAuth])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, **error_responses([400, 401])},
)
async def metrics(engine: EngineDep, request: Request) -> Response:
    """Requests, decisions, fallbacks, rewards, store latency and the served models' gauges, for Prometheus.

    Needs a client token when tokens are configured (Prometheus sends one with ``authorization``).
    """
    body = await request.app.metrics.scrape(list(engine.experiments.values()), engine.store)
    return Response(body, headers={"Content-Type": CONTENT_TYPE})

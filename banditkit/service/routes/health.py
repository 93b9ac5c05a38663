"""Liveness: answers without a round trip to the store (also the baseline of the service benchmark).

``{"status": "degraded", "store": "unavailable"}`` while a shared store does not answer: decisions are
still served (on the default arm), rewards get 503.
"""

from __future__ import annotations

from pydantic_core import to_json

from ..endpoints import EndpointRouter
from ..engine import Engine

router = EndpointRouter(tags=["health"])


@router.endpoint("GET", "/v1/health", response=dict[str, str])
async def health(engine: Engine) -> bytes:
    return to_json(engine.health())

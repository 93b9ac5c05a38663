"""Liveness: answers without a round trip to the store (also the baseline of the service benchmark).

``{"status": "degraded", "store": "unavailable", "cause": ...}`` while the store cannot take writes (Redis
does not answer or cannot persist, a full disk under SQLite): decisions are served on the default arm where
they can still be logged (Redis's spool) and get 503 where not; rewards and experiment changes get 503.
"""

from __future__ import annotations

from pydantic_core import to_json

from ..endpoints import EndpointRouter
from ..engine import Engine

router = EndpointRouter(tags=["health"])


@router.endpoint("GET", "/v1/health", response=dict[str, str])
async def health(engine: Engine) -> bytes:
    return to_json(engine.health())

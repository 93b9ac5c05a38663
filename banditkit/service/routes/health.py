"""Liveness: answers without a round trip to the store (also the baseline of the service benchmark).

``{"status": "degraded", "store": "unavailable"}`` while a shared store does not answer: decisions are
still served (on the default arm), rewards get 503.
"""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import EngineDep

router = APIRouter(tags=["health"])


@router.get("/v1/health")
async def health(engine: EngineDep) -> dict[str, str]:
    return {"status": "ok"} if engine.store.available else {"status": "degraded", "store": "unavailable"}

"""Liveness: answers without touching the store (also the baseline of the service benchmark)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/v1/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}

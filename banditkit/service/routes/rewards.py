"""Rewards: joined to the logged decision by its id, applied exactly once (served like decisions, see there)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from .. import hot
from ..deps import ClientAuth
from ..schemas import RewardBatchRequest, RewardBatchResponse, RewardRequest, RewardResponse
from . import documented

router = APIRouter(prefix="/v1/experiments/{name}", tags=["rewards"], dependencies=[ClientAuth])


@router.post("/rewards", responses={404: {}, 409: {}, 410: {}}, **documented(RewardRequest, RewardResponse))
async def reward(name: str, request: Request) -> Response:
    """Reward a decision; a retry with the same value returns the first answer."""
    return Response(await hot.reward(request.app.state.engine, name, await request.body()),
                    media_type="application/json")


@router.post("/rewards/batch", **documented(RewardBatchRequest, RewardBatchResponse))
async def reward_batch(name: str, request: Request) -> Response:
    """Up to 1,000 rewards; each result carries the status its single call would have had."""
    return Response(await hot.reward_batch(request.app.state.engine, name, await request.body()),
                    media_type="application/json")

"""Rewards: joined to the logged decision by its id, applied exactly once."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..deps import ClientAuth
from ..errors import ConflictError, GoneError, InvalidRequestError, NotFoundError
from ..schemas import RewardBatchRequest, RewardBatchResponse, RewardRequest, RewardResponse

router = APIRouter(prefix="/v1/experiments/{name}", tags=["rewards"], dependencies=[ClientAuth])
_ERRORS = {404: NotFoundError, 409: ConflictError, 410: GoneError}


@router.post("/rewards", responses={404: {}, 409: {}, 410: {}})
async def reward(name: str, body: RewardRequest, request: Request) -> RewardResponse:
    """Reward a decision; a retry with the same value returns the first answer."""
    (result,) = await request.app.state.engine.reward(name, [body])
    if result.status == 422:
        raise InvalidRequestError(result.detail, "value")
    if result.status != 200:
        raise _ERRORS[result.status](result.detail)
    return RewardResponse(decision_id=result.decision_id, arm=result.arm, value=result.value, applied=result.applied)


@router.post("/rewards/batch")
async def reward_batch(name: str, body: RewardBatchRequest, request: Request) -> RewardBatchResponse:
    """Up to 1,000 rewards; each result carries the status its single call would have had."""
    return RewardBatchResponse(results=await request.app.state.engine.reward(name, body.rewards))

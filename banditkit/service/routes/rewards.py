"""Rewards: joined to the logged decision by its id, applied exactly once (a hot path, see :mod:`._body`)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ..deps import ClientAuth
from ..errors import ConflictError, GoneError, InvalidRequestError, NotFoundError
from ..schemas import RewardBatchRequest, RewardBatchResponse, RewardRequest, RewardResponse
from ._body import answer, documented, parse

router = APIRouter(prefix="/v1/experiments/{name}", tags=["rewards"], dependencies=[ClientAuth])
_ERRORS = {404: NotFoundError, 409: ConflictError, 410: GoneError}


@router.post("/rewards", responses={404: {}, 409: {}, 410: {}}, **documented(RewardRequest, RewardResponse))
async def reward(name: str, request: Request) -> Response:
    """Reward a decision; a retry with the same value returns the first answer."""
    body = await parse(request, RewardRequest)
    (result,) = await request.app.state.engine.reward(name, [body])
    if result.status == 422:
        raise InvalidRequestError(result.detail, "value")
    if result.status != 200:
        raise _ERRORS[result.status](result.detail)
    return answer(RewardResponse(decision_id=result.decision_id, arm=result.arm, value=result.value,
                                 applied=result.applied))


@router.post("/rewards/batch", **documented(RewardBatchRequest, RewardBatchResponse))
async def reward_batch(name: str, request: Request) -> Response:
    """Up to 1,000 rewards; each result carries the status its single call would have had."""
    body = await parse(request, RewardBatchRequest)
    return answer(RewardBatchResponse(results=await request.app.state.engine.reward(name, body.rewards)))

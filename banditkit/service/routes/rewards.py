"""Rewards: joined to the logged decision by its id, applied exactly once (served by :mod:`..hot`)."""

from __future__ import annotations

from ..deps import CLIENT
from ..endpoints import EndpointRouter, to_json
from ..engine import Engine
from ..errors import ConflictError, GoneError, InvalidRequestError, NotFoundError
from ..schemas import RewardBatchRequest, RewardBatchResponse, RewardRequest, RewardResponse

router = EndpointRouter(tags=["rewards"])
_ERRORS = {404: NotFoundError, 409: ConflictError, 410: GoneError}


@router.endpoint(
    "POST",
    "/v1/experiments/{name}/rewards",
    body=RewardRequest,
    response=RewardResponse,
    auth=CLIENT,
    errors=(404, 409, 410, 503),
)
async def reward(engine: Engine, request: RewardRequest, name: str) -> bytes:
    """Reward a decision; a retry with the same value returns the first answer."""
    result = await engine.reward_one(name, request)
    if result.status != 200:
        assert result.detail is not None  # every refused reward says why
        if result.status == 422:
            raise InvalidRequestError(result.detail, "value")
        raise _ERRORS[result.status](result.detail)
    return to_json(
        RewardResponse(decision_id=result.decision_id, arm=result.arm, value=result.value, applied=result.applied)
    )


@router.endpoint(
    "POST",
    "/v1/experiments/{name}/rewards/batch",
    body=RewardBatchRequest,
    response=RewardBatchResponse,
    auth=CLIENT,
    errors=(404, 503),
)
async def reward_batch(engine: Engine, request: RewardBatchRequest, name: str) -> bytes:
    """Up to 1,000 rewards; each result carries the status its single call would have had."""
    return to_json(RewardBatchResponse(results=await engine.reward(name, request.rewards)))

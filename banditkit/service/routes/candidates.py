"""Policy canaries: register a candidate policy on a share of units, read its comparison, promote or delete it."""

from __future__ import annotations

from ..deps import ADMIN, CLIENT
from ..endpoints import EndpointRouter, to_json
from ..engine import Engine
from ..schemas import CandidateCreate, CandidateOut, ExperimentOut

router = EndpointRouter(tags=["candidates"])


@router.endpoint(
    "POST",
    "/v1/experiments/{name}/candidates",
    body=CandidateCreate,
    response=CandidateOut,
    auth=ADMIN,
    status=201,
    errors=(404, 409, 503),
)
async def register_candidate(engine: Engine, body: CandidateCreate, name: str) -> bytes:
    """Serve a candidate policy (same arms) to ``share`` of the units, by their hash; a new policy version.

    The log names the policy that served each decision and its propensity under that policy. The candidate
    is rolled back automatically once it is credibly worse than the experiment's policy or below its floor.
    409 when the experiment has a candidate already or is sticky.
    """
    return to_json(await engine.register_candidate(name, body))


@router.endpoint("GET", "/v1/experiments/{name}/candidates", response=CandidateOut, auth=CLIENT, errors=(404, 503))
async def get_candidate(engine: Engine, name: str) -> bytes:
    """The candidate, its share, and the comparison: each policy's rewards, mean and anytime-valid interval."""
    return to_json(engine.candidate(name))


@router.endpoint(
    "DELETE", "/v1/experiments/{name}/candidates", response=ExperimentOut, auth=ADMIN, errors=(404, 409, 503)
)
async def delete_candidate(engine: Engine, name: str) -> bytes:
    """Stop serving the candidate (404 when there is none); a new policy version and a ``candidate_removed`` event."""
    await engine.remove_candidate(name)
    return to_json(engine.experiment(name).describe())


@router.endpoint(
    "POST",
    "/v1/experiments/{name}/candidates/promote",
    response=ExperimentOut,
    auth=ADMIN,
    errors=(404, 409, 503),
)
async def promote_candidate(engine: Engine, name: str) -> bytes:
    """Make the candidate the experiment's policy, with what it learned (404 when there is none); an event."""
    return to_json(await engine.promote_candidate(name))

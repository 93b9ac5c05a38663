"""Experiments: create, list (a page at a time), read, change arms, statistics."""

from __future__ import annotations

from bisect import bisect_right

from fastapi.concurrency import run_in_threadpool

from ..deps import ADMIN, CLIENT
from ..endpoints import EndpointRouter, to_json
from ..engine import Engine
from ..schemas import (
    ArmsPatch,
    ExperimentCreate,
    ExperimentOut,
    ExperimentPage,
    ExperimentPatch,
    PageQuery,
    StatsOut,
)

router = EndpointRouter(tags=["experiments"])


@router.endpoint(
    "POST",
    "/v1/experiments",
    body=ExperimentCreate,
    response=ExperimentOut,
    auth=ADMIN,
    status=201,
    errors=(409, 503),
)
async def create_experiment(engine: Engine, spec: ExperimentCreate) -> bytes:
    """Create an experiment: arms, policy and parameters, guardrails, attribution window."""
    return to_json(await engine.create(spec))


@router.endpoint("GET", "/v1/experiments", query=PageQuery, response=ExperimentPage, auth=CLIENT)
async def list_experiments(engine: Engine, page: PageQuery) -> bytes:
    """The served experiments in name order, ``limit`` at a time.

    Pass a page's ``next_cursor`` as ``cursor`` to
    get the next (null on the last page). Experiments created meanwhile appear on later pages if their names
    sort after the cursor.
    """
    names = sorted(engine.experiments)
    start = 0 if page.cursor is None else bisect_right(names, page.cursor)
    chosen = names[start : start + page.limit]
    more = start + page.limit < len(names)
    return to_json(
        ExperimentPage(
            experiments=[engine.experiments[name].describe() for name in chosen],
            next_cursor=chosen[-1] if more else None,
        )
    )


@router.endpoint("GET", "/v1/experiments/{name}", response=ExperimentOut, auth=CLIENT, errors=(404, 503))
async def get_experiment(engine: Engine, name: str) -> bytes:
    """Configuration, policy version and the state of every arm."""
    return to_json(engine.experiment(name).describe())


@router.endpoint(
    "PATCH",
    "/v1/experiments/{name}",
    body=ExperimentPatch,
    response=ExperimentOut,
    auth=ADMIN,
    errors=(404, 409, 503),
)
async def patch_experiment(engine: Engine, patch: ExperimentPatch, name: str) -> bytes:
    """Edit guardrails, attribution window, default reward, policy parameters or supervisor, without a restart.

    The policy version goes up by one and the event log records the changes; the learned state is kept.
    """
    return to_json(await engine.patch(name, patch))


@router.endpoint(
    "PATCH",
    "/v1/experiments/{name}/arms",
    body=ArmsPatch,
    response=ExperimentOut,
    auth=ADMIN,
    errors=(404, 409, 503),
)
async def change_arms(engine: Engine, patch: ArmsPatch, name: str) -> bytes:
    """Add, enable, disable and remove arms (in that order); the policy version goes up by one."""
    return to_json(await engine.change_arms(name, patch))


@router.endpoint("GET", "/v1/experiments/{name}/stats", response=StatsOut, auth=CLIENT, errors=(404, 503))
async def stats(engine: Engine, name: str) -> bytes:
    """Per arm: pulls, mean reward with its intervals, P(best), probability; the regret so far; entropy, alerts.

    Computed off the event loop (after a reward it integrates every arm's posterior: milliseconds for ten
    arms, about 90 for a thousand), on a copy of the experiment taken under its lock.
    """
    engine.experiment(name)  # found (or adopted from a shared store) on the event loop; 404 otherwise
    return to_json(await run_in_threadpool(engine.stats, name))

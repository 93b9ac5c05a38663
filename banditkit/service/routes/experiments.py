"""Experiments: create, list (a page at a time), read, change arms, statistics, archive, delete and purge."""

from __future__ import annotations

from bisect import bisect_right

from fastapi.concurrency import run_in_threadpool

from ..deps import ADMIN, CLIENT
from ..endpoints import EndpointRouter, to_json
from ..engine import Engine
from ..schemas import (
    ArmsPatch,
    ExperimentCreate,
    ExperimentListQuery,
    ExperimentOut,
    ExperimentPage,
    ExperimentPatch,
    PurgeOut,
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


@router.endpoint(
    "GET", "/v1/experiments", query=ExperimentListQuery, response=ExperimentPage, auth=CLIENT, errors=(503,)
)
async def list_experiments(engine: Engine, page: ExperimentListQuery) -> bytes:
    """The experiments of one ``status`` (active by default; archived; deleted) in name order, ``limit`` at a time.

    Pass a page's ``next_cursor`` as ``cursor`` to
    get the next (null on the last page). Experiments created meanwhile appear on later pages if their names
    sort after the cursor. Active and archived ones are answered from memory; deleted ones are read from the
    store (503 while it does not answer).
    """
    if page.status == "deleted":
        names = sorted(await run_in_threadpool(engine.store.deleted_names))
    else:
        names = sorted(name for name, e in engine.experiments.items() if e.status == page.status)
    start = 0 if page.cursor is None else bisect_right(names, page.cursor)
    chosen = names[start : start + page.limit]
    more = start + page.limit < len(names)
    if page.status == "deleted":
        described = await run_in_threadpool(engine.describe_deleted, chosen)
    else:
        described = [engine.experiments[name].describe() for name in chosen]
    return to_json(ExperimentPage(experiments=described, next_cursor=chosen[-1] if more else None))


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


@router.endpoint("POST", "/v1/experiments/{name}/archive", response=ExperimentOut, auth=ADMIN, errors=(404, 409, 503))
async def archive_experiment(engine: Engine, name: str) -> bytes:
    """Stop serving decisions (each gets 409); rewards for its decisions still join within the window.

    It leaves the default listing (``?status=archived`` lists it); the policy version goes up by one and the
    event log records it. Archiving an archived experiment changes nothing.
    """
    return to_json(await engine.archive(name))


@router.endpoint("POST", "/v1/experiments/{name}/unarchive", response=ExperimentOut, auth=ADMIN, errors=(404, 409, 503))
async def unarchive_experiment(engine: Engine, name: str) -> bytes:
    """Serve an archived experiment again, with everything it learned while archived."""
    return to_json(await engine.unarchive(name))


@router.endpoint("DELETE", "/v1/experiments/{name}", response=ExperimentOut, auth=ADMIN, errors=(404, 409, 503))
async def delete_experiment(engine: Engine, name: str) -> bytes:
    """Take the experiment out of serving and of the catalogue; its log stays readable until purged.

    Decisions and rewards for it get 404 from now on; ``GET .../log`` and ``GET .../events`` still answer,
    ``?status=deleted`` lists it, and its name stays taken until ``DELETE .../log`` purges it.
    """
    experiment = engine.experiment(name)
    await engine.delete(name)
    return to_json(experiment.describe())


@router.endpoint("DELETE", "/v1/experiments/{name}/log", response=PurgeOut, auth=ADMIN, errors=(404, 409, 503))
async def purge_log(engine: Engine, name: str) -> bytes:
    """Purge a deleted experiment: its decisions, rewards, snapshots and model; 409 if it is not deleted.

    The audit events stay (with a ``purge`` event), and the name is free for a new experiment. Parquet files
    the Redis learner archived for it under ``archive_dir`` are removed too.
    """
    return to_json(await engine.purge(name))

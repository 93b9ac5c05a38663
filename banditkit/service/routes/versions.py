"""Model versions: snapshots of the full model, rollback to one, and the audit log."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import AdminAuth, ClientAuth, EngineDep
from ..schemas import ExperimentOut, RollbackRequest, SnapshotOut

router = APIRouter(prefix="/v1/experiments/{name}", tags=["versions"])


@router.post("/snapshots", status_code=201, dependencies=[AdminAuth])
async def create_snapshot(name: str, engine: EngineDep) -> SnapshotOut:
    """Keep the full current model (arms, policy state, ledger) under a snapshot id."""
    return await engine.snapshot(name)


@router.get("/snapshots", dependencies=[ClientAuth])
async def list_snapshots(name: str, engine: EngineDep) -> list[SnapshotOut]:
    return engine.snapshots(name)


@router.post("/rollback", dependencies=[AdminAuth])
async def rollback(name: str, body: RollbackRequest, engine: EngineDep) -> ExperimentOut:
    """Serve a snapshot's model again, as a new policy version; the decision log is not rewritten."""
    return await engine.rollback(name, body.snapshot_id)


@router.get("/events", dependencies=[ClientAuth])
async def events(name: str, engine: EngineDep) -> list[dict]:
    """The audit log: creation, arm changes, snapshots, rollbacks, guardrail actions."""
    engine.experiment(name)
    return engine.store.events(name)

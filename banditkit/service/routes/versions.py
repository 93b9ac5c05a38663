"""Model versions: snapshots of the full model, rollback to one, and the audit log."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from ..deps import ADMIN, CLIENT
from ..endpoints import EndpointRouter, to_json
from ..engine import Engine
from ..schemas import AlertOut, AlertRequest, ExperimentOut, RollbackRequest, SnapshotOut

router = EndpointRouter(tags=["versions"])
_SNAPSHOTS = TypeAdapter(list[SnapshotOut])
_EVENTS = TypeAdapter(list[dict[str, Any]])


@router.endpoint(
    "POST", "/v1/experiments/{name}/snapshots", response=SnapshotOut, auth=ADMIN, status=201, errors=(404, 503)
)
async def create_snapshot(engine: Engine, name: str) -> bytes:
    """Keep the full current model (arms, policy state, ledger) under a snapshot id."""
    return to_json(await engine.snapshot(name))


@router.endpoint("GET", "/v1/experiments/{name}/snapshots", response=list[SnapshotOut], auth=CLIENT, errors=(404, 503))
async def list_snapshots(engine: Engine, name: str) -> bytes:
    """The snapshots kept: id, policy version, time."""
    return _SNAPSHOTS.dump_json(engine.snapshots(name))


@router.endpoint(
    "POST",
    "/v1/experiments/{name}/rollback",
    body=RollbackRequest,
    response=ExperimentOut,
    auth=ADMIN,
    errors=(404, 409, 503),
)
async def rollback(engine: Engine, request: RollbackRequest, name: str) -> bytes:
    """Serve a snapshot's model again, as a new policy version; the decision log is not rewritten."""
    return to_json(await engine.rollback(name, request.snapshot_id))


@router.endpoint("GET", "/v1/experiments/{name}/events", response=list[dict], auth=CLIENT, errors=(404, 503))
async def events(engine: Engine, name: str) -> bytes:
    """The audit log: creation, changes, snapshots, rollbacks, guardrail actions, alerts, archive and delete.

    A deleted experiment's events answer until it is purged.
    """
    engine.logged(name)
    return _EVENTS.dump_json(engine.store.events(name))


@router.endpoint(
    "POST", "/v1/experiments/{name}/alerts", body=AlertRequest, response=AlertOut, auth=ADMIN, errors=(404, 409, 503)
)
async def record_alert(engine: Engine, alert: AlertRequest, name: str) -> bytes:
    """Raise or resolve a supervisor alert (what ``banditkit watch`` posts); its remediation is applied once.

    ``written`` is false when the alert was already in that state: nothing changed.
    """
    return to_json(await engine.record_alert(name, alert))

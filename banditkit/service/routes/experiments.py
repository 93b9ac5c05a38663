"""Experiments: create, read, change arms, statistics."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import AdminAuth, ClientAuth, EngineDep
from ..schemas import ArmsPatch, ExperimentCreate, ExperimentOut, StatsOut

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])


@router.post("", status_code=201, dependencies=[AdminAuth])
async def create_experiment(body: ExperimentCreate, engine: EngineDep) -> ExperimentOut:
    """Create an experiment: arms, policy and parameters, guardrails, attribution window."""
    return await engine.create(body)


@router.get("", dependencies=[ClientAuth])
async def list_experiments(engine: EngineDep) -> list[ExperimentOut]:
    return [experiment.describe() for experiment in engine.experiments.values()]


@router.get("/{name}", dependencies=[ClientAuth])
async def get_experiment(name: str, engine: EngineDep) -> ExperimentOut:
    """Configuration, policy version and the state of every arm."""
    return engine.experiment(name).describe()


@router.patch("/{name}/arms", dependencies=[AdminAuth])
async def change_arms(name: str, body: ArmsPatch, engine: EngineDep) -> ExperimentOut:
    """Add, enable, disable and remove arms (in that order); the policy version goes up by one."""
    return await engine.change_arms(name, body)


@router.get("/{name}/stats", dependencies=[ClientAuth])
async def stats(name: str, engine: EngineDep) -> StatsOut:
    """Per arm: pulls, mean reward with a 95% interval, probability; entropy and alerts."""
    return engine.stats(name)

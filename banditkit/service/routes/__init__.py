"""HTTP routes, one module per resource (in the order OpenAPI lists them)."""

from __future__ import annotations

from . import candidates, decisions, experiments, health, log, model, rewards, versions

ROUTERS = [module.router for module in (experiments, candidates, model, decisions, rewards, log, versions, health)]

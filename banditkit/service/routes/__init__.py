"""HTTP routes, one module per resource (in the order OpenAPI lists them)."""

from __future__ import annotations

from . import decisions, experiments, health, log, model, rewards, versions

ROUTERS = [module.router for module in (experiments, model, decisions, rewards, log, versions, health)]

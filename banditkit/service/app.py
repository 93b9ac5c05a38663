"""The app factory: settings in, a FastAPI app out; the store opens in the lifespan, not at import."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import AsyncIterator

from fastapi import FastAPI

from .. import __version__
from .config import Settings
from .declared import read_experiments
from .endpoints import EndpointRouter, document_bodies
from .engine import Engine
from .errors import install_error_handlers
from .hot import HotPaths
from .routes import ROUTERS
from .stores import ExperimentExistsError, open_store

logger = logging.getLogger("banditkit.service")


def create_app(settings: Settings | None = None) -> FastAPI:
    """A decision service app; ``settings`` default to the ``BANDITKIT_*`` environment."""
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = open_store(settings.store, synchronous=settings.sqlite_synchronous,
                           commit_interval_s=settings.commit_interval_ms / 1000)
        engine = Engine(store, refresh_s=settings.refresh_s)
        app.state.engine = engine
        try:
            if settings.experiments_file is not None:
                await _declare(engine, settings)
            sweeper = asyncio.create_task(_sweep_forever(engine, settings.sweep_interval_s))
            if settings.tune_interpreter:
                _tune_interpreter()
            yield
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        finally:
            engine.close()
            store.close()

    app = ServiceApp(title="banditkit decision service", version=__version__, lifespan=lifespan,
                     max_body_size=settings.max_body_bytes,
                     description="Adaptive experiments: decisions with propensities, delayed rewards, versions.")
    app.state.settings = settings
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    endpoints = [endpoint for router in ROUTERS if isinstance(router, EndpointRouter) for endpoint in router.endpoints]
    document_bodies(app, endpoints)
    app.hot_paths = HotPaths(app, endpoints)
    return app


class ServiceApp(FastAPI):
    """The FastAPI app, with the endpoints of its :class:`.EndpointRouter` answered before its middleware stack
    (see :mod:`.hot`)."""

    hot_paths: HotPaths | None = None

    async def __call__(self, scope, receive, send) -> None:
        if self.hot_paths is not None and await self.hot_paths.handle(scope, receive, send):
            return
        await super().__call__(scope, receive, send)


def _tune_interpreter() -> None:
    """Server-process settings that cut latency: a 0.2 ms GIL switch interval and the start-up objects frozen
    out of the garbage collector (full collections then scan only what the service allocated, not every
    loaded module).

    The SQLite writer thread takes the interpreter lock back after every SQLite call (begin, each insert,
    commit) and, while the event loop is busy, waits up to one switch interval each time. Under decision
    load a group commit took 4.0 ms at the median with 1 ms and 2.3 ms with 0.2 ms; rewards and mixed
    load gained 6-11% in throughput. At 0.05 ms the forced switches cost more than they save."""
    sys.setswitchinterval(0.0002)
    gc.collect()
    gc.freeze()


async def _declare(engine: Engine, settings: Settings) -> None:
    for spec in read_experiments(settings.experiments_file):
        if spec.name in engine.experiments:
            logger.info("experiment %r already exists; %s does not change it", spec.name, settings.experiments_file)
            continue
        with contextlib.suppress(ExperimentExistsError):
            await engine.create(spec)
            logger.info("created experiment %r from %s", spec.name, settings.experiments_file)


async def _sweep_forever(engine: Engine, interval_s: float) -> None:
    """Apply default rewards as attribution windows close; a failure is logged and retried."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await engine.sweep()
        except Exception:
            logger.exception("default-reward sweep failed; retrying in %.1f s", interval_s)

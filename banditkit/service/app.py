"""The app factory: settings in, a FastAPI app out; the store opens in the lifespan, not at import."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from .. import __version__
from .config import Settings
from .declared import read_experiments
from .endpoints import EndpointRouter, document_endpoints
from .engine import Engine
from .errors import install_error_handlers
from .hot import HotPaths
from .metrics import UNMATCHED_ROUTE, Metrics
from .routes import ROUTERS, dashboard
from .routes import metrics as metrics_route
from .sources import SourcePoller
from .stores import ExperimentExistsError, Store, StoreUnavailableError, open_store
from .stores.redis_keys import RedisUnreachableError
from .supervisor import Supervisor, Webhook, webhook_hook

logger = logging.getLogger("banditkit.service")


def create_app(settings: Settings | None = None) -> FastAPI:
    """A decision service app; ``settings`` default to the ``BANDITKIT_*`` environment."""
    settings = settings or Settings()
    metrics = Metrics(settings.metrics_max_arms, settings.metrics_dir) if settings.metrics else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The posterior integrals (P(best), Thompson propensities) import scipy.special on first use: half a
        # second that the first decision or the first /stats and dashboard page would otherwise wait.
        importlib.import_module("scipy.special")
        if settings.tune_interpreter:  # first: the store may learn rewards again as it opens (one BLAS thread)
            _tune_interpreter()
        store, engine = await _open(settings, metrics)
        app.state.engine = engine
        try:
            if settings.experiments_file is not None:
                await _declare(engine, settings.experiments_file)
            # A store that learns in process settles attribution windows here; a shared store's learner
            # does, and this server follows the models it stores.
            background = asyncio.create_task(
                _sweep_forever(engine, settings.sweep_interval_s)
                if store.learns_in_process
                else _follow_forever(engine, settings)
            )
            webhook = app.state.webhook = Webhook()
            engine.on_alert = webhook_hook(engine, webhook)
            supervisor = app.state.supervisor = Supervisor(engine, settings.check_interval_s)
            sources = SourcePoller(engine, metrics)
            tasks = [
                background,
                asyncio.create_task(supervisor.run_forever()),
                asyncio.create_task(webhook.run()),
                asyncio.create_task(sources.run_forever()),
            ]
            if metrics is not None and metrics.folder is not None:  # one of several workers
                tasks.append(asyncio.create_task(metrics.flush_forever()))
            yield
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            engine.close()
            store.close()
            if metrics is not None:
                with contextlib.suppress(OSError):
                    metrics.flush()

    app = ServiceApp(
        title="banditkit decision service",
        version=__version__,
        lifespan=lifespan,
        # No Starlette limit: the endpoints read their bodies themselves, up to settings.max_body_bytes, and
        # answer 413 in JSON on both paths (Starlette's limit answers in plain text).
        max_body_size=None,
        description="Adaptive experiments: decisions with propensities, delayed rewards, versions.",
        # /docs is served from the package's own copy of Swagger UI (routes/dashboard.py), not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.metrics = metrics
    install_error_handlers(app)
    routers = ROUTERS if metrics is None else [*ROUTERS, metrics_route.router]
    for router in routers:
        app.include_router(router)
    document_endpoints(app, routers)
    dashboard.install(app)
    endpoints = [endpoint for router in ROUTERS if isinstance(router, EndpointRouter) for endpoint in router.endpoints]
    app.hot_paths = HotPaths(app, endpoints)
    return app


class ServiceApp(FastAPI):
    """The FastAPI app, with the endpoints of its :class:`.EndpointRouter` answered before its middleware stack.

    See :mod:`.hot`. Every HTTP request, on either path, is counted here in ``metrics`` (when on): its route,
    method, status and time to the last byte of its answer.
    """

    hot_paths: HotPaths | None = None
    metrics: Metrics | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or self.hot_paths is None:
            await super().__call__(scope, receive, send)
            return
        metrics = self.metrics
        if metrics is None:
            if await self.hot_paths.handle(scope, receive, send) is None:
                await super().__call__(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            served = await self.hot_paths.handle(scope, receive, send)
        except BaseException:  # a failure the server answers 500
            metrics.answered((UNMATCHED_ROUTE, scope["method"], 500), time.perf_counter() - started)
            raise
        if served is not None:  # the fast front knows the status it sent
            metrics.answered(served, time.perf_counter() - started)
            return
        answer = _Status(send)
        route = UNMATCHED_ROUTE
        try:
            await super().__call__(scope, receive, answer.send)
            matched = scope.get("route")  # set by FastAPI's router on the scope it was given
            route = getattr(matched, "path", UNMATCHED_ROUTE)
        finally:
            metrics.request(route, scope["method"], answer.status, time.perf_counter() - started)


class _Status:
    """An ASGI ``send`` that notes the status of the answer it passes on (500 until one starts)."""

    __slots__ = ("_send", "status")

    def __init__(self, send) -> None:
        self._send = send
        self.status = 500

    def send(self, message):
        if message["type"] == "http.response.start":
            self.status = message["status"]
        return self._send(message)


async def _open(settings: Settings, metrics: Metrics | None = None) -> tuple[Store, Engine]:
    """The store and the engine over it (counting in ``metrics``), the experiments loaded.

    With ``settings.wait_for_store``, a shared store that does not answer is retried each second until it
    does: a worker of ``serve --workers N`` restarted during a Redis outage must wait, because a worker that
    fails its start-up stops the whole server.
    """
    waited = False
    while True:
        store = None
        try:
            store = open_store(
                settings.store,
                synchronous=settings.sqlite_synchronous,
                commit_interval_s=settings.commit_interval_ms / 1000,
                spool_dir=settings.spool_dir,
                checkpoint_s=settings.checkpoint_s,
            )
            engine = Engine(store, refresh_s=settings.refresh_s, metrics=metrics, archive_dir=settings.archive_dir)
        except (RedisUnreachableError, StoreUnavailableError) as error:
            if store is not None:
                store.close()
            if not settings.wait_for_store:
                raise
            if not waited:
                logger.warning("%s; this worker starts when it answers, retrying every second", error)
                waited = True
            await asyncio.sleep(1.0)
            continue
        if waited:
            logger.warning("the store answers again; this worker starts")
        return store, engine


def _tune_interpreter() -> None:
    """Server-process settings that cut latency.

    A 0.2 ms GIL switch interval, the start-up objects frozen out of the garbage collector (full collections
    then scan only what the service allocated, not every loaded module), and one thread per BLAS call.

    A server's requests, writer and learning lanes already keep the cores busy; a BLAS library that splits
    each matrix product over every core makes small products wait for its threads. On 2 cores a LinUCB
    decision with 512 features (a 1 x 512 by 512 x 1024 product) took 10-20 ms with OpenBLAS's threads and
    0.3 ms with one; a 512 x 512 product 28 ms and 13 ms.

    The SQLite writer thread takes the interpreter lock back after every SQLite call (begin, each insert,
    commit) and, while the event loop is busy, waits up to one switch interval each time. Under decision
    load a group commit took 4.0 ms at the median with 1 ms and 2.3 ms with 0.2 ms; rewards and mixed
    load gained 6-11% in throughput. At 0.05 ms the forced switches cost more than they save.
    """
    sys.setswitchinterval(0.0002)
    gc.collect()
    gc.freeze()
    from threadpoolctl import threadpool_limits  # the service extra's; deferred: it inspects loaded libraries

    threadpool_limits(1, user_api="blas")


async def _declare(engine: Engine, experiments_file: Path) -> None:
    for spec in read_experiments(experiments_file):
        if spec.name in engine.experiments:
            logger.info("experiment %r already exists; %s does not change it", spec.name, experiments_file)
            continue
        with contextlib.suppress(ExperimentExistsError):
            await engine.create(spec)
            logger.info("created experiment %r from %s", spec.name, experiments_file)


async def _follow_forever(engine: Engine, settings: Settings) -> None:
    """Reload models whose stored version moved every ``model_poll_s``, and serve new experiments.

    Experiments other workers created are looked for every second; a failure (the store down) is retried at
    the next round.
    """
    loop = asyncio.get_running_loop()
    next_discovery = loop.time()
    while True:
        await asyncio.sleep(settings.model_poll_s)
        try:
            if loop.time() >= next_discovery:
                next_discovery = loop.time() + 1.0
                await engine.discover()
            await engine.follow()
        except StoreUnavailableError:
            pass  # the store logs its outage once; decisions fall back
        except Exception:
            logger.exception("following the stored models failed; retrying in %.2f s", settings.model_poll_s)


async def _sweep_forever(engine: Engine, interval_s: float) -> None:
    """Apply default rewards as attribution windows close; a failure is logged and retried."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await engine.sweep()
        except StoreUnavailableError:
            pass  # the store logs its outage once; the decisions are settled when it takes writes again
        except Exception:
            logger.exception("default-reward sweep failed; retrying in %.1f s", interval_s)

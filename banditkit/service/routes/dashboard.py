"""The dashboard (``/``, ``/experiments/{name}``), its panels, its assets and the ``/docs`` page, all served offline.

Pages and panels are HTML rendered here (charts as SVG, :mod:`banditkit.service.charts`); the one script,
``static/dashboard.js``, only fetches panels and sends the admin actions to the HTTP API. Every asset ships in
the package (``static/``, Swagger UI's files under ``static/swagger-ui/`` with their licence): no CDN.

Tokens: a page load cannot carry an ``Authorization`` header. Without tokens configured, the service is open
and a page holds its data. With tokens, a page is only a shell, the same for every visitor; its script asks
for a token, keeps it in the tab's ``sessionStorage`` and sends it as ``Authorization: Bearer`` to fetch the
panel (``/dashboard/panels/...``, any valid token) and for the admin actions, which ask for the admin token.
No cookie is set, so another site cannot make a visitor's browser act with their token.
"""

from __future__ import annotations

import time
from importlib.resources import files
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from .. import charts, dashboard
from ..deps import CLIENT
from ..engine import Engine
from ..errors import NotFoundError

router = APIRouter(include_in_schema=False)
#: Where the page's script and styles may come from: this server only; no inline script or style.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}
STATIC = files("banditkit.service") / "static"


def _raw(value: Any) -> str:
    """A number as ``/stats`` gives it (``repr`` of a float), for a data attribute; empty for None."""
    return "" if value is None else repr(value)


def _num(value: float | None, digits: int = 3) -> str:
    return "\N{EN DASH}" if value is None else f"{value:.{digits}f}"


def _duration(seconds: int) -> str:
    for unit, size in (("week", 604_800), ("day", 86_400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count > 1 else ''}"
    return f"{seconds} s"


TEMPLATES = Environment(
    loader=PackageLoader("banditkit.service", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.filters.update(raw=_raw, num=_num, utc=charts.utc, duration=_duration)


def _render(template: str, **values: Any) -> str:
    return TEMPLATES.get_template(template).render(**values)


def _base(request: Request) -> str:
    """The URL prefix the app is served under (``root_path``), for the links of a page."""
    return request.scope.get("root_path", "").rstrip("/")


def _html(html: str, started: float, status: int = 200) -> HTMLResponse:
    """An HTML answer with the dashboard's headers; ``Server-Timing`` says how long it took since ``started``."""
    took = 1e3 * (time.perf_counter() - started)
    return HTMLResponse(html, status, headers={**HEADERS, "Server-Timing": f"render;dur={took:.1f}"})


def _page(
    request: Request,
    title: str,
    panel_url: str,
    panel: str | None,
    started: float,
    experiment: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    settings = request.app.state.settings
    html = _render(
        "page.html",
        title=title,
        base=_base(request),
        auth=settings.auth_enabled,
        # A link opens /metrics without a bearer header: it is offered where that works (no tokens).
        metrics=settings.metrics and not settings.auth_enabled,
        panel_url=panel_url,
        # With tokens, the panel is fetched by the page's script with the visitor's token.
        panel_html=None if settings.auth_enabled else Markup(panel),
        experiment=experiment,
    )
    return _html(html, started, status)


def _overview(request: Request) -> str:
    engine: Engine = request.app.state.engine
    return _render("overview.html", lines=dashboard.overview(engine), base=_base(request))


async def _panel(request: Request, name: str) -> str:
    """An experiment's content; built off the event loop, as ``/stats`` is (its integrals take milliseconds)."""
    engine: Engine = request.app.state.engine
    engine.experiment(name)  # found (or adopted from a shared store) on the event loop; 404 otherwise
    view = await run_in_threadpool(dashboard.experiment_view, engine, name)
    return _render("panel.html", base=_base(request), **view)


@router.get("/", response_class=HTMLResponse)
async def experiments_page(request: Request) -> HTMLResponse:
    """Every experiment, with links to their pages."""
    started = time.perf_counter()
    panel = None if request.app.state.settings.auth_enabled else _overview(request)
    return _page(request, "Experiments", f"{_base(request)}/dashboard/panels/experiments", panel, started)


@router.get("/experiments/{name}", response_class=HTMLResponse)
async def experiment_page(name: str, request: Request) -> HTMLResponse:
    """One experiment: arms, reward rates, P(best), regret, allocation over time, versions, events, actions.

    404 for an unknown experiment when the page holds its data (no tokens configured); with tokens, its panel
    answers 404.
    """
    started = time.perf_counter()
    url = f"{_base(request)}/dashboard/panels/experiments/{quote(name, safe='')}"
    if request.app.state.settings.auth_enabled:
        return _page(request, name, url, None, started, experiment=name)
    try:
        panel = await _panel(request, name)
    except NotFoundError as error:
        missing = f"<h1>Not found</h1><p>{escape(error.detail)}</p>"
        return _page(request, name, url, missing, started, experiment=name, status=404)
    return _page(request, name, url, panel, started, experiment=name)


@router.get("/dashboard/panels/experiments", response_class=HTMLResponse)
async def experiments_panel(request: Request) -> HTMLResponse:
    """The experiments table of ``/`` (any valid token: 401 without)."""
    started = time.perf_counter()
    CLIENT.role(request.app.state.settings, request.headers.get("authorization"))
    return _html(_overview(request), started)


@router.get("/dashboard/panels/experiments/{name}", response_class=HTMLResponse)
async def experiment_panel(name: str, request: Request) -> HTMLResponse:
    """The content of ``/experiments/{name}`` (any valid token: 401 without; 404 for an unknown experiment)."""
    started = time.perf_counter()
    CLIENT.role(request.app.state.settings, request.headers.get("authorization"))
    return _html(await _panel(request, name), started)


@router.get("/docs", response_class=HTMLResponse)
async def api_docs(request: Request) -> HTMLResponse:
    """Swagger UI on the OpenAPI document, its script, styles and icon served from ``static/swagger-ui``."""
    base = _base(request)
    return get_swagger_ui_html(
        openapi_url=f"{base}{request.app.openapi_url}",
        title=f"{request.app.title} - API",
        swagger_js_url=f"{base}/static/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{base}/static/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{base}/static/swagger-ui/favicon-32x32.png",
        # No badge from the public validator: it would send the document to another host.
        swagger_ui_parameters={"validatorUrl": None},
    )


def install(app: FastAPI) -> None:
    """Add the dashboard's routes, ``/docs`` and the ``/static`` assets to ``app`` (created with ``docs_url=None``)."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    for template in ("page.html", "overview.html", "panel.html"):  # compiled now, not by the first visitor
        TEMPLATES.get_template(template)

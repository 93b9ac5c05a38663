"""The dashboard in a real browser (Debian's chromium, headless, driven by Playwright) against `banditkit serve`.

The page is loaded with the service's tokens configured: it asks for a token, shows the panel, and every number
of its table and charts equals ``/stats``; an admin action asks for the admin token and its effect is seen
through the HTTP API; an arm named ``<script>alert(1)</script>`` is shown as text and never runs; ``/docs``
works with every request to another host refused. The browser must start: no skip when it cannot (``make test``
installs chromium). Screenshots go to ``$DASHBOARD_SCREENSHOTS`` (``make screenshots``: docs/img/), else to a
temporary folder.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Dialog, Error, Page, expect, sync_playwright

from banditkit.service import Settings
from banditkit.service.charts import LEFT, WIDTH
from banditkit.service.engine import Engine
from banditkit.service.runner import ServiceProcess, running
from banditkit.service.schemas import ExperimentCreate
from banditkit.service.stores import DecisionRecord, SQLiteStore
from banditkit.service.stores.base import Probabilities

ADMIN, CLIENT = "admin-secret", "client-secret"
#: How long a step may wait for the page (a loaded CI machine is slower than Playwright's default 5 s).
TIMEOUT_MS = 20_000
expect.set_options(timeout=TIMEOUT_MS)
SCRIPT_ARM = "<script>alert(1)</script>"
ARMS = ["control", SCRIPT_ARM, "green"]
#: Reward rate of each arm in the fixture's traffic (every third, every second, every fifth decision).
EVERY = {"control": 3, SCRIPT_ARM: 2, "green": 5}


def chromium_path() -> str:
    """Debian's chromium: ``$CHROMIUM_PATH``, else ``chromium`` on the PATH, else /usr/bin/chromium."""
    return os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(
                executable_path=chromium_path(),
                # root in CI: no sandbox; a container's small /dev/shm: shared memory in /tmp
                args=["--no-sandbox", "--disable-dev-shm-usage"],
                headless=True,
            )
        except Exception as error:  # fail loudly: a dashboard test that cannot start a browser has tested nothing
            pytest.fail(f"chromium did not start from {chromium_path()} (apt-get install -y chromium): {error}")
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = os.environ.get("DASHBOARD_SCREENSHOTS")
    return Path(folder) if folder else tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """`banditkit serve` with both tokens on a file holding experiment 'hero' (arms of :data:`ARMS`) with six
    hours of logged decisions (:func:`history`), then 300 decisions served and rewarded at each arm's rate, and
    'empty' (no decision); yields the process and the arms logged per decision."""
    folder = tmp_path_factory.mktemp("dashboard")
    path = folder / "dashboard.db"
    store = SQLiteStore(path)
    create = Engine(store, refresh_s=0).create(ExperimentCreate(name="hero", arms=ARMS, seed=7))
    with ThreadPoolExecutor(1) as thread:  # a loop of its own: Playwright's runs in this thread
        thread.submit(asyncio.run, create).result()
    logged = history()
    store.append_decisions(logged).result()
    store.close()
    process = ServiceProcess(
        Settings(
            store=f"sqlite:///{path}",
            port=0,
            admin_token=ADMIN,
            client_tokens=CLIENT,
            tune_interpreter=False,
            spool_dir=folder / "spool",
        )
    ).start()
    try:
        with httpx.Client(base_url=process.base_url, headers={"Authorization": f"Bearer {ADMIN}"}) as http:
            http.post("/v1/experiments", json={"name": "empty", "arms": ["a"]}).raise_for_status()
            decisions = http.post("/v1/experiments/hero/decisions/batch", json={"requests": [{}] * 300}).json()
            served = [d["arm"] for d in decisions["decisions"]] + [row.arm for row in logged]
            rewards = [
                {"decision_id": d["decision_id"], "value": float(i % EVERY[d["arm"]] == 0)}
                for i, d in enumerate(decisions["decisions"])
            ]
            http.post("/v1/experiments/hero/rewards/batch", json={"rewards": rewards}).raise_for_status()
        yield process, Counter(served)
    finally:
        process.stop()


def history(decisions: int = 1800, hours: float = 6.0) -> list[DecisionRecord]:
    """Decisions logged over the last ``hours`` hours, the <script> arm's share growing from a third to 80%."""
    rng = np.random.default_rng(11)
    now = time.time()
    times = now - 600 - hours * 3600 * (1 - np.arange(decisions) / decisions)
    share = np.linspace(1 / 3, 0.8, decisions)
    picks = np.where(rng.random(decisions) < share, 1, np.where(rng.random(decisions) < 0.5, 0, 2))
    probabilities = Probabilities(dict.fromkeys(ARMS, 1 / 3))
    return [
        DecisionRecord(f"h{i:05d}", t, "hero", None, None, ARMS[arm], 1 / 3, probabilities, 0, False)
        for i, (t, arm) in enumerate(zip(times.tolist(), picks.tolist(), strict=True))
    ]


@pytest.fixture
def page(browser: Browser, service):
    """A new tab, with its own sessionStorage."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


@pytest.fixture
def seen(page: Page) -> dict[str, list[str]]:
    """What the page did besides drawing: the dialogs it opened (an alert() that ran) and its script errors."""
    record: dict[str, list[str]] = {"dialogs": [], "errors": []}

    def on_dialog(dialog: Dialog) -> None:
        record["dialogs"].append(dialog.message)
        dialog.dismiss()

    def on_error(error: Error) -> None:
        record["errors"].append(str(error))

    page.on("dialog", on_dialog)
    page.on("pageerror", on_error)
    return record


def api(service, path: str, method: str = "GET", token: str = CLIENT, **body) -> dict:
    process, _ = service
    response = httpx.request(
        method, process.base_url + path, headers={"Authorization": f"Bearer {token}"}, json=body or None
    )
    response.raise_for_status()
    return response.json()


def sign_in(page: Page, service, path: str) -> None:
    process, _ = service
    page.goto(process.base_url + path)
    login = page.locator("#login")
    expect(login).to_be_visible()  # tokens configured: the shell holds no data and asks for one
    assert page.locator("#panel table").count() == 0
    login.locator("input[name=token]").fill(CLIENT)
    login.locator("button[type=submit]").click()
    expect(login).to_be_hidden()


def number(text: str | None) -> float | None:
    return None if not text else float(text)


def test_experiment_page_shows_what_stats_says(page, seen, service, screenshots):
    sign_in(page, service, "/experiments/hero")
    expect(page.locator("#panel h1")).to_have_text("hero")
    stats = api(service, "/v1/experiments/hero/stats")
    _, served = service

    # The table: one row per arm, the values behind each cell those of /stats, shown to 3 decimals.
    rows = page.locator("table.arms tbody tr")
    assert rows.count() == len(ARMS)
    for position, arm in enumerate(stats["arms"]):
        row = rows.nth(position)
        assert row.get_attribute("data-arm") == arm["arm"]
        assert row.locator("td").first.inner_text().strip() == arm["arm"]  # the <script> name as text
        for field in ("probability", "mean", "p_best"):
            cell = row.locator(f'td[data-field="{field}"]')
            assert number(cell.get_attribute("data-value")) == arm[field]
            assert cell.inner_text() == f"{arm[field]:.3f}"
        assert int(row.locator('td[data-field="pulls"]').inner_text()) == arm["pulls"]
        assert row.locator('td[data-field="cs"]').inner_text() == f"{arm['cs_low']:.3f} to {arm['cs_high']:.3f}"

    # The reward chart: each arm's mean, fixed-n interval and confidence sequence, drawn in order on one scale.
    for arm in stats["arms"]:
        mark = page.locator(f'#reward-chart g[data-arm="{css(arm["arm"])}"]')
        for field in ("mean", "low", "high", "cs_low", "cs_high"):
            assert number(mark.get_attribute(f"data-{field.replace('_', '-')}")) == arm[field]
        cs, ci = mark.locator("line.cs"), mark.locator("line.ci")
        cx = float(mark.locator("circle").get_attribute("cx"))
        assert float(cs.get_attribute("x1")) <= float(ci.get_attribute("x1")) < cx < float(ci.get_attribute("x2"))
        assert float(ci.get_attribute("x2")) <= float(cs.get_attribute("x2"))

    # P(best): bar lengths in proportion to /stats, on a 0-1 axis.
    for arm in stats["arms"]:
        bar = page.locator(f'#p-best-chart g[data-arm="{css(arm["arm"])}"]')
        assert number(bar.get_attribute("data-p-best")) == arm["p_best"]
        width = float(bar.locator("rect").get_attribute("width"))
        assert width == pytest.approx(arm["p_best"] * (WIDTH - LEFT - 20), abs=0.06)

    # Regret and the counts of the log.
    regret = page.locator('[data-field="regret_estimate"]')
    assert number(regret.get_attribute("data-value")) == stats["regret_estimate"]
    assert page.locator('b[data-field="decisions"]').inner_text() == str(stats["decisions"]) == "2100"

    # Allocation over time: every decision counted once, on the arm it was served.
    areas = page.locator("#allocation-chart polygon")
    drawn = {
        areas.nth(i).get_attribute("data-arm"): int(areas.nth(i).get_attribute("data-decisions"))
        for i in range(areas.count())
    }
    assert drawn == dict(served)

    assert seen == {"dialogs": [], "errors": []}  # the <script> arm never ran
    page.screenshot(path=screenshots / "dashboard-experiment.png", full_page=True)


def css(text: str) -> str:
    """``text`` inside a CSS attribute selector's double quotes."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def test_admin_actions_ask_for_the_admin_token_and_take_effect(page, seen, service, screenshots):
    sign_in(page, service, "/experiments/hero")
    admin = page.locator("#admin")

    # A client token is refused (403), and said so; the arm stays active.
    page.locator('tr[data-arm="green"] button[data-action="disable"]').click()
    expect(admin).to_be_visible()
    admin.locator("input[name=token]").fill(CLIENT)
    admin.locator('button[value="ok"]').click()
    expect(page.locator("#status")).to_contain_text("admin token")
    assert {a["name"]: a["active"] for a in api(service, "/v1/experiments/hero")["arms"]}["green"] is True

    # With the admin token: disabled, in the API and on the page.
    page.locator('tr[data-arm="green"] button[data-action="disable"]').click()
    expect(admin).to_be_visible()
    admin.locator("input[name=token]").fill(ADMIN)
    page.screenshot(path=screenshots / "dashboard-admin.png")  # the question, the token typed
    admin.locator('button[value="ok"]').click()
    expect(page.locator("#status")).to_have_text("arm green disabled")
    expect(page.locator('tr[data-arm="green"] td[data-field="active"]')).to_contain_text("disabled")
    assert {a["name"]: a["active"] for a in api(service, "/v1/experiments/hero")["arms"]}["green"] is False

    # A snapshot (the admin token is kept for the tab: no second question), then enable, then roll back to it.
    page.locator('button[data-action="snapshot"]').click()
    expect(page.locator("#status")).to_have_text("snapshot taken")
    snapshot = api(service, "/v1/experiments/hero/snapshots")[-1]["snapshot_id"]
    page.locator('tr[data-arm="green"] button[data-action="enable"]').click()
    expect(page.locator("#status")).to_have_text("arm green enabled")
    assert {a["name"]: a["active"] for a in api(service, "/v1/experiments/hero")["arms"]}["green"] is True
    page.locator(f'tr[data-snapshot="{snapshot}"] button[data-action="rollback"]').click()
    expect(page.locator("#status")).to_have_text(f"rolled back to snapshot {snapshot}")
    assert {a["name"]: a["active"] for a in api(service, "/v1/experiments/hero")["arms"]}["green"] is False
    kinds = [event["kind"] for event in api(service, "/v1/experiments/hero/events")]
    assert kinds[-4:] == ["arms", "snapshot", "arms", "rollback"]
    expect(page.locator("table.events tbody tr").first).to_contain_text("rollback")
    assert seen == {"dialogs": [], "errors": []}


def test_experiments_page_lists_them_and_links_each(page, service, screenshots):
    sign_in(page, service, "/")
    rows = page.locator("table.experiments tbody tr")
    expect(rows).to_have_count(2)
    assert [rows.nth(i).get_attribute("data-experiment") for i in range(2)] == ["empty", "hero"]
    page.set_viewport_size({"width": 1100, "height": 260})
    page.screenshot(path=screenshots / "dashboard-experiments.png")
    page.locator('tr[data-experiment="empty"] a').click()
    expect(page.locator("#panel h1")).to_have_text("empty")  # the token is kept for the tab
    expect(page.locator("#panel")).to_contain_text("No decision yet.")


def test_docs_page_loads_nothing_from_another_host(page, service):
    process, _ = service
    host = urlsplit(process.base_url).netloc
    elsewhere: list[str] = []

    def only_here(route):
        if urlsplit(route.request.url).netloc == host:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_here)
    page.goto(process.base_url + "/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("banditkit decision service")
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    assert elsewhere == []
    html = httpx.get(process.base_url + "/docs").text
    assert re.findall(r'(?:src|href)="(?:https?:)?//', html) == []


def test_panels_need_a_token_and_an_unknown_experiment_is_404(service):
    process, _ = service
    for path in ("/dashboard/panels/experiments", "/dashboard/panels/experiments/hero"):
        assert httpx.get(process.base_url + path).status_code == 401
        assert httpx.get(process.base_url + path, headers={"Authorization": "Bearer guess"}).status_code == 401
    unknown = httpx.get(
        process.base_url + "/dashboard/panels/experiments/nope", headers={"Authorization": f"Bearer {CLIENT}"}
    )
    assert unknown.status_code == 404 and "experiment 'nope' not found" in unknown.text
    shell = httpx.get(process.base_url + "/experiments/hero")
    assert shell.status_code == 200 and "control" not in shell.text  # no data without a token
    assert "script-src 'self'" in shell.headers["content-security-policy"]
    assert 'href="/metrics"' not in shell.text  # a link would open it without the token it needs


def test_without_tokens_the_page_holds_its_data_and_escapes_names(tmp_path):
    settings = Settings(
        store=f"sqlite:///{tmp_path / 'open.db'}", port=0, admin_token=None, client_tokens=(), tune_interpreter=False
    )
    with running(settings) as base_url, httpx.Client(base_url=base_url) as http:
        http.post("/v1/experiments", json={"name": "hero", "arms": ["a", SCRIPT_ARM]}).raise_for_status()
        http.post("/v1/experiments/hero/decisions/batch", json={"requests": [{}] * 20}).raise_for_status()
        page = http.get("/experiments/hero")
        assert page.status_code == 200 and 'data-arm="a"' in page.text
        assert SCRIPT_ARM not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert 'data-decisions="' in page.text
        missing = http.get("/experiments/nope")
        assert missing.status_code == 404 and "experiment &#39;nope&#39; not found" in missing.text
        assert http.get("/").status_code == 200 and 'data-experiment="hero"' in http.get("/").text
        assert 'href="/metrics"' in page.text and http.get("/metrics").status_code == 200

"""The documentation site builds in strict mode, offline, and its generated reference covers the code.

`make docs` runs the same build into site/; here it goes to a temporary folder so a test run leaves no trace.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    completed = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return out


def test_every_page_of_the_nav_is_built_for_reading_from_disk(site):
    pages = ("index", "policies", "service", "benchmarks", "guides/choosing-a-policy", "reference/python")
    for page in (*pages, "reference/cli"):
        assert (site / f"{page}.html").is_file(), page  # file:// needs page.html, not page/ folders
    # nothing is fetched at reading time: no web font, no script or stylesheet from another host
    for page in site.rglob("*.html"):
        html = page.read_text()
        remote = re.findall(r'<(?:script[^>]*\ssrc|link[^>]*\shref)="(?:https?:)?//[^"]*"', html)
        assert not remote and "fonts.googleapis.com" not in html, (page.relative_to(site), remote)
    # search from file://: the index inlined as a script, the worker started through the site's own shim
    assert (site / "search" / "search_index.js").is_file()
    assert '<script src="assets/iframe-worker/shim.js"' in (site / "index.html").read_text()


def test_the_reference_names_every_command_route_setting_and_column(site):
    from banditkit.cli import app
    from banditkit.service.config import Settings
    from banditkit.service.export import COLUMNS

    cli = (site / "reference" / "cli.html").read_text()
    for command in app.registered_commands:
        assert f"banditkit {command.name or command.callback.__name__}" in cli
    document = json.loads((site / "reference" / "openapi.json").read_text())
    http = (site / "reference" / "http.html").read_text()
    for path, operations in document["paths"].items():
        for method in operations:
            assert f"{method.upper()} {path}" in http
    settings = (site / "reference" / "settings.html").read_text()
    for name in Settings.model_fields:
        assert f"BANDITKIT_{name.upper()}" in settings
    log = (site / "reference" / "log.html").read_text()
    assert all(f"<code>{column}</code>" in log for column in COLUMNS)
    python = (site / "reference" / "python.html").read_text()
    for qualified in ("banditkit.Bandit", "banditkit.sim.run", "banditkit.ope.evaluate"):
        assert f'id="{qualified}"' in python


def test_every_image_of_the_docs_is_made_by_code():
    """Each image a page shows exists, and each image in docs/img/ is a figure of docs/figures.py (make figures)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("figures", ROOT / "docs" / "figures.py")
    assert spec is not None and spec.loader is not None
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    images = {path.name for path in (ROOT / "docs" / "img").iterdir()}
    assert images == {f"{name}.png" for name in figures.FIGURES}, "an image without a figure, or a figure without it"
    for page in (ROOT / "docs").rglob("*.md"):
        for shown in re.findall(r"!\[[^\]]*\]\((?:\.\./)*img/([^)]+)\)", page.read_text()):
            assert shown in images, f"{page.name} shows img/{shown}, which docs/figures.py does not make"

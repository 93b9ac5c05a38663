"""Schemathesis over the OpenAPI document of a served process, with the admin token and with a client token:
requests that fit the document and requests that do not (bounded, derandomized examples per operation) never
get a 5xx, a status the operation does not document, or a body, media type or header other than documented;
and a request that does not fit is never accepted."""

from __future__ import annotations

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from banditkit.service import Settings, create_app
from banditkit.service.runner import ServiceProcess

ADMIN, CLIENT = "admin-secret", "client-secret"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    negative_data_rejection,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
]
#: Examples per operation, token and kind (fitting the document, or not): 30-40 s for the whole file on 2 cores.
EXAMPLES = 12
OPERATIONS = [
    (method.upper(), path)
    for path, methods in create_app(Settings(store="memory://")).openapi()["paths"].items()
    for method in methods
]
#: The experiment each operation is aimed at when its name is not generated: arm changes and rollbacks go to
#: one of their own, so the experiments that decide stay small.
TARGETS = {"/v1/experiments/{name}/arms": "scratch", "/v1/experiments/{name}/rollback": "scratch"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A served process (SQLite) with both tokens, experiments 'hero' and 'scratch' (a snapshot each), and the
    OpenAPI document as schemathesis reads it from the server."""
    folder = tmp_path_factory.mktemp("conformance")
    settings = Settings(
        store=f"sqlite:///{folder / 'conformance.db'}",
        port=0,
        admin_token=ADMIN,
        client_tokens=CLIENT,
        tune_interpreter=False,
        sweep_interval_s=0.05,
        spool_dir=folder / "spool",
    )
    with ServiceProcess(settings) as process:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        for name in ("hero", "scratch"):
            spec = {"name": name, "arms": ["a", "b", "c"], "default_reward": 0.0, "attribution_window_s": 0.5}
            httpx.post(f"{process.base_url}/v1/experiments", json=spec, headers=admin).raise_for_status()
            httpx.post(f"{process.base_url}/v1/experiments/{name}/snapshots", headers=admin).raise_for_status()
        schema = schemathesis.openapi.from_url(f"{process.base_url}/openapi.json")
        with requests.Session() as session:
            yield process.base_url, schema, session


def cases(operation, path: str, mode: GenerationMode) -> st.SearchStrategy:
    """Cases of ``operation`` in ``mode``: half aimed at a served experiment, half with a generated name."""
    generated = operation.as_strategy(mode)
    if "{name}" not in path:
        return generated
    return st.one_of(operation.as_strategy(mode, path_parameters={"name": TARGETS.get(path, "hero")}), generated)


def has_input(operation) -> bool:
    """Whether anything of the operation's request can be made invalid (a body or parameters)."""
    definition = operation.definition.raw
    return "requestBody" in definition or bool(definition.get("parameters"))


@pytest.mark.parametrize("token", [ADMIN, CLIENT], ids=["admin", "client"])
@pytest.mark.parametrize("method, path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_answers_conform_to_the_openapi_document(served, method, path, token):
    base_url, schema, session = served
    operation = schema[path][method]
    modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if has_input(operation) else [])
    for mode in modes:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases(operation, path, mode))
        def conforms(case) -> None:
            response = case.call(base_url=base_url, session=session, headers={"Authorization": f"Bearer {token}"})
            case.validate_response(response, checks=CHECKS)

        conforms()

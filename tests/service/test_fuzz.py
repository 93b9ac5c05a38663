"""Property-based fuzzing from the OpenAPI schema: whatever the body, the service never answers 5xx."""

from __future__ import annotations

import uuid

import httpx
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from banditkit.service import Settings, create_app
from banditkit.service.runner import running

pytestmark = pytest.mark.slow


def operations() -> list[tuple[str, str, dict | None]]:
    """(method, path, JSON schema of the body or None) for every operation of the API."""
    schema = create_app(Settings(store="memory://")).openapi()
    found = []
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            found.append((method.upper(), path, None if body is None else {**body, "components": schema["components"]}))
    return found


def from_schema(schema: dict, root: dict | None = None) -> st.SearchStrategy:
    """Values valid for the JSON-schema subset FastAPI emits for our models (arrays kept short)."""
    root = root or schema
    if "$ref" in schema:
        target = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return from_schema(target, root)
    if "anyOf" in schema:
        return st.one_of([from_schema(option, root) for option in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        if not properties:  # a free-form object (guardrails, policy params): keys that matter and others
            keys = st.sampled_from(
                [
                    "default_arm",
                    "max_exploration",
                    "min_reward_rate",
                    "slo_window",
                    "ruin_threshold",
                    "prior_alpha",
                    "epsilon",
                    "other",
                ]
            )
            return st.dictionaries(keys, JSON, max_size=3)
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {key: from_schema(value, root) for key, value in properties.items() if key in required},
            optional={key: from_schema(value, root) for key, value in properties.items() if key not in required},
        )
    if kind == "array":
        low = schema.get("minItems", 0)
        return st.lists(
            from_schema(schema["items"], root), min_size=low, max_size=max(low, min(schema.get("maxItems", 5), 5))
        )
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        return st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 12), 12))
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum")
        if kind == "integer":
            return st.integers(None if low is None else int(low), None if high is None else int(high))
        return st.floats(low, high, allow_nan=False, allow_infinity=False, exclude_min="exclusiveMinimum" in schema)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    raise NotImplementedError(f"schema {schema}")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
OPERATIONS = operations()
NAMES = st.sampled_from(["hero", "missing", "a.b", "%20", "x" * 70])


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def client(request, tmp_path_factory):
    """A server on a SQLite file, then on the real Redis under a key prefix of its own (deleted after)."""
    folder = tmp_path_factory.mktemp("fuzz")
    prefix = f"t{uuid.uuid4().hex[:12]}"
    store = (
        f"sqlite:///{folder / 'fuzz.db'}" if request.param == "sqlite" else f"redis://127.0.0.1:6379/0?prefix={prefix}"
    )
    yield from _serve(
        Settings(store=store, port=0, sweep_interval_s=0.05, tune_interpreter=False, spool_dir=folder / "spool")
    )
    if request.param == "redis":
        with redis.Redis(host="127.0.0.1", port=6379) as shared:
            for key in shared.scan_iter(match=f"{prefix}:*", count=1000):
                shared.delete(key)


def _serve(settings: Settings):
    with running(settings) as base_url, httpx.Client(base_url=base_url, timeout=30.0) as http:
        http.post(
            "/v1/experiments",
            json={"name": "hero", "arms": ["a", "b", "c"], "default_reward": 0.0, "attribution_window_s": 0.5},
        ).raise_for_status()
        decision = http.post("/v1/experiments/hero/decisions", json={}).json()
        http.post("/v1/experiments/hero/snapshots").raise_for_status()
        yield http, decision["decision_id"]


def _send(http, method: str, path: str, name: str, body) -> httpx.Response:
    url = path.replace("{name}", name)
    if method == "GET":
        return http.get(url, params={"format": "csv"} if url.endswith("/log") else None)
    return http.request(method, url, json=body)


@pytest.mark.parametrize(
    "method, path, schema",
    [op for op in OPERATIONS if op[2] is not None],
    ids=[f"{m} {p}" for m, p, s in OPERATIONS if s is not None],
)
def test_schema_valid_bodies_never_give_5xx(client, method, path, schema):
    http, known_decision = client

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=from_schema(schema), name=NAMES, swap=st.booleans())
    def check(body, name, swap):
        if swap and isinstance(body, dict) and "decision_id" in body:
            body = {**body, "decision_id": known_decision}
        response = _send(http, method, path, name, body)
        assert response.status_code < 500, (method, path, body, response.text)

    check()


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(operation=st.sampled_from(OPERATIONS), name=NAMES, body=JSON)
def test_arbitrary_json_never_gives_5xx(client, operation, name, body):
    http, _ = client
    method, path, _ = operation
    response = _send(http, method, path, name, body)
    assert response.status_code < 500, (method, path, body, response.text)

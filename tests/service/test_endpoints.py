"""One declaration per endpoint: the fast front and the generated FastAPI route give the same answers and docs."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from banditkit.service import Settings, create_app
from banditkit.service.app import ServiceApp
from banditkit.service.deps import ADMIN, CLIENT
from banditkit.service.endpoints import Endpoint, EndpointRouter, to_json
from banditkit.service.errors import ConflictError, install_error_handlers
from banditkit.service.hot import HotPaths
from banditkit.service.routes import ROUTERS
from banditkit.service.schemas import Body

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


class Echo(Body):
    text: str


class EchoOut(BaseModel):
    name: str
    text: str


def echo_app() -> ServiceApp:
    """A service app with one endpoint declared on an EndpointRouter, served like the service's own."""
    router = EndpointRouter(tags=["echo"])

    @router.endpoint("POST", "/v1/echo/{name}/say", body=Echo, response=EchoOut, auth=ADMIN)
    async def say(engine, request: Echo, name: str) -> bytes:
        """Echo the text; 'conflict' is refused."""
        if request.text == "conflict":
            raise ConflictError(f"{name} says no")
        return to_json(EchoOut(name=name, text=engine + request.text))

    app = ServiceApp()
    app.state.settings = Settings(store="memory://", admin_token="root", client_tokens="user", max_body_bytes=64)
    app.state.engine = "engine:"
    install_error_handlers(app)
    app.include_router(router)
    app.hot_paths = HotPaths(app, router.endpoints)
    return app


ROOT, USER, JSON = (
    ("authorization", "Bearer root"),
    ("authorization", "Bearer user"),
    ("content-type", "application/json"),
)
CALLS = [
    # (headers, body, status, body fragment)
    ([ROOT, JSON], b'{"text": "hi"}', 200, b'"text":"engine:hi"'),
    ([JSON], b'{"text": "hi"}', 401, b"missing bearer token"),
    ([USER, JSON], b'{"text": "hi"}', 403, b"admin token"),
    ([ROOT, JSON], b'{"text": 1}', 422, b'"text"'),
    ([ROOT, JSON], b'{"text": "conflict"}', 409, b"ann says no"),
    ([ROOT, JSON], b'{"text": "' + b"x" * 100 + b'"}', 413, b"Content Too Large"),
    ([ROOT, JSON], b'{"text": ', 400, b"not valid JSON"),
    ([ROOT, ("content-type", "text/plain")], b'{"text": "hi"}', 415, b"application/json"),
    ([ROOT, ROOT, JSON], b'{"text": "hi"}', 400, b"more than one Authorization header"),
    # the token before the body
    ([USER, JSON], b'{"text": ', 403, b"admin token"),
    ([("content-type", "text/plain")], b"x" * 100, 401, b"missing bearer token"),
]


@pytest.mark.parametrize("headers, body, status, fragment", CALLS, ids=[str(c[2]) for c in CALLS])
def test_one_declaration_gives_the_same_answer_on_both_paths(headers, body, status, fragment):
    """Without a root_path the fast front answers; under one, the generated FastAPI route does: the same
    status, the same bytes."""
    from fastapi.testclient import TestClient

    app = echo_app()
    answers = []
    for root_path in ("", "/api"):
        with TestClient(app, root_path=root_path) as client:
            response = client.post("/v1/echo/ann/say", content=body, headers=headers)
        assert response.status_code == status, response.text
        assert fragment in response.content
        assert response.headers["content-type"] == "application/json"
        answers.append(response.content)
    assert answers[0] == answers[1]


def test_the_fast_front_answers_only_declared_paths_and_methods():
    app = echo_app()
    answered = []

    async def send(message):
        answered.append(message)

    async def receive():
        return {"type": "http.request", "body": b'{"text": "x"}', "more_body": False}

    def handled(method: str, path: str) -> bool:
        scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
        return asyncio.run(app.hot_paths.handle(scope, receive, send))

    assert handled("POST", "/v1/echo/ann/say")
    for method, path in [
        ("GET", "/v1/echo/ann/say"),
        ("POST", "/v1/echo//say"),
        ("POST", "/v1/echo/ann/say/"),
        ("POST", "/v1/echo/ann"),
        ("POST", "/v2/echo/ann/say"),
    ]:
        assert not handled(method, path), (method, path)


@pytest.mark.parametrize("path", ["/v1/{name}x", "/v1/{name:path}", "/v1/{}"])
def test_a_path_parameter_must_be_a_whole_segment(path):
    async def handler(engine) -> bytes:
        return b"{}"

    with pytest.raises(ValueError, match="whole segment"):
        Endpoint("GET", path, handler, response=dict)


def test_every_declared_endpoint_is_documented_as_declared():
    schema = create_app(Settings(store="memory://")).openapi()
    endpoints = [endpoint for router in ROUTERS if isinstance(router, EndpointRouter) for endpoint in router.endpoints]
    declared = {(e.method, e.path) for e in endpoints}
    documented = {(method.upper(), path) for path, methods in schema["paths"].items() for method in methods}
    # FastAPI routes: the log is streamed, not JSON; the model answers with an ETag, and 304 without a body;
    # the metrics are text.
    assert documented - declared == {
        ("GET", "/v1/experiments/{name}/log"),
        ("GET", "/v1/experiments/{name}/model"),
        ("GET", "/metrics"),
    }
    for endpoint in endpoints:
        operation = schema["paths"][endpoint.path][endpoint.method.lower()]
        assert ("security" in operation) == (endpoint.auth is not None), endpoint.path
        assert endpoint.auth in (None, CLIENT, ADMIN)
        if endpoint.body is not None:
            reference = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert reference.rsplit("/", 1)[1] in schema["components"]["schemas"]
        query = [] if endpoint.query is None else list(endpoint.query.model_fields)
        assert [p["name"] for p in operation.get("parameters", [])] == endpoint.parameters + query
        assert sorted(map(int, operation["responses"])) == sorted([endpoint.status, *endpoint.error_statuses])


def test_no_two_declared_endpoints_answer_the_same_request():
    """The fast front takes the first template of a method and length that matches: two templates collide when
    each segment is equal in both or a parameter in one (``…/candidates/promote`` beside ``…/decisions/batch``)."""
    endpoints = [endpoint for router in ROUTERS if isinstance(router, EndpointRouter) for endpoint in router.endpoints]
    assert {
        ("POST", "/v1/experiments/{name}/candidates"),
        ("GET", "/v1/experiments/{name}/candidates"),
        ("DELETE", "/v1/experiments/{name}/candidates"),
        ("POST", "/v1/experiments/{name}/candidates/promote"),
    } <= {(e.method, e.path) for e in endpoints}
    for index, first in enumerate(endpoints):
        for second in endpoints[index + 1 :]:
            one, other = first.path.split("/"), second.path.split("/")
            if first.method != second.method or len(one) != len(other):
                continue
            assert any(
                a != b and not a.startswith("{") and not b.startswith("{") for a, b in zip(one, other, strict=True)
            ), (first.method, first.path, second.path)


def test_where_two_templates_match_the_first_declared_answers():
    """Templates are looked up by their fixed segments; a path two of them match (a parameter in one where the
    other has a fixed segment, and the other way round) goes to the first declared, whatever their shapes, and a
    fixed path declared after a template that matches it is that template's. The answer's metrics key comes back."""
    router = EndpointRouter()
    for path in ["/v1/{kind}/say", "/v1/echo/{name}", "/v1/echo/say", "/v1/alone"]:

        async def handler(engine, path: str = path, **parameters: str) -> bytes:
            return to_json(EchoOut(name=path, text=",".join(parameters.values())))

        handler.__name__ = "h" + str(len(router.endpoints))
        router.endpoint("GET", path, response=EchoOut)(handler)
    app = ServiceApp()
    app.state.settings = Settings(store="memory://")
    app.state.engine = None
    app.hot_paths = HotPaths(app, router.endpoints)

    def answer(path: str) -> tuple[object, bytes]:
        sent = []

        async def send(message):
            sent.append(message)

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}
        key = asyncio.run(app.hot_paths.handle(scope, receive, send))
        return key, sent[-1]["body"] if sent else b""

    assert answer("/v1/echo/say") == (("/v1/{kind}/say", "GET", 200), b'{"name":"/v1/{kind}/say","text":"echo"}')
    assert answer("/v1/echo/ann") == (("/v1/echo/{name}", "GET", 200), b'{"name":"/v1/echo/{name}","text":"ann"}')
    assert answer("/v1/alone") == (("/v1/alone", "GET", 200), b'{"name":"/v1/alone","text":""}')
    assert answer("/v1/echo/") == (None, b"")  # an empty parameter matches nothing

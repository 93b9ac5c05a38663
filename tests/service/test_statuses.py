"""Every status of every operation, provoked over real HTTP against a served process: each is in the operation's
OpenAPI entry with the documented body, every documented one is provoked here, docs/service.md's table lists
the same statuses, and the steps run in one order on every route (one Authorization header, the token, the
media type, the size, the JSON, the fields)."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from redis_servers import RedisServer

from banditkit.client import new_decision_id
from banditkit.service import Settings
from banditkit.service.errors import STATUSES
from banditkit.service.runner import ServiceProcess

ADMIN, CLIENT = "admin-secret", "client-secret"
MAX_BODY = 20_000
DOCS = Path(__file__).resolve().parents[2] / "docs" / "service.md"


class Call(NamedTuple):
    """One request: ``path`` may hold ``{rewarded}``, ``{late}`` and ``{fresh}`` (decision ids of the fixture)."""

    method: str
    template: str  # the operation's path in the OpenAPI document
    status: int
    body: Any = None  # dict: JSON; bytes: sent as they are (as application/json unless ``content_type``)
    token: str | None = CLIENT
    name: str = "hero"
    query: str = ""
    content_type: str | None = None
    fragment: str = ""
    twice: bool = False  # two Authorization headers
    if_none_match: str | None = None


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A served process with both tokens and a 20 kB body limit; experiments 'hero' (a rewarded, a fresh
    decision, a snapshot), 'brief' (window 0.05 s, a late decision), 'arms' (for arm changes) and 'retired'
    (archived, deleted and purged)."""
    folder = tmp_path_factory.mktemp("statuses")
    process = ServiceProcess(
        Settings(
            store=f"sqlite:///{folder / 'statuses.db'}",
            port=0,
            admin_token=ADMIN,
            client_tokens=CLIENT,
            max_body_bytes=MAX_BODY,
            tune_interpreter=False,
            spool_dir=folder / "spool",
        )
    ).start()
    try:
        with httpx.Client(base_url=process.base_url, timeout=30.0) as http:
            admin, user = {"Authorization": f"Bearer {ADMIN}"}, {"Authorization": f"Bearer {CLIENT}"}
            for spec in (
                {"name": "hero", "arms": ["a", "b"]},
                {"name": "brief", "arms": ["a", "b"], "attribution_window_s": 0.05},
                {"name": "arms", "arms": ["a", "b"]},
                {"name": "retired", "arms": ["a", "b"]},
            ):
                http.post("/v1/experiments", headers=admin, json=spec).raise_for_status()
            ids = {
                key: http.post(f"/v1/experiments/{name}/decisions", headers=user, json={}).json()["decision_id"]
                for key, name in (("rewarded", "hero"), ("fresh", "hero"), ("late", "brief"))
            }
            http.post(
                "/v1/experiments/hero/rewards", headers=user, json={"decision_id": ids["rewarded"], "value": 1.0}
            ).raise_for_status()
            http.post("/v1/experiments/hero/snapshots", headers=admin).raise_for_status()
            time.sleep(0.1)  # the late decision's window closes
            yield process, http, ids, http.get("/openapi.json").json()
    finally:
        process.stop()


def send(http: httpx.Client, call: Call, ids: dict[str, str]) -> httpx.Response:
    url = call.template.replace("{name}", call.name) + (f"?{call.query}" if call.query else "")
    headers: list[tuple[str, str]] = []
    if call.token is not None:
        headers.append(("Authorization", f"Bearer {call.token}"))
        if call.twice:
            headers.append(("Authorization", f"Bearer {call.token}"))
    if isinstance(call.body, dict):
        content: bytes | None = httpx.Request("POST", "/", json=_filled(call.body, ids)).content
    else:
        content = call.body
    if call.if_none_match is not None:
        headers.append(("If-None-Match", call.if_none_match))
    if content is not None and call.content_type != "":  # "": no Content-Type at all
        headers.append(("Content-Type", call.content_type or "application/json"))
    return http.request(call.method, url, content=content, headers=headers)


def _filled(body: dict, ids: dict[str, str]) -> dict:
    return {key: value.format(**ids) if isinstance(value, str) else value for key, value in body.items()}


def operations(schema: dict) -> list[tuple[str, str, dict]]:
    return [(method.upper(), path, op) for path, methods in schema["paths"].items() for method, op in methods.items()]


# The operations, as the app declares them (read once here so the table below can be built per operation).
def _declared() -> list[tuple[str, str, dict]]:
    from banditkit.service import create_app

    return operations(create_app(Settings(store="memory://")).openapi())


OPERATIONS = _declared()
BODY_OPERATIONS = [(method, path) for method, path, op in OPERATIONS if "requestBody" in op]
ADMIN_OPERATIONS = [(method, path) for method, path, op in OPERATIONS if "403" in op["responses"]]
HUGE = {"unit": "x" * (MAX_BODY + 1)}


def _made(arm: str = "a", **fields) -> dict:
    """A client-made decision of 'hero' (arms a, b), made now."""
    now = time.time()
    row = {"decision_id": new_decision_id(now), "time": now, "arm": arm, "propensity": 0.5}
    return {**row, "probabilities": {"a": 0.5, "b": 0.5}, "policy_version": 0, **fields}


LOGGED = _made()
#: A body each operation with one accepts (so that what is refused is what a call changes).
VALID: dict[tuple[str, str], dict] = {
    ("POST", "/v1/experiments"): {"name": "other", "arms": ["a"]},
    ("PATCH", "/v1/experiments/{name}/arms"): {},
    ("PATCH", "/v1/experiments/{name}"): {"default_reward": 0.0},
    ("POST", "/v1/experiments/{name}/decisions"): {},
    ("POST", "/v1/experiments/{name}/decisions/batch"): {"requests": [{}]},
    ("POST", "/v1/experiments/{name}/decisions/log"): {"decisions": [_made()]},
    ("POST", "/v1/experiments/{name}/rewards"): {"decision_id": "d", "value": 1.0},
    ("POST", "/v1/experiments/{name}/rewards/batch"): {"rewards": [{"decision_id": "d", "value": 1.0}]},
    ("POST", "/v1/experiments/{name}/rollback"): {"snapshot_id": 1},
    ("POST", "/v1/experiments/{name}/alerts"): {"kind": "store_latency", "state": "resolved"},
    ("POST", "/v1/experiments/{name}/candidates"): {"policy": {"name": "ucb1"}, "share": 0.2},
}
CANDIDATE = {"policy": {"name": "ucb1"}, "share": 0.2}

CALLS: list[Call] = [
    # Every operation: two Authorization headers (400), none (401, where a token is needed), an unknown
    # experiment (404); a client token on an admin operation (403).
    *(
        Call(m, p, 400, token=CLIENT, twice=True, fragment="more than one Authorization header")
        for m, p, _ in OPERATIONS
    ),
    *(Call(m, p, 401, token=None, fragment="missing bearer token") for m, p, op in OPERATIONS if "security" in op),
    *(Call(m, p, 401, token="guess", fragment="invalid bearer token") for m, p, op in OPERATIONS if "security" in op),
    *(Call(m, p, 403, body=VALID.get((m, p)), fragment="admin token") for m, p in ADMIN_OPERATIONS),
    *(
        Call(m, p, 404, token=ADMIN, body=VALID.get((m, p)), name="nope", fragment="experiment 'nope' not found")
        for m, p, op in OPERATIONS
        if "404" in op["responses"]
    ),
    # Every operation with a body, each cause once (a valid token: the token comes first, see below).
    *(
        Call(m, p, 415, token=ADMIN, body=VALID[m, p], content_type="text/plain", fragment="application/json")
        for m, p in BODY_OPERATIONS
    ),
    *(
        Call(m, p, 415, token=ADMIN, body=b"{}", content_type="application/x-www-form-urlencoded")
        for m, p in BODY_OPERATIONS
    ),
    *(Call(m, p, 415, token=ADMIN, body=b"{}", content_type="", fragment="got none") for m, p in BODY_OPERATIONS),
    *(Call(m, p, 413, token=ADMIN, body=HUGE, fragment="max_body_bytes") for m, p in BODY_OPERATIONS),
    *(Call(m, p, 400, token=ADMIN, body=b'{"unit": ', fragment="not valid JSON") for m, p in BODY_OPERATIONS),
    *(Call(m, p, 400, token=ADMIN, body=b"\xff\xfe{}", fragment="not valid JSON") for m, p in BODY_OPERATIONS),
    *(Call(m, p, 422, token=ADMIN, body={"zzz": 1}, fragment="zzz") for m, p in BODY_OPERATIONS),
    # The token is judged before the body, whatever is wrong with it.
    *(Call(m, p, 401, token=None, body=b'{"unit": ', fragment="missing bearer token") for m, p in BODY_OPERATIONS),
    *(Call(m, p, 401, token=None, body=HUGE, content_type="text/plain") for m, p in BODY_OPERATIONS),
    *(
        Call(m, p, 403, body=b'{"unit": ', fragment="admin token")
        for m, p in ADMIN_OPERATIONS
        if (m, p) in BODY_OPERATIONS
    ),
    *(
        Call(m, p, 403, body=b"{}", content_type="text/plain", fragment="admin token")
        for m, p in ADMIN_OPERATIONS
        if (m, p) in BODY_OPERATIONS
    ),
    # What each operation answers on its own.
    Call("POST", "/v1/experiments", 201, body={"name": "made", "arms": ["a"]}, token=ADMIN),
    Call("POST", "/v1/experiments", 409, body={"name": "hero", "arms": ["a"]}, token=ADMIN, fragment="already exists"),
    Call("POST", "/v1/experiments", 422, body={"name": "x", "arms": ["a"], "policy": {"name": "magic"}}, token=ADMIN),
    Call("GET", "/v1/experiments", 200),
    Call("GET", "/v1/experiments", 422, query="limit=0", fragment='"query","limit"'),
    Call("GET", "/v1/experiments", 422, query="limit=1&limit=2", fragment="more than once"),
    Call("GET", "/v1/experiments", 422, query="page=2", fragment='"query","page"'),
    Call("GET", "/v1/experiments", 401, token=None, query="limit=0", fragment="missing bearer token"),
    Call("GET", "/v1/experiments/{name}/log", 401, token=None, query="format=xml", fragment="missing bearer token"),
    Call("GET", "/v1/experiments/{name}", 200),
    Call("PATCH", "/v1/experiments/{name}/arms", 200, body={"add": ["c"]}, token=ADMIN, name="arms"),
    Call("PATCH", "/v1/experiments/{name}", 200, body={"default_reward": 0.0}, token=ADMIN, name="arms"),
    Call("PATCH", "/v1/experiments/{name}", 422, body={"policy_params": {"zzz": 1}}, token=ADMIN, fragment="zzz"),
    Call("PATCH", "/v1/experiments/{name}/arms", 422, body={"disable": ["zzz"]}, token=ADMIN, fragment="zzz"),
    Call("GET", "/v1/experiments/{name}/stats", 200),
    Call("GET", "/v1/experiments/{name}/model", 200, fragment='"model":{"format":"banditkit.bandit/2"'),
    Call("GET", "/v1/experiments/{name}/model", 304, if_none_match='W/"hero:0", *'),
    Call("GET", "/v1/experiments/{name}/model", 422, query="format=csv", fragment='"query","format"'),
    Call("GET", "/v1/experiments/{name}/log", 422, query="format=csv&zzz=1", fragment='"query","zzz"'),
    Call("POST", "/v1/experiments/{name}/decisions", 200, body={"unit": "u1"}),
    Call("POST", "/v1/experiments/{name}/decisions", 422, body={"allowed": ["zzz"]}, fragment="allowed arm"),
    Call("POST", "/v1/experiments/{name}/decisions/batch", 200, body={"requests": [{}, {}]}),
    Call("POST", "/v1/experiments/{name}/decisions", 200, body={"unit": "u1", "request_id": "q1"}),
    Call(
        "POST",
        "/v1/experiments/{name}/decisions",
        409,
        body={"unit": "u2", "request_id": "q1"},
        fragment="request_id 'q1' was used with another unit",
    ),
    Call(
        "POST",
        "/v1/experiments/{name}/decisions/batch",
        409,
        body={"requests": [{"unit": "u1", "request_id": "q2"}, {"unit": "u3", "request_id": "q2"}]},
        fragment="requests.1.request_id 'q2'",
    ),
    Call("POST", "/v1/experiments/{name}/decisions/log", 200, body={"decisions": [LOGGED]}, fragment='"logged":1'),
    Call("POST", "/v1/experiments/{name}/decisions/log", 200, body={"decisions": [LOGGED]}, fragment='"duplicates":1'),
    Call(
        "POST",
        "/v1/experiments/{name}/decisions/log",
        409,
        body={"decisions": [{**LOGGED, "arm": "b"}]},
        fragment="decisions.0.decision_id",
    ),
    Call(
        "POST",
        "/v1/experiments/{name}/decisions/log",
        422,
        body={"decisions": [_made(policy_version=99)]},
        fragment='"body","decisions.0.policy_version"',
    ),
    Call("POST", "/v1/experiments/{name}/rewards", 200, body={"decision_id": "{fresh}", "value": 1.0}),
    Call("POST", "/v1/experiments/{name}/rewards", 404, body={"decision_id": "nope", "value": 1.0}, fragment="nope"),
    Call("POST", "/v1/experiments/{name}/rewards", 409, body={"decision_id": "{rewarded}", "value": 0.0}),
    Call("POST", "/v1/experiments/{name}/rewards", 410, body={"decision_id": "{late}", "value": 1.0}, name="brief"),
    Call("POST", "/v1/experiments/{name}/rewards", 422, body={"decision_id": "{rewarded}", "value": 2.0}),
    Call("POST", "/v1/experiments/{name}/rewards", 422, body=b'{"decision_id": "d", "value": NaN}', fragment="finite"),
    Call("POST", "/v1/experiments/{name}/rewards/batch", 200, body={"rewards": [{"decision_id": "x", "value": 1.0}]}),
    Call("GET", "/v1/experiments/{name}/log", 200, query="format=csv"),
    Call("GET", "/v1/experiments/{name}/log", 422, query="format=xml", fragment='"query","format"'),
    Call("POST", "/v1/experiments/{name}/snapshots", 201, token=ADMIN),
    Call("GET", "/v1/experiments/{name}/snapshots", 200),
    Call("POST", "/v1/experiments/{name}/rollback", 200, body={"snapshot_id": 1}, token=ADMIN),
    Call("POST", "/v1/experiments/{name}/rollback", 404, body={"snapshot_id": 99}, token=ADMIN, fragment="snapshot 99"),
    Call("GET", "/v1/experiments/{name}/events", 200),
    Call("POST", "/v1/experiments/{name}/alerts", 200, body={"kind": "learner_lag", "detail": "x"}, token=ADMIN),
    Call("POST", "/v1/experiments/{name}/alerts", 404, body={"kind": "learner_lag"}, token=ADMIN, name="nope"),
    Call(
        "POST",
        "/v1/experiments/{name}/alerts",
        422,
        body={"kind": "slo_breach"},
        token=ADMIN,
        fragment='"body","arm"',
    ),
    # Policy canaries, on an experiment of their own.
    Call("POST", "/v1/experiments", 201, body={"name": "canary", "arms": ["a", "b"]}, token=ADMIN),
    Call("GET", "/v1/experiments/{name}/candidates", 404, name="canary", fragment="has no candidate"),
    Call("POST", "/v1/experiments/{name}/candidates/promote", 404, token=ADMIN, name="canary", fragment="no candidate"),
    Call("DELETE", "/v1/experiments/{name}/candidates", 404, token=ADMIN, name="canary", fragment="no candidate"),
    Call(
        "POST",
        "/v1/experiments/{name}/candidates",
        422,
        body={**CANDIDATE, "share": 1.5},
        token=ADMIN,
        name="canary",
        fragment='"body","share"',
    ),
    Call("POST", "/v1/experiments/{name}/candidates", 201, body=CANDIDATE, token=ADMIN, name="canary"),
    Call(
        "POST", "/v1/experiments/{name}/candidates", 409, body=CANDIDATE, token=ADMIN, name="canary", fragment="already"
    ),
    Call("GET", "/v1/experiments/{name}/candidates", 200, name="canary", fragment='"verdict":"waiting"'),
    Call("POST", "/v1/experiments/{name}/candidates/promote", 200, token=ADMIN, name="canary", fragment="ucb1"),
    Call("POST", "/v1/experiments/{name}/candidates", 201, body=CANDIDATE, token=ADMIN, name="canary"),
    Call("DELETE", "/v1/experiments/{name}/candidates", 200, token=ADMIN, name="canary"),
    # The life of 'retired', in order: archived (no decisions), back, deleted (log kept), purged, made again.
    Call("POST", "/v1/experiments/{name}/archive", 200, token=ADMIN, name="retired", fragment='"status":"archived"'),
    Call("POST", "/v1/experiments/{name}/decisions", 409, body={}, name="retired", fragment="is archived"),
    Call("GET", "/v1/experiments", 200, query="status=archived", fragment='"name":"retired"'),
    Call("GET", "/v1/experiments", 422, query="status=gone", fragment='"query","status"'),
    Call("POST", "/v1/experiments/{name}/unarchive", 200, token=ADMIN, name="retired", fragment='"status":"active"'),
    Call("DELETE", "/v1/experiments/{name}/log", 409, token=ADMIN, name="retired", fragment="is not deleted"),
    Call("DELETE", "/v1/experiments/{name}", 200, token=ADMIN, name="retired", fragment='"status":"deleted"'),
    Call("GET", "/v1/experiments/{name}/log", 200, name="retired"),
    Call("GET", "/v1/experiments/{name}/events", 200, name="retired", fragment='"kind":"delete"'),
    Call("POST", "/v1/experiments", 409, body={"name": "retired", "arms": ["a"]}, token=ADMIN, fragment="purged"),
    Call("DELETE", "/v1/experiments/{name}/log", 200, token=ADMIN, name="retired", fragment='"experiment":"retired"'),
    Call("POST", "/v1/experiments", 201, body={"name": "retired", "arms": ["a"]}, token=ADMIN),
    Call("GET", "/v1/health", 200, token=None),
    Call("GET", "/metrics", 200),
]
#: With the store down (Redis killed under the server), each operation on a served experiment ('hero') and on an
#: unknown one ('nope'): 503 with Retry-After, but for what the server answers from memory (decisions fall back
#: to the default arm, a served experiment's description, the list, health).
OUTAGE: dict[tuple[str, str], tuple[int, int]] = {
    (m, p): (503, 503) if "503" in op["responses"] else (200, 200) for m, p, op in OPERATIONS
} | {
    ("GET", "/v1/experiments/{name}"): (200, 503),
    ("GET", "/v1/experiments/{name}/model"): (200, 503),
    ("POST", "/v1/experiments/{name}/decisions"): (200, 503),
    ("POST", "/v1/experiments/{name}/decisions/batch"): (200, 503),
    # 'hero' has no candidate, which the server knows without the store.
    ("GET", "/v1/experiments/{name}/candidates"): (404, 503),
    ("DELETE", "/v1/experiments/{name}/candidates"): (404, 503),
    ("POST", "/v1/experiments/{name}/candidates/promote"): (404, 503),
    ("GET", "/v1/experiments"): (200, 200),  # from memory; only ?status=deleted reads the store
}
#: Documented answers no call provokes: a model change overtaken at every attempt (409; it takes a writer
#: racing the change several times in a row).
NOT_PROVOKED = {
    ("PATCH", "/v1/experiments/{name}/arms", 409),
    ("PATCH", "/v1/experiments/{name}", 409),
    ("POST", "/v1/experiments/{name}/rollback", 409),
    ("POST", "/v1/experiments/{name}/alerts", 409),
    ("DELETE", "/v1/experiments/{name}/candidates", 409),
    ("POST", "/v1/experiments/{name}/candidates/promote", 409),
    ("POST", "/v1/experiments/{name}/archive", 409),
    ("POST", "/v1/experiments/{name}/unarchive", 409),
    ("DELETE", "/v1/experiments/{name}", 409),
    # The store down under ?status=deleted (the outage test lists without a query).
    ("GET", "/v1/experiments", 503),
}


def _id(call: Call) -> str:
    return f"{call.method} {call.template} {call.status} {call.content_type or ''}{'twice' if call.twice else ''}"


@pytest.mark.parametrize("call", CALLS, ids=[_id(call) for call in CALLS])
def test_each_answer_is_the_documented_one(service, call):
    _, http, ids, schema = service
    response = send(http, call, ids)
    assert response.status_code == call.status, response.text
    assert call.fragment in response.text
    documented = schema["paths"][call.template][call.method.lower()]["responses"]
    assert str(call.status) in documented, f"{call.method} {call.template} answers {call.status}, undocumented"
    if call.status >= 400:  # one body shape per status, always JSON
        assert response.headers["content-type"] == "application/json"
        detail = response.json()["detail"]
        if call.status == 422:
            assert detail and all({"loc", "msg", "type"} <= set(item) for item in detail), detail
            assert detail[0]["loc"][0] in ("body", "query")
        else:
            assert isinstance(detail, str) and detail
        reference = documented[str(call.status)]["content"]["application/json"]["schema"]["$ref"]
        assert reference.endswith("/ValidationErrorOut" if call.status == 422 else "/ErrorOut")
    if call.status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_every_documented_answer_is_provoked():
    provoked = {(call.method, call.template, call.status) for call in CALLS}
    provoked |= {(m, p, status) for (m, p), statuses in OUTAGE.items() for status in statuses}
    documented = {
        (method, path, int(status))
        for method, path, op in OPERATIONS
        for status in op["responses"]
        if status != "default"
    }
    assert documented - provoked == NOT_PROVOKED
    assert provoked <= documented


def test_the_docs_table_lists_every_status_of_the_openapi_document():
    text = DOCS.read_text()
    table = text[text.index("### Status codes") :]
    table = table[: table.index("\n\n", table.index("| status |"))]
    in_docs = {int(status) for status in re.findall(r"^\| (\d{3}) \|", table, flags=re.MULTILINE)}
    in_openapi = {int(status) for _, _, op in OPERATIONS for status in op["responses"] if int(status) >= 400}
    assert in_docs == in_openapi == set(STATUSES)
    for _, _, op in OPERATIONS:  # each operation describes its statuses in the table's words
        for status, response in op["responses"].items():
            if int(status) >= 400:
                assert response["description"] == STATUSES[int(status)]


def _raw(process: ServiceProcess, head: bytes) -> tuple[int, bytes]:
    """A GET sent byte for byte (an HTTP client would tidy the header), and its status and body."""
    host, port = process.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(
            b"GET /v1/experiments/hero HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + head + b"\r\n\r\n"
        )
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


SECRET = CLIENT.encode()
AUTHORIZATION = [
    # (the header as sent, status): the scheme in any case; one space, nothing else inside
    (b"Authorization: Bearer " + SECRET, 200),
    (b"Authorization: bearer " + SECRET, 200),
    (b"Authorization: BEARER " + SECRET, 200),
    (b"Authorization: BeArEr " + SECRET, 200),
    (b"Authorization: Bearer  " + SECRET, 401),
    (b"Authorization: Bearer\t" + SECRET, 401),
    (b"Authorization: Bearer " + SECRET + b" x", 401),
    (b"Authorization: Bearer" + SECRET, 401),
    (b"Authorization: Basic " + SECRET, 401),
    (b"Authorization: " + SECRET, 401),
    # whitespace around the value is not part of it (RFC 9110, 5.5): the server drops it
    (b"Authorization: Bearer " + SECRET + b" ", 200),
    (b"Authorization:  Bearer " + SECRET + b"\t", 200),
    # two headers, whichever is right
    (b"Authorization: Bearer " + SECRET + b"\r\nAuthorization: Bearer " + SECRET, 400),
    (b"Authorization: Bearer " + SECRET + b"\r\nauthorization: Bearer guess", 400),
    (b"Authorization: Bearer guess\r\nAuthorization: Bearer " + SECRET, 400),
]


@pytest.mark.parametrize("head, status", AUTHORIZATION, ids=[repr(head) for head, _ in AUTHORIZATION])
def test_the_bearer_scheme_is_case_insensitive_and_whitespace_is_not(service, head, status):
    process = service[0]
    answered, body = _raw(process, head)
    assert answered == status, body
    if status == 401 and b"Bearer" in head and SECRET in head:
        assert b"malformed Authorization header" in body


def test_with_the_store_down_every_answer_is_documented(tmp_path, processes):
    redis_server = processes(RedisServer(tmp_path / "redis", aof=False)).start()
    settings = Settings(
        store=f"{redis_server.url}?prefix=statuses",
        port=0,
        admin_token=ADMIN,
        client_tokens=CLIENT,
        tune_interpreter=False,
        spool_dir=tmp_path / "spool",
    )
    with ServiceProcess(settings) as process, httpx.Client(base_url=process.base_url, timeout=30.0) as http:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        http.post("/v1/experiments", headers=admin, json={"name": "hero", "arms": ["a", "b"]}).raise_for_status()
        decision = http.post("/v1/experiments/hero/decisions", headers=admin, json={}).json()["decision_id"]
        http.post("/v1/experiments/hero/snapshots", headers=admin).raise_for_status()
        redis_server.kill()
        schema = http.get("/openapi.json").json()
        reward = {"decision_id": decision, "value": 1.0}  # a decision logged before the outage
        bodies = {
            **VALID,
            ("POST", "/v1/experiments/{name}/rewards"): reward,
            ("POST", "/v1/experiments/{name}/rewards/batch"): {"rewards": [reward]},
        }
        for (method, template), (served, unknown) in OUTAGE.items():
            for name, status in (("hero", served), ("nope", unknown)):
                call = Call(method, template, status, body=bodies.get((method, template)), token=ADMIN, name=name)
                response = send(http, call, {})
                assert response.status_code == status, (method, template, name, response.text)
                assert str(status) in schema["paths"][template][method.lower()]["responses"]
                if status == 503:
                    assert (
                        response.headers["retry-after"] == "1" and "store is unavailable" in response.json()["detail"]
                    )
        health = http.get("/v1/health").json()
        assert health["status"] == "degraded" and health["store"] == "unavailable"
        assert health["cause"].startswith("Redis: does not answer"), health

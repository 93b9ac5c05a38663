"""Bad inputs in one table: each with its status code and the message that names what is wrong."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
import redis

from banditkit.service import Settings
from banditkit.service.runner import running

ADMIN, CLIENT = "admin-secret", "client-secret"


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def secured(request, tmp_path_factory):
    """A server with tokens, experiments 'hero' and 'brief' (window 0.05 s), a rewarded and a late decision;
    on a SQLite file, then on the real Redis under a key prefix of its own (the same answers)."""
    folder = tmp_path_factory.mktemp("bad")
    prefix = f"t{uuid.uuid4().hex[:12]}"
    store = (
        f"sqlite:///{folder / 'bad.db'}" if request.param == "sqlite" else f"redis://127.0.0.1:6379/0?prefix={prefix}"
    )
    settings = Settings(
        store=store,
        port=0,
        admin_token=ADMIN,
        client_tokens=f"{CLIENT},other",
        max_body_bytes=50_000,
        tune_interpreter=False,
        spool_dir=folder / "spool",
    )
    yield from _serve(settings)
    if request.param == "redis":
        with redis.Redis(host="127.0.0.1", port=6379) as shared:
            for key in shared.scan_iter(match=f"{prefix}:*", count=1000):
                shared.delete(key)


def _serve(settings: Settings):
    with running(settings) as base_url, httpx.Client(base_url=base_url, timeout=30.0) as client:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        client.post("/v1/experiments", headers=admin, json={"name": "hero", "arms": ["a", "b"]}).raise_for_status()
        client.post(
            "/v1/experiments", headers=admin, json={"name": "brief", "arms": ["a", "b"], "attribution_window_s": 0.05}
        ).raise_for_status()
        user = {"Authorization": f"Bearer {CLIENT}"}
        rewarded = client.post("/v1/experiments/hero/decisions", headers=user, json={}).json()["decision_id"]
        client.post(
            "/v1/experiments/hero/rewards", headers=user, json={"decision_id": rewarded, "value": 1.0}
        ).raise_for_status()
        late = client.post("/v1/experiments/brief/decisions", headers=user, json={}).json()["decision_id"]
        time.sleep(0.1)
        yield client, {"rewarded": rewarded, "late": late}


HUGE = {"unit": "x" * 60_000}
CASES = [
    # (case, method, path, body (dict, or bytes sent raw), token, status, message fragment)
    ("NaN reward", "POST", "/rewards", b'{"decision_id": "d", "value": NaN}', CLIENT, 422, "finite number"),
    ("Infinity reward", "POST", "/rewards", b'{"decision_id": "d", "value": Infinity}', CLIENT, 422, "finite"),
    ("string for a number", "POST", "/rewards", {"decision_id": "d", "value": "1.0"}, CLIENT, 422, "valid number"),
    ("bool for a number", "POST", "/rewards", {"decision_id": "d", "value": True}, CLIENT, 422, "valid number"),
    (
        "reward out of bounds",
        "POST",
        "/rewards",
        {"decision_id": "{rewarded}", "value": 2.0},
        CLIENT,
        422,
        "value must be in [0.0, 1.0]",
    ),
    (
        "revenue on a [0, 1] policy",
        "POST",
        "/rewards",
        {"decision_id": "{rewarded}", "value": 129.99},
        CLIENT,
        422,
        "got 129.99; for rewards on another scale set reward_range=(low, high)",
    ),
    ("missing value", "POST", "/rewards", {"decision_id": "d"}, CLIENT, 422, "Field required"),
    ("unknown field", "POST", "/decisions", {"user": "u1"}, CLIENT, 422, "Extra inputs"),
    ("malformed JSON", "POST", "/decisions", b'{"unit": ', CLIENT, 400, "not valid JSON"),
    (
        "context for a non-contextual policy",
        "POST",
        "/decisions",
        {"context": [0.5, 1.0]},
        CLIENT,
        422,
        "takes no context",
    ),
    ("NaN in a context", "POST", "/decisions", b'{"context": [NaN]}', CLIENT, 422, "finite number"),
    ("unknown allowed arm", "POST", "/decisions", {"allowed": ["zzz"]}, CLIENT, 422, "allowed arm 'zzz'"),
    ("batch over 1,000", "POST", "/decisions/batch", {"requests": [{}] * 1001}, CLIENT, 422, "at most 1000"),
    ("empty batch", "POST", "/rewards/batch", {"rewards": []}, CLIENT, 422, "at least 1"),
    ("huge body", "POST", "/decisions", HUGE, CLIENT, 413, "Content Too Large"),
    (
        "unknown decision",
        "POST",
        "/rewards",
        {"decision_id": "nope", "value": 1.0},
        CLIENT,
        404,
        "decision 'nope' not found",
    ),
    (
        "duplicate reward, other value",
        "POST",
        "/rewards",
        {"decision_id": "{rewarded}", "value": 0.0},
        CLIENT,
        409,
        "already has reward 1.0",
    ),
    (
        "late reward",
        "POST",
        "/v1/experiments/brief/rewards",
        {"decision_id": "{late}", "value": 1.0},
        CLIENT,
        410,
        "after the attribution window",
    ),
    (
        "decision of another experiment",
        "POST",
        "/rewards",
        {"decision_id": "{late}", "value": 1.0},
        CLIENT,
        404,
        "not found in experiment 'hero'",
    ),
    ("unknown experiment", "POST", "/v1/experiments/nope/decisions", {}, CLIENT, 404, "experiment 'nope' not found"),
    ("unknown experiment stats", "GET", "/v1/experiments/nope/stats", None, CLIENT, 404, "not found"),
    ("unknown arm to disable", "PATCH", "/arms", {"disable": ["zzz"]}, ADMIN, 422, "disable 'zzz'"),
    ("removing the last arms", "PATCH", "/arms", {"remove": ["a", "b"]}, ADMIN, 422, "only arm"),
    (
        "bad policy name",
        "POST",
        "/v1/experiments",
        {"name": "x", "arms": ["a"], "policy": {"name": "magic"}},
        ADMIN,
        422,
        "policy name must be one of",
    ),
    (
        "bad policy parameter",
        "POST",
        "/v1/experiments",
        {"name": "x", "arms": ["a"], "policy": {"name": "thompson", "params": {"prior_alpha": 0}}},
        ADMIN,
        422,
        "prior_alpha",
    ),
    (
        "bad experiment name",
        "POST",
        "/v1/experiments",
        {"name": "a b", "arms": ["a"]},
        ADMIN,
        422,
        "String should match pattern",
    ),
    ("duplicate arms", "POST", "/v1/experiments", {"name": "x", "arms": ["a", "a"]}, ADMIN, 422, "unique"),
    ("existing experiment", "POST", "/v1/experiments", {"name": "hero", "arms": ["a"]}, ADMIN, 409, "already exists"),
    (
        "default reward out of bounds",
        "POST",
        "/v1/experiments",
        {"name": "x", "arms": ["a"], "default_reward": 5.0},
        ADMIN,
        422,
        "default_reward must be in",
    ),
    ("missing token", "POST", "/decisions", {}, None, 401, "missing bearer token"),
    ("wrong token", "POST", "/decisions", {}, "guess", 401, "invalid bearer token"),
    ("client token on create", "POST", "/v1/experiments", {"name": "x", "arms": ["a"]}, CLIENT, 403, "admin token"),
    ("client token on arms", "PATCH", "/arms", {"add": ["c"]}, CLIENT, 403, "admin token"),
    ("client token on rollback", "POST", "/rollback", {"snapshot_id": 1}, CLIENT, 403, "admin token"),
    ("unknown snapshot", "POST", "/rollback", {"snapshot_id": 7}, ADMIN, 404, "snapshot 7"),
    ("snapshot id past 64 bits", "POST", "/rollback", {"snapshot_id": 2**63}, ADMIN, 422, "less than or equal"),
]


@pytest.mark.parametrize("case, method, path, body, token, status, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input(secured, case, method, path, body, token, status, message):
    client, ids = secured
    url = path if path.startswith("/v1/") else f"/v1/experiments/hero{path}"
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    if isinstance(body, bytes):
        response = client.request(method, url, content=body, headers={**headers, "content-type": "application/json"})
    elif isinstance(body, dict):
        filled = {key: value.format(**ids) if isinstance(value, str) else value for key, value in body.items()}
        response = client.request(method, url, json=filled, headers=headers)
    else:
        response = client.request(method, url, headers=headers)
    assert response.status_code == status, response.text
    assert message in response.text


def test_a_second_client_token_and_the_admin_token_may_decide(secured):
    client, _ = secured
    for token in ("other", ADMIN):
        response = client.post("/v1/experiments/hero/decisions", json={}, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200


def test_health_needs_no_token(secured):
    client, _ = secured
    assert client.get("/v1/health").json() == {"status": "ok"}

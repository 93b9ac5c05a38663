"""The hot endpoints — decisions, rewards, health — as functions of bytes, and an ASGI front for them.

FastAPI's per-request machinery (middleware layers, routing through nested
routers, dependency resolution, body handling) costs more CPU than choosing,
logging and answering a decision. :class:`HotPaths` therefore serves these
few exact paths itself, before the app's middleware stack, with the same
checks in the same order (token, body size, validation, the engine) and the
same answers; every other request, and these paths under a ``root_path``, go
through FastAPI, whose routes call the same functions and document them in
OpenAPI.
"""

from __future__ import annotations

import json
from typing import TypeVar

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from .deps import authorize
from .engine import Engine
from .errors import ConflictError, GoneError, InvalidRequestError, NotFoundError, error_answer, error_headers
from .schemas import (
    DecisionBatchRequest,
    DecisionBatchResponse,
    DecisionRequest,
    RewardBatchRequest,
    RewardBatchResponse,
    RewardRequest,
    RewardResponse,
)

Model = TypeVar("Model", bound=BaseModel)
HEALTH = b'{"status":"ok"}'
#: While the store does not answer: decisions are served (fallback), rewards get 503.
DEGRADED = b'{"status":"degraded","store":"unavailable"}'
_REWARD_ERRORS = {404: NotFoundError, 409: ConflictError, 410: GoneError}


def parse(model: type[Model], body: bytes) -> Model:
    """``model`` from JSON bytes, parsed and validated by pydantic-core in one step; 422 naming the field."""
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        raise RequestValidationError([{**item, "loc": ("body", *item["loc"])} for item in error.errors()]) from None


def _json(model: BaseModel) -> bytes:
    return model.__pydantic_serializer__.to_json(model)


async def decide(engine: Engine, name: str, body: bytes) -> bytes:
    return _json(await engine.decide_one(name, parse(DecisionRequest, body)))


async def decide_batch(engine: Engine, name: str, body: bytes) -> bytes:
    requests = parse(DecisionBatchRequest, body).requests
    return _json(DecisionBatchResponse(decisions=await engine.decide(name, requests, field="requests.")))


async def reward(engine: Engine, name: str, body: bytes) -> bytes:
    result = await engine.reward_one(name, parse(RewardRequest, body))
    if result.status == 422:
        raise InvalidRequestError(result.detail, "value")
    if result.status != 200:
        raise _REWARD_ERRORS[result.status](result.detail)
    return _json(RewardResponse(decision_id=result.decision_id, arm=result.arm, value=result.value,
                                applied=result.applied))


async def reward_batch(engine: Engine, name: str, body: bytes) -> bytes:
    rewards = parse(RewardBatchRequest, body).rewards
    return _json(RewardBatchResponse(results=await engine.reward(name, rewards)))


_HANDLERS = {("decisions",): decide, ("decisions", "batch"): decide_batch, ("rewards",): reward,
             ("rewards", "batch"): reward_batch}


class HotPaths:
    """Serves ``GET /v1/health`` and ``POST /v1/experiments/{name}/(decisions|rewards)[/batch]`` for ``app``."""

    def __init__(self, app, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def handle(self, scope, receive, send) -> bool:
        """Answer the request if it is a hot path (True); leave it untouched otherwise (False)."""
        if scope["type"] != "http" or scope.get("root_path"):
            return False
        parts = scope["path"].split("/")
        if scope["method"] == "GET" and scope["path"] == "/v1/health":
            engine = getattr(self.app.state, "engine", None)
            await _respond(send, 200, HEALTH if engine is None or engine.store.available else DEGRADED)
            return True
        handler = None
        if scope["method"] == "POST" and len(parts) in (5, 6) and parts[1:3] == ["v1", "experiments"] and parts[3]:
            handler = _HANDLERS.get(tuple(parts[4:]))
        if handler is None:
            return False
        await self._serve(handler, parts[3], scope, receive, send)
        return True

    async def _serve(self, handler, name: str, scope, receive, send) -> None:
        headers = dict(scope["headers"])
        app = self.app
        try:
            authorize(app.state.settings, headers.get(b"authorization", b"").decode("latin-1"), admin=False)
            body = await self._body(headers, receive)
            if body is None:
                return await _respond(send, 413, b'{"detail":"Content Too Large"}')
            payload = await handler(app.state.engine, name, body)
        except HTTPException as error:
            extra = [(key.encode(), value.encode()) for key, value in (error.headers or {}).items()]
            return await _respond(send, error.status_code, json.dumps({"detail": error.detail}).encode(), extra)
        except Exception as error:
            answer = error_answer(error)
            if answer is None:
                raise
            extra = [(key.encode(), value.encode()) for key, value in error_headers(error).items()]
            return await _respond(send, answer[0], json.dumps(answer[1]).encode(), extra)
        await _respond(send, 200, payload)

    async def _body(self, headers: dict, receive) -> bytes | None:
        """The request body, or None once it exceeds the limit (declared or streamed)."""
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return None
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


async def _respond(send, status: int, payload: bytes, headers: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": payload})

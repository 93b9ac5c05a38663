"""Request dependencies: the engine of the running app and the two levels of bearer tokens.

Each is a single dependency without sub-dependencies: FastAPI resolves them
on every request, so the hot endpoints stay cheap.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPBearer

from .config import Settings
from .engine import Engine


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def _matches(token: str, secret) -> bool:
    return secret is not None and hmac.compare_digest(token.encode(), secret.get_secret_value().encode())


class BearerToken(HTTPBearer):
    """``Authorization: Bearer TOKEN``; resolves to the caller's role, 401/403 otherwise."""

    def __init__(self, admin: bool) -> None:
        super().__init__(auto_error=False, scheme_name="BearerToken",
                         description="BANDITKIT_ADMIN_TOKEN, or one of BANDITKIT_CLIENT_TOKENS")
        self.admin = admin

    async def __call__(self, request: Request) -> str:
        settings: Settings = request.app.state.settings
        if not settings.auth_enabled:
            return "admin"
        credentials = await super().__call__(request)
        if credentials is None:
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        if _matches(credentials.credentials, settings.admin_token):
            return "admin"
        if not any(_matches(credentials.credentials, secret) for secret in settings.client_tokens):
            raise HTTPException(401, "invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
        if self.admin:
            raise HTTPException(403, "this endpoint needs the admin token")
        return "client"


EngineDep = Annotated[Engine, Depends(get_engine)]
#: Decisions, rewards and reads: any valid token (client or admin).
ClientAuth = Depends(BearerToken(admin=False))
#: Creating experiments, changing arms, snapshots and rollback: the admin token.
AdminAuth = Depends(BearerToken(admin=True))

"""Request dependencies: the engine of the running app and the two levels of bearer tokens."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .config import Settings
from .engine import Engine

_bearer = HTTPBearer(auto_error=False, description="BANDITKIT_ADMIN_TOKEN or one of BANDITKIT_CLIENT_TOKENS")


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _matches(token: str, secret) -> bool:
    return secret is not None and hmac.compare_digest(token.encode(), secret.get_secret_value().encode())


def _role(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> str:
    """'admin' or 'client' for a valid token; 401 for a missing or unknown one."""
    if not settings.auth_enabled:
        return "admin"
    if credentials is None:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    if _matches(credentials.credentials, settings.admin_token):
        return "admin"
    if any(_matches(credentials.credentials, secret) for secret in settings.client_tokens):
        return "client"
    raise HTTPException(401, "invalid bearer token", headers={"WWW-Authenticate": "Bearer"})


async def require_client(request: Request,
                   credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    """Decisions, rewards and reads: any valid token (client or admin)."""
    return _role(_settings(request), credentials)


async def require_admin(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    """Creating experiments, changing arms, snapshots and rollback: the admin token."""
    role = _role(_settings(request), credentials)
    if role != "admin":
        raise HTTPException(403, "this endpoint needs the admin token")
    return role


EngineDep = Annotated[Engine, Depends(get_engine)]
ClientAuth = Depends(require_client)
AdminAuth = Depends(require_admin)

"""Request dependencies: the engine of the running app and the two levels of bearer tokens."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase

from .config import Settings
from .engine import Engine


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def _matches(token: str, secret) -> bool:
    return secret is not None and hmac.compare_digest(token.encode(), secret.get_secret_value().encode())


def authorize(settings: Settings, authorization: str | None, *, admin: bool) -> str:
    """The caller's role from an ``Authorization`` header value: 401 if missing or unknown, 403 if not enough."""
    if not settings.auth_enabled:
        return "admin"
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    token = token.strip()
    if _matches(token, settings.admin_token):
        return "admin"
    if not any(_matches(token, secret) for secret in settings.client_tokens):
        raise HTTPException(401, "invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
    if admin:
        raise HTTPException(403, "this endpoint needs the admin token")
    return "client"


class BearerToken(SecurityBase):
    """``Authorization: Bearer TOKEN`` as one dependency (it also documents the scheme in OpenAPI).

    A ``SecurityBase`` (what FastAPI documents as a security scheme) rather than an ``HTTPBearer``: this
    dependency answers the caller's role, not the credentials ``HTTPBearer`` returns.
    """

    def __init__(self, admin: bool) -> None:
        self.model = HTTPBearerModel(description="BANDITKIT_ADMIN_TOKEN, or one of BANDITKIT_CLIENT_TOKENS")
        self.scheme_name = "BearerToken"
        self.admin = admin

    def role(self, settings: Settings, authorization: str | None) -> str:
        """The caller's role, or the 401/403 of :func:`authorize` at this token level."""
        return authorize(settings, authorization, admin=self.admin)

    async def __call__(self, request: Request) -> str:
        return self.role(request.app.state.settings, request.headers.get("authorization"))


EngineDep = Annotated[Engine, Depends(get_engine)]
#: Decisions, rewards and reads: any valid token (client or admin).
CLIENT = BearerToken(admin=False)
#: Creating experiments, changing arms, snapshots and rollback: the admin token.
ADMIN = BearerToken(admin=True)
ClientAuth = Depends(CLIENT)
AdminAuth = Depends(ADMIN)

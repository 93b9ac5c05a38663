"""Request dependencies: the engine of the running app and the two levels of bearer tokens."""

from __future__ import annotations

import hmac
import re
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


#: ``Bearer TOKEN``: the scheme in any case (RFC 7235 makes schemes case-insensitive), one space, then the token
#: in visible ASCII. No other whitespace: a proxy and the service must not read one header two ways.
_CREDENTIALS = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] ([\x21-\x7e]+)")


def repeated_authorization(headers: list[tuple[bytes, bytes]]) -> bool:
    """True when the raw ASGI ``headers`` hold more than one ``Authorization`` (refused: which would count?)."""
    seen = False
    for name, _ in headers:
        if name == b"authorization":
            if seen:
                return True
            seen = True
    return False


def authorize(settings: Settings, authorization: str | None, *, admin: bool) -> str:
    """The caller's role from an ``Authorization`` header value.

    401 if missing, malformed or unknown, 403 if
    not enough.
    """
    if not settings.auth_enabled:
        return "admin"
    if not authorization:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    credentials = _CREDENTIALS.fullmatch(authorization)
    if credentials is None:
        raise HTTPException(
            401,
            "malformed Authorization header: expected 'Bearer TOKEN' with one space and no other whitespace",
            headers={"WWW-Authenticate": 'Bearer error="invalid_request"'},
        )
    token = credentials[1]
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

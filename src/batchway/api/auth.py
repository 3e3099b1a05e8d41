"""Who is calling: the key from ``Authorization: Bearer``, ``x-api-key`` or ``api-key``."""

from __future__ import annotations

from starlette.requests import Request

from batchway.core.keys import ADMIN, KeyService
from batchway.core.models import Principal
from batchway.errors import AuthError

__all__ = ["authenticate", "authenticate_admin", "presented_key"]


def presented_key(request: Request) -> str | None:
    """The key a client presented, in whichever header its SDK uses."""
    headers = request.headers
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return headers.get("x-api-key") or headers.get("api-key") or None


async def authenticate(request: Request, keys: KeyService) -> Principal:
    return await keys.authenticate(presented_key(request))


def authenticate_admin(request: Request, keys: KeyService) -> Principal:
    token = presented_key(request)
    # header bytes arrive decoded as Latin-1: a token with any other byte cannot be the
    # configured key, and comparing it in constant time would raise
    if not token or not token.isascii() or not keys.is_admin(token):
        raise AuthError("This route needs the admin key.")
    return ADMIN

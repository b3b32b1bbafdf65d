"""Authentication and authorization dependencies for every route.

`current_principal` needs `Authorization: Bearer <access token>` and the `X-Device-ID` the
token was issued to; `require_role(...)` adds an RBAC check. Failures raise identity's domain
errors (not_authenticated, invalid_token, device_mismatch → 401; forbidden → 403), which the
problem handlers turn into problem+json.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kora.http.container import services
from kora.identity import AuthenticationRequired, Forbidden, IdentityService, Principal, Role

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="AccessToken",
    description="An access token from /v1/auth/login or /v1/auth/refresh, with the X-Device-ID header.",
)

DeviceIdHeader = Annotated[
    str | None,
    Header(alias="X-Device-ID", description="The device id the access token was issued to."),
]


def identity_service(request: Request) -> IdentityService:
    identity: IdentityService = services(request).identity
    return identity


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    device_id: DeviceIdHeader = None,
) -> Principal:
    """The authenticated caller. Raises AuthenticationRequired, InvalidToken, DeviceMismatch."""
    if credentials is None or not credentials.credentials or not device_id:
        raise AuthenticationRequired()
    return await identity_service(request).authenticate(credentials.credentials, device_id)


def require_role(*roles: Role | str) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting a caller who holds at least one of `roles`. Unknown role names
    fail here, when the route is declared, not at request time."""
    if not roles:
        raise ValueError("require_role needs at least one role")
    wanted = frozenset(Role(role) for role in roles)

    async def principal_with_role(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if not principal.roles & wanted:
            raise Forbidden()
        return principal

    return principal_with_role

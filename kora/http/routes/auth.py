"""Authentication routes: register, login, refresh, logout, and the JWKS of the access-token
signing keys. Admins are never created here (CLI only: `IdentityService.create_admin`)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from kora.http.problems import problem_responses
from kora.http.security import current_principal, identity_service
from kora.identity import Principal, TokenPair
from kora.observability import get_correlation_id

router = APIRouter(tags=["auth"])

DEVICE_ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"
# Token responses must never be cached (RFC 6749 §5.1).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

PhoneNumberField = Annotated[
    str,
    Field(
        min_length=1,
        max_length=32,
        description="E.164, e.g. +221771234567 (spaces and dashes are tolerated).",
        examples=["+221771234567"],
    ),
]
# The policy (10 to 128 characters, not common, no phone number) is applied by the service; the
# bound here only keeps absurd inputs away from the password hasher.
PasswordField = Annotated[str, Field(min_length=1, max_length=1024)]
DeviceIdField = Annotated[
    str, Field(pattern=DEVICE_ID_PATTERN, description="A stable id of the client device (e.g. a UUID).")
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RegisterIn(_Strict):
    phone_number: PhoneNumberField
    password: PasswordField
    display_name: Annotated[str | None, Field(max_length=64)] = None


class RegisterOut(BaseModel):
    user_id: uuid.UUID
    wallet_id: uuid.UUID


class LoginIn(_Strict):
    phone_number: PhoneNumberField
    password: PasswordField
    device_id: DeviceIdField


class RefreshIn(_Strict):
    refresh_token: Annotated[str, Field(min_length=1, max_length=256)]
    device_id: DeviceIdField


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (the OAuth token type)
    expires_in: int = Field(description="Lifetime of the access token, in seconds.")


def _tokens(pair: TokenPair, response: Response) -> TokenOut:
    response.headers.update(NO_STORE)
    return TokenOut(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


@router.post(
    "/v1/auth/register",
    status_code=201,
    responses=problem_responses("validation_error", "weak_password", "invalid_phone_number", "phone_number_taken"),
)
async def register(body: RegisterIn, request: Request) -> RegisterOut:
    """Create a customer account and open its wallet."""
    result = await identity_service(request).register(
        phone_number=body.phone_number,
        password=body.password,
        display_name=body.display_name,
        correlation_id=get_correlation_id(),
    )
    return RegisterOut(user_id=result.user_id, wallet_id=result.wallet_id)


@router.post(
    "/v1/auth/login",
    responses=problem_responses("validation_error", "invalid_credentials", "account_locked", "too_many_attempts"),
)
async def login(body: LoginIn, request: Request, response: Response) -> TokenOut:
    """Exchange credentials for an access token (short-lived JWT) and a refresh token bound to
    `device_id`. An unknown number and a wrong password get the same answer; repeated failures
    lock the account (`account_locked`) or the client address (`too_many_attempts`)."""
    pair = await identity_service(request).login(
        phone_number=body.phone_number,
        password=body.password,
        device_id=body.device_id,
        client_ip=request.client.host if request.client else None,
        correlation_id=get_correlation_id(),
    )
    return _tokens(pair, response)


@router.post(
    "/v1/auth/refresh",
    responses=problem_responses("validation_error", "invalid_refresh_token", "refresh_token_reused"),
)
async def refresh(body: RefreshIn, request: Request, response: Response) -> TokenOut:
    """Rotate a refresh token: it is spent and a new pair is returned. Presenting a spent token
    again revokes the whole session (`refresh_token_reused`)."""
    pair = await identity_service(request).refresh(
        refresh_token=body.refresh_token, device_id=body.device_id, correlation_id=get_correlation_id()
    )
    return _tokens(pair, response)


@router.post(
    "/v1/auth/logout",
    status_code=204,
    response_class=Response,
    responses=problem_responses("not_authenticated", "invalid_token"),
)
async def logout(principal: Annotated[Principal, Depends(current_principal)], request: Request) -> Response:
    """End the caller's session: its refresh tokens and access tokens stop working."""
    await identity_service(request).logout(principal, correlation_id=get_correlation_id())
    return Response(status_code=204)


@router.get("/.well-known/jwks.json", tags=["auth"])
async def jwks(request: Request, response: Response) -> dict[str, Any]:
    """The public keys that verify access tokens (JWKS; Ed25519, `alg` EdDSA)."""
    response.headers["Cache-Control"] = "public, max-age=300"
    return identity_service(request).jwks()

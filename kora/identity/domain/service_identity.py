"""Service identity: what another Kora service (the reconciliation service) is, which scopes the
core grants it, and the rules a service token must pass once its signature is verified.

A service token is a short-lived JWT the calling service signs itself with its own Ed25519 key
(ADR 0023). It can never pass as a user access token, nor a user token as a service token: the
two differ in `typ` and audience, and each verifier checks both. Pure Python: the signature is
the adapter's; these rules only read the verified claims and a clock reading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

from kora.identity.domain.errors import IdentityError

SERVICE_TOKEN_TYPE = "kora-svc+jwt"  # noqa: S105 — the JWT `typ`, not a secret
SERVICE_AUDIENCE = "kora-core"
MAX_SERVICE_TOKEN_LIFETIME = timedelta(minutes=5)
# Absorbs clock skew between the two services' hosts, both ways.
SERVICE_TOKEN_LEEWAY = timedelta(seconds=30)

_SERVICE_NAME = re.compile(r"[a-z][a-z0-9-]{1,62}")
_KID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_SCOPE = re.compile(r"[a-z][a-z0-9_]*:[a-z][a-z0-9_]*")

# Why a service token was refused: a bounded vocabulary (metric label, log field).
REFUSAL_REASONS = (
    "missing",
    "malformed",
    "wrong_type",
    "unknown_kid",
    "bad_signature",
    "wrong_audience",
    "wrong_issuer",
    "expired",
    "not_yet_valid",
    "lifetime_too_long",
    "scope_not_granted",
)


class ServiceTokenInvalid(IdentityError):
    """The service token is missing, malformed, not ours, expired or asks for more than the
    service is granted. `reason` is one of REFUSAL_REASONS; `service` the configured service
    the token's key belongs to, when that much is known."""

    code: ClassVar[str] = "service_token_invalid"
    default_message = "service token is missing, invalid or expired"

    def __init__(self, reason: str, *, service: str | None = None) -> None:
        if reason not in REFUSAL_REASONS:
            raise ValueError(f"unknown refusal reason {reason!r}")
        super().__init__(f"service token refused: {reason}")
        self.reason = reason
        self.service = service


class ServiceScopeMissing(IdentityError):
    """A valid service token without the scope the operation needs."""

    code: ClassVar[str] = "service_scope_missing"
    default_message = "the service token does not carry the scope this operation needs"

    def __init__(self, scope: str, *, service: str) -> None:
        super().__init__(f"this operation needs the scope {scope}")
        self.scope = scope
        self.service = service
        self.reason = "scope_missing"


def validate_scope(scope: str) -> str:
    """A scope is `resource:action` in lower-case words (e.g. `payments:read`)."""
    if not isinstance(scope, str) or not _SCOPE.fullmatch(scope):
        raise ValueError("a scope is resource:action in lower-case words, e.g. payments:read")
    return scope


@dataclass(frozen=True, slots=True)
class ServiceIdentity:
    """A service the core trusts: its name (the token's `iss` and `sub`), the id of its public
    key, and the scopes it may ask for. Public configuration, not a secret."""

    service: str
    kid: str
    scopes: frozenset[str]

    def __post_init__(self) -> None:
        if not isinstance(self.service, str) or not _SERVICE_NAME.fullmatch(self.service):
            raise ValueError("a service name is 2-63 lower-case letters, digits and dashes")
        if not isinstance(self.kid, str) or not _KID.fullmatch(self.kid):
            raise ValueError("a kid is 1-64 letters, digits and . _ : -")
        for scope in self.scopes:
            validate_scope(scope)


@dataclass(frozen=True, slots=True)
class ServiceClaims:
    """What a service token says, read from a token whose signature was verified."""

    kid: str
    issuer: str
    subject: str
    audience: tuple[str, ...]
    scopes: frozenset[str]
    issued_at: datetime
    expires_at: datetime
    not_before: datetime | None
    token_id: str


@dataclass(frozen=True, slots=True)
class ServiceCaller:
    """An authenticated service: who, with which scopes, by which token (its `jti`)."""

    service: str
    scopes: frozenset[str]
    token_id: str
    kid: str

    @property
    def actor(self) -> str:
        """The audit actor for this caller."""
        return f"service:{self.service}"

    @property
    def idempotency_scope(self) -> str:
        return f"service:{self.service}"


def admit_service_claims(
    claims: ServiceClaims,
    identity: ServiceIdentity,
    *,
    now: datetime,
    leeway: timedelta = SERVICE_TOKEN_LEEWAY,
    max_lifetime: timedelta = MAX_SERVICE_TOKEN_LIFETIME,
) -> ServiceCaller:
    """The caller, if the verified claims pass every rule: our audience, issued by the service
    the key belongs to (`iss` and `sub`), at most `max_lifetime` long, valid at `now` (with
    `leeway` either side), and asking only for scopes the service is granted.
    Raises ServiceTokenInvalid with the first rule broken."""
    service = identity.service
    if SERVICE_AUDIENCE not in claims.audience:
        raise ServiceTokenInvalid("wrong_audience", service=service)
    if claims.issuer != service or claims.subject != service:
        raise ServiceTokenInvalid("wrong_issuer", service=service)
    if claims.expires_at <= claims.issued_at or claims.expires_at - claims.issued_at > max_lifetime:
        raise ServiceTokenInvalid("lifetime_too_long", service=service)
    if now >= claims.expires_at + leeway:
        raise ServiceTokenInvalid("expired", service=service)
    starts = max(claims.issued_at, claims.not_before or claims.issued_at)
    if starts > now + leeway:
        raise ServiceTokenInvalid("not_yet_valid", service=service)
    if not claims.scopes or not claims.scopes <= identity.scopes:
        raise ServiceTokenInvalid("scope_not_granted", service=service)
    return ServiceCaller(service=service, scopes=claims.scopes, token_id=claims.token_id, kid=claims.kid)


def require_scope(caller: ServiceCaller, scope: str) -> ServiceCaller:
    """The caller, if its token carries `scope`; else ServiceScopeMissing."""
    if scope not in caller.scopes:
        raise ServiceScopeMissing(scope, service=caller.service)
    return caller

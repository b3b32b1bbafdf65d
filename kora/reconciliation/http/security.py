"""Who is calling the reconciliation API: a person logged in at the core, named by the core's
access token (RFC 9068 `at+jwt`, EdDSA/Ed25519, claims iss, aud, sub, roles, iat, exp, with a
`kid` naming one of the core's keys). This service only verifies; the core issues.

The core's public keys come from its JWKS document, either given as a setting or fetched from
its `/.well-known/jwks.json` and cached (see kora/reconciliation/http/settings.py for the
trade-off). Session revocation at the core is not visible here: a token is honoured until it
expires, and core access tokens are short-lived (10 minutes by default).

Roles are plain strings here (the core's enum is not imported): `recon_reviewer`,
`recon_approver`, `admin`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import Depends, Request
from loguru import logger

from kora.kernel import Clock
from kora.platform.settings import ConfigurationError
from kora.reconciliation.http.problems import ReconProblem

ALGORITHM = "EdDSA"
TOKEN_TYPE = "at+jwt"  # noqa: S105 — the core's access-token type (RFC 9068)
_REQUIRED_CLAIMS = ["iss", "aud", "sub", "roles", "iat", "exp"]
# Seconds of clock difference between the core and this service that a token's exp tolerates.
LEEWAY_SECONDS = 30
MIN_REFRESH_SECONDS = 30.0

RECON_REVIEWER = "recon_reviewer"
RECON_APPROVER = "recon_approver"
ADMIN = "admin"
RECON_ROLES = frozenset({RECON_REVIEWER, RECON_APPROVER, ADMIN})


@dataclass(frozen=True, slots=True)
class ReconPrincipal:
    """A person calling the API: the core's user id (the token's `sub`) and their roles."""

    user_id: str
    roles: frozenset[str]


class InvalidUserToken(Exception):
    """The token is malformed, forged, expired, for another audience or issuer, or names an
    unknown key. ``reason`` is a metric label word."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_jwks(document: Mapping[str, Any] | str) -> dict[str, Ed25519PublicKey]:
    """The Ed25519 public keys of a JWKS document, by kid. Raises ConfigurationError."""
    try:
        data = json.loads(document) if isinstance(document, str) else document
        keys = data["keys"]
        if not isinstance(keys, list):
            raise TypeError("keys must be a list")
        out: dict[str, Ed25519PublicKey] = {}
        for item in keys:
            if item.get("kty") != "OKP" or item.get("crv") != "Ed25519" or not item.get("kid"):
                continue  # another kind of key: this service only verifies EdDSA tokens
            key = jwt.PyJWK(item, algorithm=ALGORITHM).key
            if isinstance(key, Ed25519PublicKey):
                out[str(item["kid"])] = key
    except (ValueError, TypeError, KeyError, AttributeError, jwt.PyJWTError) as exc:
        raise ConfigurationError("the core's JWKS is not a valid JWKS document") from exc
    return out


class StaticKeys:
    """The core's keys from a setting: nothing is fetched."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey]) -> None:
        self._keys = dict(keys)

    async def key(self, kid: str) -> Ed25519PublicKey | None:
        return self._keys.get(kid)


class RemoteJwks:
    """The core's keys fetched from its JWKS URL, kept ``ttl`` seconds; a kid not seen yet
    triggers an early fetch, at most every MIN_REFRESH_SECONDS (a flood of forged kids cannot
    hammer the core). A failed fetch keeps the keys already known."""

    def __init__(
        self,
        url: str,
        *,
        ttl_seconds: float = 300.0,
        client: httpx.AsyncClient | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._ttl = ttl_seconds
        self._client = client
        self._own_client = client is None
        self._monotonic = monotonic
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> Ed25519PublicKey | None:
        now = self._monotonic()
        stale = self._fetched_at is None or now - self._fetched_at > self._ttl
        unknown = kid not in self._keys and (self._fetched_at is None or now - self._fetched_at > MIN_REFRESH_SECONDS)
        if stale or unknown:
            await self._refresh(now)
        return self._keys.get(kid)

    async def _refresh(self, now: float) -> None:
        async with self._lock:
            if self._fetched_at is not None and self._fetched_at >= now:
                return  # refreshed by a concurrent request meanwhile
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=5.0)
            try:
                response = await self._client.get(self._url, headers={"Accept": "application/json"})
                response.raise_for_status()
                self._keys = parse_jwks(response.json())
                logger.info("core JWKS fetched", keys=len(self._keys))
            except (httpx.HTTPError, ValueError, ConfigurationError) as exc:
                logger.warning("core JWKS not fetched; keeping the known keys", error=type(exc).__name__)
            self._fetched_at = self._monotonic()

    async def aclose(self) -> None:
        if self._own_client and self._client is not None:
            await self._client.aclose()


class KeySource(Protocol):
    """Where the core's public keys come from (StaticKeys, RemoteJwks)."""

    async def key(self, kid: str) -> Ed25519PublicKey | None: ...


class UserTokenVerifier:
    """Verifies the core's access tokens against its keys, issuer and audience, and expiry
    against ``clock`` (with LEEWAY_SECONDS)."""

    def __init__(self, keys: KeySource | None, *, issuer: str, audience: str, clock: Clock) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._clock = clock

    async def verify(self, token: str) -> ReconPrincipal:
        """The caller named by ``token``. Raises InvalidUserToken."""
        if self._keys is None:
            raise InvalidUserToken("no_keys")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidUserToken("malformed") from None
        kid = header.get("kid")
        if header.get("typ") != TOKEN_TYPE or header.get("alg") != ALGORITHM or not isinstance(kid, str):
            raise InvalidUserToken("malformed")
        key = await self._keys.key(kid)
        if key is None:
            raise InvalidUserToken("unknown_key")
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": _REQUIRED_CLAIMS, "verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.InvalidAudienceError:
            raise InvalidUserToken("audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidUserToken("issuer") from None
        except jwt.PyJWTError:
            raise InvalidUserToken("signature") from None
        exp, sub, roles = payload["exp"], payload["sub"], payload["roles"]
        if isinstance(exp, bool) or not isinstance(exp, int | float) or not isinstance(sub, str) or not sub:
            raise InvalidUserToken("malformed")
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise InvalidUserToken("malformed")
        if self._clock.now().timestamp() > exp + LEEWAY_SECONDS:
            raise InvalidUserToken("expired")
        return ReconPrincipal(user_id=sub, roles=frozenset(roles))


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="kora-recon"'}


async def current_recon_principal(request: Request) -> ReconPrincipal:
    """FastAPI dependency: the authenticated caller, or a 401 problem (`not_authenticated`
    without a bearer token, `invalid_token` for one that does not verify)."""
    services = request.app.state.recon
    token = _bearer(request)
    if token is None:
        services.metrics.auth_failure("missing")
        raise ReconProblem("not_authenticated", "send Authorization: Bearer <core access token>", headers=_CHALLENGE)
    try:
        principal: ReconPrincipal = await services.verifier.verify(token)
    except InvalidUserToken as exc:
        services.metrics.auth_failure(exc.reason)
        raise ReconProblem("invalid_token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
    return principal


def require_recon_role(*roles: str) -> Callable[..., Awaitable[ReconPrincipal]]:
    """FastAPI dependency factory: the caller, when they hold at least one of ``roles``; a 403
    problem (`forbidden`) otherwise."""
    allowed = frozenset(roles)
    if not allowed:
        raise ValueError("name at least one role")

    async def dependency(
        request: Request, principal: Annotated[ReconPrincipal, Depends(current_recon_principal)]
    ) -> ReconPrincipal:
        if not allowed & principal.roles:
            request.app.state.recon.metrics.auth_failure("role")
            raise ReconProblem("forbidden", "this needs one of the roles " + ", ".join(sorted(allowed)))
        return principal

    return dependency

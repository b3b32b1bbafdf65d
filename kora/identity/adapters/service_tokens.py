"""Service tokens (ADR 0023): the directory of trusted service keys, from
KORA_SERVICE_IDENTITIES, and the reader that checks a token's `typ` and EdDSA signature
through PyJWT. The claims' rules (audience, issuer, lifetime, scopes) are the domain's.

KORA_SERVICE_IDENTITIES is a JSON list of
``{"service": "kora-reconciliation", "kid": "recon-2026-11", "public_key": "<base64url of the
raw 32-byte Ed25519 public key, the JWK `x`>", "scopes": ["payments:read", ...]}``.
Public material, not a secret: rotating a key is adding the new entry, then removing the old
one once the service signs with the new key (no token outlives five minutes).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kora.identity.domain.service_identity import (
    SERVICE_TOKEN_TYPE,
    ServiceClaims,
    ServiceIdentity,
    ServiceTokenInvalid,
)
from kora.platform.settings import ConfigurationError

ALGORITHM = "EdDSA"
_REQUIRED = ["iss", "sub", "aud", "scope", "iat", "exp", "jti"]
# A token bigger than this is not one of ours: refused before any parsing.
MAX_TOKEN_LENGTH = 4096


class ServiceKeyDirectory:
    """Trusted service keys by kid: each kid belongs to exactly one service."""

    def __init__(self, entries: Sequence[tuple[ServiceIdentity, Ed25519PublicKey]]) -> None:
        self._by_kid: dict[str, tuple[ServiceIdentity, Ed25519PublicKey]] = {}
        for identity, key in entries:
            if identity.kid in self._by_kid:
                raise ConfigurationError(f"KORA_SERVICE_IDENTITIES: duplicate kid {identity.kid}")
            self._by_kid[identity.kid] = (identity, key)

    @classmethod
    def from_json(cls, text: str | None) -> ServiceKeyDirectory:
        """From KORA_SERVICE_IDENTITIES (unset or empty: no service is trusted)."""
        if not text or not text.strip():
            return cls([])
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError("KORA_SERVICE_IDENTITIES is not valid JSON") from exc
        if not isinstance(items, list):
            raise ConfigurationError("KORA_SERVICE_IDENTITIES must be a JSON list")
        return cls([_entry(position, item) for position, item in enumerate(items)])

    def get(self, kid: str) -> tuple[ServiceIdentity, Ed25519PublicKey] | None:
        return self._by_kid.get(kid)

    @property
    def services(self) -> frozenset[str]:
        """The configured service names: the only values a metric's `service` label takes."""
        return frozenset(identity.service for identity, _ in self._by_kid.values())


def _entry(position: int, item: object) -> tuple[ServiceIdentity, Ed25519PublicKey]:
    where = f"KORA_SERVICE_IDENTITIES[{position}]"
    if not isinstance(item, Mapping):
        raise ConfigurationError(f"{where} must be an object")
    unknown = set(item) - {"service", "kid", "public_key", "scopes"}
    if unknown:
        raise ConfigurationError(f"{where} has unknown fields: {', '.join(sorted(unknown))}")
    scopes = item.get("scopes")
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
        raise ConfigurationError(f"{where}.scopes must be a non-empty list of scopes")
    try:
        identity = ServiceIdentity(service=item.get("service"), kid=item.get("kid"), scopes=frozenset(scopes))  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigurationError(f"{where}: {exc}") from exc
    return identity, public_key_from_text(item.get("public_key"), where=where)


def public_key_from_text(value: object, *, where: str = "public_key") -> Ed25519PublicKey:
    """An Ed25519 public key from base64url (padded or not) of its 32 raw bytes."""
    if not isinstance(value, str):
        raise ConfigurationError(f"{where}.public_key must be base64url of a raw Ed25519 public key")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError(f"{where}.public_key is not base64url") from exc
    if len(raw) != 32:
        raise ConfigurationError(f"{where}.public_key must decode to 32 bytes (a raw Ed25519 public key)")
    return Ed25519PublicKey.from_public_bytes(raw)


class JwtServiceTokenReader:
    """`ServiceTokenReader` over PyJWT: a token of type `kora-svc+jwt`, signed with EdDSA by a
    key of the directory."""

    def __init__(self, directory: ServiceKeyDirectory) -> None:
        self._directory = directory

    @property
    def services(self) -> frozenset[str]:
        return self._directory.services

    def read(self, token: str) -> tuple[ServiceIdentity, ServiceClaims]:
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise ServiceTokenInvalid("malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise ServiceTokenInvalid("malformed") from None
        if header.get("alg") != ALGORITHM or header.get("typ") != SERVICE_TOKEN_TYPE:
            raise ServiceTokenInvalid("wrong_type")
        kid = header.get("kid")
        known = self._directory.get(kid) if isinstance(kid, str) else None
        if known is None:
            raise ServiceTokenInvalid("unknown_kid")
        identity, key = known
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                # The claims are the domain's to judge, against the core's Clock, each with its
                # own refusal reason: PyJWT checks the signature and that they are present.
                options={
                    "require": _REQUIRED,
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise ServiceTokenInvalid("bad_signature", service=identity.service) from None
        except jwt.PyJWTError:
            raise ServiceTokenInvalid("malformed", service=identity.service) from None
        try:
            claims = _claims(identity.kid, payload)
        except (TypeError, ValueError, OverflowError, OSError):
            raise ServiceTokenInvalid("malformed", service=identity.service) from None
        return identity, claims


def _claims(kid: str, payload: dict[str, Any]) -> ServiceClaims:
    audience = payload["aud"]
    audiences = (audience,) if isinstance(audience, str) else tuple(audience)
    if not all(isinstance(a, str) for a in audiences):
        raise TypeError("aud")
    scope = payload["scope"]
    if not isinstance(scope, str):
        raise TypeError("scope")
    nbf = payload.get("nbf")
    return ServiceClaims(
        kid=kid,
        issuer=_text(payload["iss"]),
        subject=_text(payload["sub"]),
        audience=audiences,
        scopes=frozenset(scope.split()),
        issued_at=_instant(payload["iat"]),
        expires_at=_instant(payload["exp"]),
        not_before=None if nbf is None else _instant(nbf),
        token_id=_text(payload["jti"])[:128],
    )


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("expected a non-empty string claim")
    return value


def _instant(value: object) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("expected a numeric date claim")
    return datetime.fromtimestamp(value, UTC)

"""The reconciliation service's own identity at the core (ADR 0023): short-lived EdDSA JWTs it
signs with its Ed25519 key (KORA_RECON_SERVICE_KEY), one per scope, reused until shortly
before they expire.

The token's shape is the contract with the core's verifier (kora/identity, which this service
may not import): header `kid` and `typ` kora-svc+jwt; claims iss = sub = the service's name,
aud kora-core, `scope` (space-separated), iat, exp (at most five minutes later), jti.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kora.kernel import Clock
from kora.platform.settings import ConfigurationError

TOKEN_TYPE = "kora-svc+jwt"  # noqa: S105 — the JWT `typ`, not a secret
CORE_AUDIENCE = "kora-core"
ALGORITHM = "EdDSA"
DEFAULT_LIFETIME = timedelta(minutes=2)
# A cached token is replaced once less than this is left, so it never expires in flight.
RENEW_BEFORE = timedelta(seconds=30)


@dataclass(frozen=True)
class ServiceKey:
    """The service's signing key and its id (as registered in the core)."""

    kid: str
    private_key: Ed25519PrivateKey

    def __repr__(self) -> str:
        return f"ServiceKey(kid={self.kid!r}, <private>)"

    @classmethod
    def from_json(cls, text: str) -> ServiceKey:
        """From KORA_RECON_SERVICE_KEY: JSON {"kid": ..., "private_key_pem": ...} (Ed25519)."""
        try:
            item = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError("KORA_RECON_SERVICE_KEY is not valid JSON") from exc
        if not isinstance(item, dict) or not isinstance(item.get("kid"), str) or not item["kid"]:
            raise ConfigurationError("KORA_RECON_SERVICE_KEY needs a non-empty string kid")
        try:
            private = serialization.load_pem_private_key(str(item["private_key_pem"]).encode(), password=None)
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigurationError("KORA_RECON_SERVICE_KEY has no readable private_key_pem") from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise ConfigurationError("KORA_RECON_SERVICE_KEY is not an Ed25519 key")
        return cls(item["kid"], private)

    def public_key(self) -> str:
        """base64url (unpadded) of the raw 32-byte public key: the JWK `x`."""
        raw = self.private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def jwk(self) -> dict[str, str]:
        return {"kty": "OKP", "crv": "Ed25519", "x": self.public_key(), "kid": self.kid, "use": "sig", "alg": ALGORITHM}


class ServiceTokenSigner:
    """Signs the service's tokens, one per scope set, cached until RENEW_BEFORE their expiry."""

    def __init__(self, key: ServiceKey, *, service: str, clock: Clock, lifetime: timedelta = DEFAULT_LIFETIME) -> None:
        if not timedelta(seconds=45) <= lifetime <= timedelta(minutes=5):
            raise ValueError("a service token lives between 45 seconds and 5 minutes")
        self._key = key
        self._service = service
        self._clock = clock
        self._lifetime = lifetime
        self._cache: dict[str, tuple[str, datetime]] = {}

    @property
    def service(self) -> str:
        return self._service

    def token(self, *scopes: str) -> str:
        """A token for `scopes` (only those the call needs), reused while it has time left."""
        scope = " ".join(sorted(set(scopes)))
        now = self._clock.now()
        cached = self._cache.get(scope)
        if cached is not None and cached[1] - now > RENEW_BEFORE:
            return cached[0]
        expires = now + self._lifetime
        claims: dict[str, Any] = {
            "iss": self._service,
            "sub": self._service,
            "aud": CORE_AUDIENCE,
            "scope": scope,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": str(uuid.uuid4()),
        }
        token = jwt.encode(
            claims, self._key.private_key, algorithm=ALGORITHM, headers={"kid": self._key.kid, "typ": TOKEN_TYPE}
        )
        self._cache[scope] = (token, expires)
        return token

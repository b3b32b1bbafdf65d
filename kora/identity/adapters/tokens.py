"""JWT access tokens signed with Ed25519 (EdDSA) through PyJWT, with a keyring for rotation."""

from __future__ import annotations

import base64
import json
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kora.identity.domain import AccessClaims, InvalidToken, Role
from kora.platform.settings import ConfigurationError

ALGORITHM = "EdDSA"
TOKEN_TYPE = "at+jwt"  # noqa: S105 — RFC 9068: an access token cannot be confused with another JWT we sign
_REQUIRED_CLAIMS = ["iss", "aud", "sub", "sid", "did", "roles", "iat", "exp", "jti"]


@dataclass(frozen=True)
class KeyringEntry:
    kid: str
    public_key: Ed25519PublicKey
    private_key: Ed25519PrivateKey | None = None


class Ed25519Keyring:
    """The first entry with a private key signs; every entry verifies. Retire a key by
    replacing its private key with its public key, then drop it once its tokens expired."""

    def __init__(self, entries: Sequence[KeyringEntry]) -> None:
        kids = [entry.kid for entry in entries]
        if len(set(kids)) != len(kids):
            raise ConfigurationError("duplicate kid in KORA_JWT_SIGNING_KEYS")
        signing = next((entry for entry in entries if entry.private_key is not None), None)
        if signing is None or signing.private_key is None:
            raise ConfigurationError("KORA_JWT_SIGNING_KEYS has no private key to sign with")
        self._entries = {entry.kid: entry for entry in entries}
        self.signing_kid: str = signing.kid
        self.signing_key: Ed25519PrivateKey = signing.private_key

    @classmethod
    def from_json(cls, text: str) -> Ed25519Keyring:
        """From KORA_JWT_SIGNING_KEYS: a JSON list of {"kid", "private_key_pem"} or
        {"kid", "public_key_pem"} (verify-only) objects."""
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError("KORA_JWT_SIGNING_KEYS is not valid JSON") from exc
        if not isinstance(items, list) or not items:
            raise ConfigurationError("KORA_JWT_SIGNING_KEYS must be a non-empty JSON list")
        return cls([_entry(item) for item in items])

    def get(self, kid: str) -> KeyringEntry | None:
        return self._entries.get(kid)

    @property
    def entries(self) -> tuple[KeyringEntry, ...]:
        return tuple(self._entries.values())


def _entry(item: object) -> KeyringEntry:
    if not isinstance(item, dict) or not isinstance(item.get("kid"), str) or not item["kid"]:
        raise ConfigurationError("each KORA_JWT_SIGNING_KEYS entry needs a non-empty string kid")
    kid: str = item["kid"]
    try:
        if "private_key_pem" in item:
            private = serialization.load_pem_private_key(item["private_key_pem"].encode(), password=None)
            if not isinstance(private, Ed25519PrivateKey):
                raise ConfigurationError(f"key {kid} is not an Ed25519 private key")
            return KeyringEntry(kid=kid, public_key=private.public_key(), private_key=private)
        if "public_key_pem" in item:
            public = serialization.load_pem_public_key(item["public_key_pem"].encode())
            if not isinstance(public, Ed25519PublicKey):
                raise ConfigurationError(f"key {kid} is not an Ed25519 public key")
            return KeyringEntry(kid=kid, public_key=public)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConfigurationError(f"key {kid} is not a readable PEM key") from exc
    raise ConfigurationError(f"key {kid} has neither private_key_pem nor public_key_pem")


# How many verified access tokens each process remembers (about 1 KiB each).
VERIFIED_CACHE_SIZE = 20_000


class JwtEdDsaSigner:
    def __init__(
        self, keyring: Ed25519Keyring, *, issuer: str, audience: str, cache_size: int = VERIFIED_CACHE_SIZE
    ) -> None:
        self._keyring = keyring
        self._issuer = issuer
        self._audience = audience
        # Tokens whose signature and claims were verified, newest last. A token is an immutable
        # string, so the answer for it never changes; expiry and revocation are not cached here
        # (the caller checks both on every request). Saves an Ed25519 verification per request.
        self._verified: OrderedDict[str, AccessClaims] = OrderedDict()
        self._cache_size = cache_size

    def sign(self, claims: AccessClaims) -> str:
        payload = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(claims.user_id),
            "sid": str(claims.session_id),
            "did": claims.device_id,
            "roles": sorted(role.value for role in claims.roles),
            "iat": int(claims.issued_at.timestamp()),
            "exp": int(claims.expires_at.timestamp()),
            "jti": claims.token_id,
        }
        ring = self._keyring
        headers = {"kid": ring.signing_kid, "typ": TOKEN_TYPE}
        return jwt.encode(payload, ring.signing_key, algorithm=ALGORITHM, headers=headers)

    def verify(self, token: str) -> AccessClaims:
        cached = self._verified.get(token)
        if cached is not None:
            self._verified.move_to_end(token)
            return cached
        claims = self._verify(token)
        self._verified[token] = claims
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return claims

    def _verify(self, token: str) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
            entry = self._keyring.get(header.get("kid", ""))
            if entry is None or header.get("typ") != TOKEN_TYPE:
                raise InvalidToken()
            payload = jwt.decode(
                token,
                entry.public_key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                # Expiry is checked by the caller against its Clock, not the system time.
                options={
                    "require": _REQUIRED_CLAIMS,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
            return AccessClaims(
                user_id=uuid.UUID(payload["sub"]),
                session_id=uuid.UUID(payload["sid"]),
                device_id=_string(payload["did"]),
                roles=frozenset(Role(name) for name in payload["roles"]),
                issued_at=datetime.fromtimestamp(_number(payload["iat"]), UTC),
                expires_at=datetime.fromtimestamp(_number(payload["exp"]), UTC),
                token_id=_string(payload["jti"]),
            )
        except InvalidToken:
            raise
        except (jwt.PyJWTError, ValueError, TypeError, KeyError, OverflowError, OSError):
            raise InvalidToken() from None

    def jwks(self) -> dict[str, Any]:
        return {"keys": [_jwk(entry) for entry in self._keyring.entries]}


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string claim")
    return value


def _number(value: object) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("expected a numeric claim")
    return value


def _jwk(entry: KeyringEntry) -> dict[str, str]:
    raw = entry.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
        "kid": entry.kid,
        "use": "sig",
        "alg": ALGORITHM,
    }

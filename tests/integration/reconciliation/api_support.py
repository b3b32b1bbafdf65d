"""The reconciliation API in-process (httpx ASGITransport) on a migrated recon database, with
the core's keyring: tokens are signed as the core signs them (kora.identity's signer for core
roles, the same header and claims for the recon roles the core's enum may not have yet)."""

from __future__ import annotations

import base64
import json
import secrets
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry

from kora.identity.adapters.tokens import Ed25519Keyring, JwtEdDsaSigner
from kora.kernel import FixedClock
from kora.reconciliation.http.app import build_services, create_app
from kora.reconciliation.http.container import ReconServices
from kora.reconciliation.http.settings import ReconApiSettings
from tests.unit.reconciliation.factories import AS_OF

ISSUER = "kora"
AUDIENCE = "kora-api"
KID = "core-k1"


@dataclass
class CoreKeys:
    """The core's signing key (a real keyring) and its JWKS, as `/.well-known/jwks.json` serves it."""

    private_key: Ed25519PrivateKey
    signer: JwtEdDsaSigner

    @classmethod
    def generate(cls) -> CoreKeys:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        keyring = Ed25519Keyring.from_json(json.dumps([{"kid": KID, "private_key_pem": pem}]))
        return cls(key, JwtEdDsaSigner(keyring, issuer=ISSUER, audience=AUDIENCE))

    def jwks_json(self) -> str:
        return json.dumps(self.signer.jwks())


def core_token(
    keys: CoreKeys,
    *roles: str,
    user_id: str | None = None,
    audience: str = AUDIENCE,
    issuer: str = ISSUER,
    kid: str = KID,
    at: datetime = AS_OF,
    ttl: timedelta = timedelta(minutes=10),
    key: Ed25519PrivateKey | None = None,
) -> str:
    """An access token with the core's header and claims (kora.identity.adapters.tokens)."""
    payload: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": user_id or str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
        "did": "device-1",
        "roles": sorted(roles),
        "iat": int(at.timestamp()),
        "exp": int((at + ttl).timestamp()),
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(payload, key or keys.private_key, algorithm="EdDSA", headers={"kid": kid, "typ": "at+jwt"})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Api:
    client: httpx.AsyncClient
    services: ReconServices
    keys: CoreKeys
    registry: CollectorRegistry

    def token(self, *roles: str, **kwargs: Any) -> str:
        return core_token(self.keys, *roles, **kwargs)

    def as_role(self, *roles: str) -> dict[str, str]:
        return bearer(self.token(*roles))

    async def count(self, table: sa.Table) -> int:
        async with self.services.engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())

    async def metrics(self) -> str:
        return (await self.client.get("/metrics")).text


def report_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


async def open_api(recon_url: str, *, max_upload_bytes: int = 1024 * 1024) -> AsyncIterator[Api]:
    keys = CoreKeys.generate()
    env = {
        "KORA_RECON_DATABASE_URL": recon_url,
        "KORA_RECON_REPORT_KEY": report_key(),
        "KORA_RECON_USER_TOKEN_KEYS": keys.jwks_json(),
        "KORA_RECON_MAX_UPLOAD_BYTES": str(max_upload_bytes),
        "KORA_DEV_SECRETS_FILE": str(Path(tempfile.mkdtemp()) / "dev-secrets.json"),
    }
    registry = CollectorRegistry()
    services = build_services(ReconApiSettings.from_env(env), clock=FixedClock(AS_OF), registry=registry)
    app = create_app(services, manage_lifecycle=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://recon.test") as client:
        try:
            yield Api(client, services, keys, registry)
        finally:
            await services.aclose()

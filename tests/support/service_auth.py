"""Service identities for tests: generated Ed25519 keys, the core's KORA_SERVICE_IDENTITIES
entry for them, and the core's API in process with those identities trusted."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kora.kernel import SystemClock
from kora.reconciliation.adapters.service_token import ServiceKey, ServiceTokenSigner
from tests.support.api import Api, test_settings

RECON = "kora-reconciliation"
ALL_SCOPES = ("payments:read", "payments:query", "ledger:correct")


def new_service_key(kid: str | None = None) -> ServiceKey:
    return ServiceKey(kid or "svc-" + uuid.uuid4().hex[:8], Ed25519PrivateKey.generate())


def service_key_json(key: ServiceKey) -> str:
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return json.dumps({"kid": key.kid, "private_key_pem": pem.decode()})


def identity_entry(key: ServiceKey, service: str = RECON, scopes: tuple[str, ...] = ALL_SCOPES) -> dict[str, Any]:
    return {"service": service, "kid": key.kid, "public_key": key.public_key(), "scopes": list(scopes)}


def signer(key: ServiceKey, service: str = RECON) -> ServiceTokenSigner:
    return ServiceTokenSigner(key, service=service, clock=SystemClock())


def forge(
    key: ServiceKey,
    *,
    claims: Mapping[str, Any] | None = None,
    headers: Mapping[str, Any] | None = None,
    lifetime: timedelta = timedelta(minutes=2),
    issued: datetime | None = None,
) -> str:
    """A service token with the given claims/headers changed (None removes one)."""
    at = issued or datetime.now(UTC)
    body: dict[str, Any] = {
        "iss": RECON,
        "sub": RECON,
        "aud": "kora-core",
        "scope": "payments:read",
        "iat": int(at.timestamp()),
        "exp": int((at + lifetime).timestamp()),
        "jti": str(uuid.uuid4()),
    }
    head: dict[str, Any] = {"kid": key.kid, "typ": "kora-svc+jwt"}
    for target, changes in ((body, claims), (head, headers)):
        for name, value in (changes or {}).items():
            if value is None:
                target.pop(name, None)
            else:
                target[name] = value
    return jwt.encode(body, key.private_key, algorithm="EdDSA", headers=head)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class ServiceHarness:
    api: Api
    kora: Any
    app: Any
    key: ServiceKey
    other_key: ServiceKey | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        return self.api.client

    def headers(self, *scopes: str, **extra: str) -> dict[str, str]:
        return {**bearer(signer(self.key).token(*scopes)), **extra}


@asynccontextmanager
async def core_with_services(
    url: str,
    tmp_path: Path,
    identities: list[dict[str, Any]],
    key: ServiceKey,
    *,
    providers: list[Any] | None = None,
    **extra: str,
) -> AsyncIterator[ServiceHarness]:
    """The core's API in process (ASGI) trusting `identities` (with `providers` in place of
    the sandbox, when given)."""
    from asgi_lifespan import LifespanManager

    from kora.bootstrap import Kora
    from kora.http.app import create_app

    kora = Kora(
        test_settings(url, tmp_path, KORA_SERVICE_IDENTITIES=json.dumps(identities), **extra), providers=providers
    )
    app = create_app(kora)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kora.test") as client:
            api = Api(client)
            api.kora = kora  # type: ignore[attr-defined]
            yield ServiceHarness(api, kora, app, key)

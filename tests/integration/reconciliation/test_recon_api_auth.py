"""Who may call the reconciliation API (SQLite and PostgreSQL): the core's access tokens,
verified with the core's JWKS; 401 and 403 as problem+json; roles per route."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kora.identity import Role
from kora.identity.domain import AccessClaims
from kora.kernel import FixedClock
from kora.reconciliation.http.security import RemoteJwks, UserTokenVerifier, parse_jwks
from tests.integration.reconciliation.api_support import (
    AUDIENCE,
    ISSUER,
    Api,
    CoreKeys,
    bearer,
    core_token,
    open_api,
)
from tests.unit.reconciliation.factories import AS_OF


@pytest.fixture
async def api(recon_url: str) -> AsyncIterator[Api]:
    async for opened in open_api(recon_url):
        yield opened


def _assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["status"], body["code"], body["type"]) == (status, code, f"urn:kora:problem:{code}")
    assert body["correlation_id"] == response.headers["x-correlation-id"]


async def test_no_token_bad_token_other_audience_other_key_expired_are_401(api: Api) -> None:
    no_token = await api.client.get("/v1/recon/reports")
    _assert_problem(no_token, 401, "not_authenticated")
    assert no_token.headers["www-authenticate"].startswith("Bearer")

    refused = {
        "garbage": "not-a-jwt",
        "audience": api.token("recon_reviewer", audience="kora-other"),
        "issuer": api.token("recon_reviewer", issuer="someone-else"),
        "forged": api.token("recon_reviewer", key=Ed25519PrivateKey.generate()),
        "unknown kid": api.token("recon_reviewer", kid="core-k9"),
        "expired": api.token("recon_reviewer", at=AS_OF - timedelta(hours=1)),
    }
    for name, token in refused.items():
        response = await api.client.get("/v1/recon/reports", headers=bearer(token))
        _assert_problem(response, 401, "invalid_token")
        assert token not in response.text, name

    metrics = await api.metrics()
    for reason, count in (("missing", 1), ("audience", 1), ("issuer", 1), ("signature", 1), ("expired", 1)):
        assert f'kora_recon_auth_failures_total{{reason="{reason}"}} {count}.0' in metrics


async def test_roles_decide_reading_and_uploading(api: Api) -> None:
    customer = await api.client.get("/v1/recon/reports", headers=api.as_role("customer", "support"))
    _assert_problem(customer, 403, "forbidden")
    for role in ("recon_reviewer", "recon_approver", "admin"):
        assert (await api.client.get("/v1/recon/reports", headers=api.as_role(role))).status_code == 200

    # Uploading and matching: recon_reviewer only (an approver decides cases, an admin reads).
    for role in ("recon_approver", "admin"):
        upload = await api.client.post(
            "/v1/recon/reports", params={"provider": "momo"}, content=b"x", headers=api.as_role(role)
        )
        _assert_problem(upload, 403, "forbidden")
        match = await api.client.post(
            "/v1/recon/reports/00000000-0000-0000-0000-000000000000/match", headers=api.as_role(role)
        )
        _assert_problem(match, 403, "forbidden")
    assert 'kora_recon_auth_failures_total{reason="role"} 5.0' in await api.metrics()


async def test_a_token_the_core_signed_is_accepted(api: Api) -> None:
    """The core's own signer (kora.identity) and its JWKS output: what production pairs."""
    claims = AccessClaims(
        user_id=uuid.uuid4(),
        session_id=uuid.uuid4(),
        device_id="device-1",
        roles=frozenset({Role.ADMIN}),
        issued_at=AS_OF,
        expires_at=AS_OF + timedelta(minutes=10),
        token_id="jti-1",
    )
    token = api.keys.signer.sign(claims)
    principal = await api.services.verifier.verify(token)
    assert (principal.user_id, principal.roles) == (str(claims.user_id), frozenset({"admin"}))
    assert (await api.client.get("/v1/recon/summary", headers=bearer(token))).status_code == 200


async def test_keys_fetched_from_the_cores_jwks_url_with_caching() -> None:
    """RemoteJwks against an HTTP endpoint serving the core's JWKS: fetched once, then served
    from the cache; a new kid is fetched early, but not more than every 30 s."""
    keys = CoreKeys.generate()
    calls = []
    document = {"keys": json.loads(keys.jwks_json())["keys"]}

    async def jwks_endpoint(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, json=document)

    now = [1000.0]
    async with httpx.AsyncClient(transport=httpx.MockTransport(jwks_endpoint)) as client:
        source = RemoteJwks(
            "http://core.test/.well-known/jwks.json", ttl_seconds=300, client=client, monotonic=lambda: now[0]
        )
        verifier = UserTokenVerifier(source, issuer=ISSUER, audience=AUDIENCE, clock=FixedClock(AS_OF))
        for _ in range(3):
            assert (await verifier.verify(core_token(keys, "admin"))).roles == {"admin"}
        assert calls == ["/.well-known/jwks.json"]
        assert await source.key("core-k2") is None  # unknown kid within 30 s: no new fetch
        assert len(calls) == 1
        now[0] += 31
        assert await source.key("core-k2") is None  # past 30 s: fetched again
        assert len(calls) == 2
        now[0] += 301
        await source.key("core-k1")  # past the TTL: fetched again
        assert len(calls) == 3


def test_a_jwks_without_ed25519_keys_yields_no_key() -> None:
    assert parse_jwks({"keys": [{"kty": "RSA", "kid": "r1", "n": "x", "e": "AQAB"}]}) == {}

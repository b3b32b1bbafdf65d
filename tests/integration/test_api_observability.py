"""Observability from the first request: metrics by route template and business outcome, and
logs that never carry a phone number, password or token."""

from __future__ import annotations

import json
import re
import uuid

from kora.observability.testing import capture_logs
from tests.support.api import Api


async def test_metrics_cover_routes_and_business_outcomes_without_pii(sqlite_api: Api) -> None:
    api = sqlite_api
    alice = await api.customer(fund=1_000)
    bob = await api.customer()
    key = uuid.uuid4().hex
    await api.transfer(alice, key=key, recipient_phone_number=bob.phone_number, amount=100)
    await api.transfer(alice, key=key, recipient_phone_number=bob.phone_number, amount=100)  # replay
    await api.transfer(alice, recipient_wallet_id=bob.wallet_id, amount=5_000)  # refused
    await api.client.post(
        "/v1/auth/login",
        json={"phone_number": alice.phone_number, "password": "nope-nope-123", "device_id": "dev-12345"},
    )
    await api.client.get(f"/v1/payments/{uuid.uuid4()}", headers=alice.headers())

    text = (await api.client.get("/metrics")).text
    assert 'route="/v1/transfers"' in text
    assert 'route="/v1/payments/{payment_id}"' in text
    assert re.search(
        r'kora_payments_total\{[^}]*status="SETTLED"[^}]*type="p2p"|kora_payments_total\{[^}]*type="p2p"[^}]*status="SETTLED"',
        text,
    )
    assert "kora_payment_amount_minor_total" in text
    assert "kora_idempotent_replays_total" in text
    assert "kora_auth_failures_total" in text
    assert "kora_group_commit_batch_size_count" in text
    assert 'le="0.15"' in text  # an SLO threshold is a bucket boundary
    for secret in (alice.phone_number, bob.phone_number, alice.user_id, bob.user_id, alice.wallet_id):
        assert secret not in text
        assert secret.lstrip("+") not in text

    openmetrics = await api.client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")


async def test_logs_carry_correlation_and_no_pii(sqlite_api: Api) -> None:
    api = sqlite_api
    with capture_logs() as lines:
        alice = await api.customer(fund=2_000)
        bob = await api.customer()
        correlation = "scan-" + uuid.uuid4().hex
        sent = await api.client.post(
            "/v1/transfers",
            json={"recipient_phone_number": bob.phone_number, "amount": 100, "note": "pour Awa Koné"},
            headers=alice.headers(key=uuid.uuid4().hex, **{"X-Correlation-ID": correlation}),
        )
        assert sent.status_code == 201
        await api.transfer(alice, recipient_phone_number=bob.phone_number, amount=99_999)
        await api.client.post(
            "/v1/auth/refresh", json={"refresh_token": alice.refresh_token, "device_id": alice.device_id}
        )
        await api.client.post(
            "/v1/auth/refresh", json={"refresh_token": alice.refresh_token, "device_id": alice.device_id}
        )
        await api.client.post(
            "/v1/auth/login",
            json={
                "phone_number": bob.phone_number,
                "password": "wrong-password-1",
                "device_id": bob.device_id,
            },
        )
        await api.client.post(
            "/v1/auth/register", json={"phone_number": alice.phone_number, "password": alice.password}
        )
    assert lines, "the flows should have logged something"
    everything = "\n".join(lines)
    forbidden = [
        alice.phone_number,
        bob.phone_number,
        alice.phone_number.lstrip("+"),
        bob.phone_number[4:],
        alice.password,
        bob.password,
        alice.access_token,
        alice.refresh_token,
        bob.access_token,
        bob.refresh_token,
        "Awa Koné",
    ]
    for value in forbidden:
        assert value not in everything, f"leaked into logs: {value[:6]}…"
    assert not re.search(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}", everything), "a JWT leaked into logs"
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(correlation in json.dumps(r) for r in records), "the caller's correlation id is in the logs"

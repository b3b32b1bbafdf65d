"""GET /v1/payments/{id} shows reconciliation's flags to support and administrators only
(SQLite and PostgreSQL); a customer sees the same payment without them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from kora.payments.ports import PaymentFlag
from tests.integration.test_settlement_api import admin_headers
from tests.support.api import Api


async def test_support_sees_the_flags_a_customer_does_not(api: Api) -> None:
    alice = await api.customer(fund=10_000)
    [payment] = (await api.client.get("/v1/payments", headers=alice.headers())).json()["items"]
    case = uuid.uuid4()
    async with api.kora.unit_of_work() as uow:  # type: ignore[attr-defined]
        flag = PaymentFlag(
            payment_id=uuid.UUID(payment["id"]),
            source="reconciliation",
            case_id=str(case),
            outcome="MISMATCH",
            reason="amount",
            amount=9_000,
            currency="XOF",
            flagged_at=datetime(2026, 3, 11, 8, 0, tzinfo=UTC),
        )
        assert await uow.payments.add_flag(flag)
        assert not await uow.payments.add_flag(flag)  # once per (payment, case)
        await uow.commit()

    admin = await api.client.get(f"/v1/payments/{payment['id']}", headers=await admin_headers(api))
    assert admin.status_code == 200, admin.text
    assert admin.json()["flags"] == [
        {
            "source": "reconciliation",
            "case_id": str(case),
            "outcome": "MISMATCH",
            "reason": "amount",
            "amount": 9_000,
            "currency": "XOF",
            "flagged_at": "2026-03-11T08:00:00+00:00",
        }
    ]
    own = await api.client.get(f"/v1/payments/{payment['id']}", headers=alice.headers())
    assert own.status_code == 200, own.text
    assert "flags" not in own.json()
    assert own.json()["status_history"] == admin.json()["status_history"]
    schema = (await api.client.get("/openapi.json")).json()["components"]["schemas"]
    assert "flags" in schema["PaymentDetailOut"]["properties"]

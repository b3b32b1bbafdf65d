"""Typed, keyword-only factories for the risk tests: a small policy with round numbers."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from kora.risk import PaymentType, Policy, RiskRequest, parse_policy

AT = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _type_limits(scale: int) -> dict[str, Any]:
    return {
        "per_transaction": {"soft": 10_000 * scale, "hard": 20_000 * scale},
        "amount": {
            "hour": {"soft": 30_000 * scale, "hard": 40_000 * scale},
            "day": {"soft": 50_000 * scale, "hard": 60_000 * scale},
            "week": {"soft": 70_000 * scale, "hard": 80_000 * scale},
            "month": {"soft": 90_000 * scale, "hard": 100_000 * scale},
        },
        "count": {"hour": {"soft": 3, "hard": 5}, "day": {"soft": 8, "hard": 10}},
        "per_recipient": {"day": {"soft": 25_000 * scale, "hard": 35_000 * scale}},
    }


def policy_document(**overrides: Any) -> dict[str, Any]:
    """A valid policy document; `overrides` replace top-level keys."""
    tier = {t.value: _type_limits(1) for t in PaymentType}
    tier["cash_out"] = _type_limits(1)
    tier["cash_out"]["per_transaction"] = {"soft": 5_000, "hard": 10_000}
    document: dict[str, Any] = {
        "version": "test-1",
        "currency": "XOF",
        "device_cooling": {"hours": 24, "limit_percent": 50},
        "score": {"review_at": 40, "deny_at": 100},
        "tiers": {"tier0": tier, "tier1": copy.deepcopy(tier)},
        "flags": {},
    }
    document.update(overrides)
    return document


def make_policy(**overrides: Any) -> Policy:
    return parse_policy(policy_document(**overrides))


def make_request(
    *,
    amount: int = 1_000,
    type: PaymentType = PaymentType.P2P,
    payer_id: str = "w-payer",
    payee_id: str = "w-payee",
    device_id: str = "dev-1",
    tier: str = "tier0",
    currency: str = "XOF",
    at: datetime = AT,
) -> RiskRequest:
    return RiskRequest(
        payer_id=payer_id,
        payee_id=payee_id,
        amount=amount,
        currency=currency,
        type=type,
        device_id=device_id,
        tier=tier,
        at=at,
    )

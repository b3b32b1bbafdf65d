"""What the settlement step still has to move: captured provider payments per provider and
currency, due today and overdue (past their J+N due time), for on-call and the alerting."""

from __future__ import annotations

from datetime import UTC, datetime
from datetime import time as day_time
from typing import Any

from opentelemetry import trace

from kora.payments.domain.model import PaymentType
from kora.payments.service.base import PaymentsBase
from kora.payments.service.settlement import CLEARING_SIDE_AT_CAPTURE, FLOW

_tracer = trace.get_tracer("kora.payments")


class SettlementBacklog(PaymentsBase):
    """Reads the settlement backlog and keeps the overdue gauges current."""

    def __init__(self, **deps: Any) -> None:
        super().__init__(**deps)
        # (provider, currency) pairs whose overdue gauges were set, so they can go back to 0.
        self._published: set[tuple[str, str]] = set()

    async def settlement_backlog(self, *, provider: str | None = None, currency: str | None = None) -> dict[str, Any]:
        """Captured payments awaiting settlement, per provider and currency: how many, how much,
        how many are due by the end of today and how many are overdue (past their J+N due
        time), the oldest due time. Refreshes the overdue gauges."""
        now = self._clock.now()
        end_of_today = datetime.combine(now.astimezone(UTC).date(), day_time.max, tzinfo=UTC)
        with _tracer.start_as_current_span("payments.settlement_backlog"):
            async with self._uow() as uow:
                rows = await uow.payments.captured_backlog(
                    now=now, due_by=end_of_today, provider=provider, currency=currency
                )
        items: dict[tuple[str, str], dict[str, Any]] = {}
        for row in rows:
            item = items.setdefault((row.provider, row.currency), _empty_item(row.provider, row.currency))
            for name, count, amount in (
                ("captured", row.count, row.amount),
                ("due", row.due_count, row.due_amount),
                ("overdue", row.overdue_count, row.overdue_amount),
            ):
                item[name]["count"] += count
                item[name]["amount"] += amount
            side = CLEARING_SIDE_AT_CAPTURE.get(PaymentType(row.payment_type))
            if side is not None:
                item["expected"][FLOW[side]]["count"] += row.count
                item["expected"][FLOW[side]]["amount"] += row.amount
            item["oldest_captured_at"] = _earliest(item["oldest_captured_at"], row.oldest_captured_at)
            item["oldest_settlement_due"] = _earliest(item["oldest_settlement_due"], row.oldest_settlement_due)
        for item in items.values():
            expected = item["expected"]
            expected["net"] = expected["collections"]["amount"] - expected["disbursements"]["amount"]
            for key in ("oldest_captured_at", "oldest_settlement_due"):
                item[key] = item[key].isoformat() if item[key] else None
        self._publish_overdue(items, provider, currency)
        return {"as_of": now.isoformat(), "items": [items[k] for k in sorted(items)]}

    def _publish_overdue(
        self, items: dict[tuple[str, str], dict[str, Any]], provider: str | None, currency: str | None
    ) -> None:
        published = self._published
        for key, item in items.items():
            self._metrics.settlement_overdue(key[0], key[1], item["overdue"]["count"], item["overdue"]["amount"])
        # A provider that has caught up disappears from the query: its gauges go back to 0.
        for key in published - set(items):
            if (provider is None or key[0] == provider) and (currency is None or key[1] == currency):
                self._metrics.settlement_overdue(key[0], key[1], 0, 0)
        published |= set(items)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _empty_item(provider: str, code: str) -> dict[str, Any]:
    def zero() -> dict[str, int]:
        return {"count": 0, "amount": 0}

    return {
        "provider": provider,
        "currency": code,
        "captured": zero(),
        "due": zero(),
        "overdue": zero(),
        "expected": {"collections": zero(), "disbursements": zero()},
        "oldest_captured_at": None,
        "oldest_settlement_due": None,
    }

"""`InMemoryRiskActivity`: the payer and payee history kept in memory, answering the context an
assessment needs. The evaluation replays the labelled dataset through it, and it is the
reference `SqlRiskActivity` mirrors query for query (tests/integration/test_risk_sql.py replays
a dataset through both): the same windows, the same "holds count, denials do not" rule.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from kora.risk.domain.model import Outcome, PaymentType, RiskContext, RiskRequest, Usage, Window
from kora.risk.domain.policy import Policy


@dataclass(frozen=True, slots=True)
class _Payment:
    at: datetime
    payer_id: str
    payee_id: str
    amount: int
    type: PaymentType


def _time(payment: _Payment) -> datetime:
    return payment.at


class InMemoryRiskActivity:
    """Payments kept in time order; contexts computed from them as of a request's time."""

    def __init__(self) -> None:
        self._by_payer: dict[str, list[_Payment]] = defaultdict(list)
        self._by_payee: dict[str, list[_Payment]] = defaultdict(list)
        self._devices: dict[tuple[str, str], datetime] = {}
        self._paid: set[tuple[str, str]] = set()
        self._hours: dict[str, list[int]] = defaultdict(lambda: [0] * 24)
        self._hour_amounts: dict[str, list[int]] = defaultdict(lambda: [0] * 24)

    def record(self, request: RiskRequest, outcome: Outcome) -> None:
        """Note the device, and the payment unless it was denied (a reviewed payment's funds are
        held, so it counts in every window until a reviewer rejects it)."""
        self._devices.setdefault((request.payer_id, request.device_id), request.at)
        if outcome is Outcome.DENY:
            return
        payment = _Payment(request.at, request.payer_id, request.payee_id, request.amount, request.type)
        # kept sorted by time, so a late record (a retried or concurrent payment) still lands
        # in its windows and the scans below can stop at the first payment out of range
        bisect.insort(self._by_payer[request.payer_id], payment, key=_time)
        bisect.insort(self._by_payee[request.payee_id], payment, key=_time)
        self._paid.add((request.payer_id, request.payee_id))
        self._hours[request.payer_id][request.at.hour] += 1
        self._hour_amounts[request.payer_id][request.at.hour] += request.amount

    def build(self, request: RiskRequest, policy: Policy) -> RiskContext:
        """The context of `request` as of its time, with the windows `policy` names."""
        at, flags = request.at, policy.flags
        longest = max((w.length for w in Window), default=timedelta(0))
        usage: dict[Window, list[int]] = {w: [0, 0] for w in Window}
        with_payee: dict[Window, list[int]] = {w: [0, 0] for w in Window}
        recipients: set[str] = set()
        amounts: list[int] = []
        cash_in = 0
        fan_out_since = at - timedelta(minutes=flags.fan_out.window_minutes) if flags.fan_out else at
        layering_since = at - timedelta(minutes=flags.layering.window_minutes) if flags.layering else at
        structuring_since = at - flags.structuring.window.length if flags.structuring else at
        for payment in reversed(self._by_payer.get(request.payer_id, [])):
            if payment.at > at:
                continue
            age = at - payment.at
            if age >= longest and payment.at < min(fan_out_since, layering_since, structuring_since):
                break
            if payment.type is request.type:
                for window in Window:
                    if age < window.length:
                        usage[window][0] += payment.amount
                        usage[window][1] += 1
                        if payment.payee_id == request.payee_id:
                            with_payee[window][0] += payment.amount
                            with_payee[window][1] += 1
                if payment.at > structuring_since:
                    amounts.append(payment.amount)
            if flags.fan_out and payment.at > fan_out_since and payment.type in flags.fan_out.applies_to:
                recipients.add(payment.payee_id)
            if payment.type is PaymentType.CASH_IN and payment.at > layering_since:
                cash_in += payment.amount
        senders: set[str] = set()
        if flags.fan_in_mule:
            fan_in_since = at - timedelta(minutes=flags.fan_in_mule.window_minutes)
            for payment in reversed(self._by_payee.get(request.payee_id, [])):
                if payment.at <= fan_in_since:
                    break
                if payment.at <= at and payment.type in flags.fan_in_mule.applies_to:
                    senders.add(payment.payer_id)
        return RiskContext(
            payer_usage={w: Usage(amount=a, count=c) for w, (a, c) in usage.items()},
            recipient_usage={w: Usage(amount=a, count=c) for w, (a, c) in with_payee.items()},
            device_first_seen=self._devices.get((request.payer_id, request.device_id)),
            known_recipient=(request.payer_id, request.payee_id) in self._paid,
            recent_recipients=frozenset(recipients),
            recent_senders_to_payee=frozenset(senders),
            recent_amounts=tuple(amounts),
            recent_cash_in=cash_in,
            hour_histogram=tuple(self._hours.get(request.payer_id, [0] * 24)),
            hour_amounts=tuple(self._hour_amounts.get(request.payer_id, [0] * 24)),
        )

    async def context_for(self, request: RiskRequest, policy: Policy) -> RiskContext:
        return self.build(request, policy)

"""Typed factories for the reconciliation tests: simulator operations driven through the
simulator's own engine (so their movements are what the simulator really records), and
Kora's internal view of a payment."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from kora.kernel import FixedClock
from kora.reconciliation import FeeRule, InternalTxn, LineType, MatchRules, ReportLine
from kora.reconciliation.domain.report import Direction, LineStatus
from kora.simulator.behaviour import SUCCESS, Behaviour, Decline, Scenario
from kora.simulator.config import SimulatorConfig
from kora.simulator.engine import SimulatorState
from kora.simulator.records import Action, Movement, Operation, Status

DAY = date(2026, 3, 10)
START = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
AS_OF = START + timedelta(days=3)
PAYMENT_TYPE = {
    "collection": "cash_in",
    "checkout": "cash_in",
    "disbursement": "cash_out",
    "payout": "cash_out",
    "authorization": "card",
}
_FEE_TYPES = {
    "collection": LineType.CASH_IN,
    "checkout": LineType.CASH_IN,
    "disbursement": LineType.CASH_OUT,
    "payout": LineType.CASH_OUT,
    "capture": LineType.CARD,
}


class Simulation:
    """One simulator (zero latency, a fixed clock) in which operations are played."""

    def __init__(self) -> None:
        self.clock = FixedClock(START)
        self.state = SimulatorState(SimulatorConfig.for_tests(), clock=self.clock)
        self._numbers = iter(range(1, 1_000_000))

    def rules(self, provider: str) -> MatchRules:
        """The provider's fee schedule as the simulator applies it."""
        config = self.state.provider(provider)
        assert config is not None
        fees = {
            _FEE_TYPES[kind]: FeeRule(rule.bps, rule.fixed, rule.min_fee, rule.max_fee)
            for kind, rule in config.fees.items()
        }
        return MatchRules(fees=fees)

    def mobile(self, provider: str, kind: str, amount: int, scenario: Scenario, *, currency: str = "XOF") -> Operation:
        """A MoMo or Wave operation played to its end (and reversed, for the reversal scenario)."""
        config = self.state.provider(provider)
        assert config is not None
        behaviour = (
            Behaviour(scenario, Decline.INSUFFICIENT_FUNDS) if scenario is Scenario.DECLINE else Behaviour(scenario)
        )
        number = next(self._numbers)
        self.clock.advance(timedelta(minutes=1))
        operation = Operation(
            id=f"{provider[0].upper()}{1_000_000_000 + number}",
            provider=provider,
            kind=kind,
            reference=str(uuid.uuid4()),
            external_id=str(uuid.uuid4()),
            amount=amount,
            currency=currency,
            behaviour=behaviour if behaviour.scenario is not Scenario.SUCCEED else SUCCESS,
            party=None,
            created_at=self.clock.now(),
        )
        if scenario is Scenario.TIMEOUT_UNRECORDED:
            return operation  # never recorded by the provider
        if scenario is Scenario.STUCK_PENDING:
            self.state.record(operation)
            return operation
        failed = scenario in (Scenario.DECLINE, Scenario.TIMEOUT)
        self.state.plan(operation, config, Status.FAILED if failed else Status.SUCCEEDED, "x" if failed else None)
        self.state.advance()
        if scenario is Scenario.REVERSAL:
            self.clock.advance(timedelta(seconds=config.reversal_after_seconds))
            self.state.advance()
        return operation

    def card(self, amount: int, scenario: Scenario, *, refund: int = 0, currency: str = "XOF") -> Operation:
        """A card authorization, captured (unless declined), optionally refunded, charged back
        for the chargeback scenario — as the simulator's acquirer records them."""
        config = self.state.provider("card")
        assert config is not None
        self.clock.advance(timedelta(minutes=1))
        payment_id = str(uuid.uuid4())
        operation = Operation(
            id=f"auth_{uuid.uuid4().hex}",
            provider="card",
            kind="authorization",
            reference=payment_id,
            external_id=payment_id,
            amount=amount,
            currency=currency,
            behaviour=Behaviour(scenario),
            party=None,
            created_at=self.clock.now(),
        )
        self.state.record(operation)
        if scenario is Scenario.DECLINE:
            operation.status = Status.DECLINED
            return operation
        now = self.clock.now()
        fee = config.fee_for("capture", amount)
        operation.status, operation.captured_amount, operation.fee = Status.CAPTURED, amount, fee
        operation.finished_at = now
        operation.movements.append(
            Movement(f"cap_{uuid.uuid4().hex}", operation.id, "capture", "succeeded", amount, fee, now)
        )
        if refund:
            operation.refunded_amount = refund
            refund_id = f"ref_{uuid.uuid4().hex}"
            operation.extra["refund_id"] = refund_id
            operation.movements.append(Movement(refund_id, operation.id, "refund", "succeeded", -refund, 0, now))
        if scenario is Scenario.CHARGEBACK:
            self.state.ledger.schedule(
                now + timedelta(seconds=config.chargeback_after_seconds), operation.id, Action.CHARGEBACK
            )
            self.clock.advance(timedelta(seconds=config.chargeback_after_seconds))
            self.state.advance()
        return operation


def kora_view(operation: Operation, status: str) -> InternalTxn:
    """What Kora would hold for ``operation`` with the core status ``status``."""
    known = status not in ("INITIATED", "AUTHORIZED")
    captured_at = operation.finished_at if known and status != "FAILED" else None
    card = operation.kind == "authorization"
    return InternalTxn(
        payment_id=operation.external_id or operation.id,
        provider=operation.provider,
        provider_ref=operation.id if (known or card) and status != "FAILED" else None,
        our_reference=operation.external_id,
        type=PAYMENT_TYPE[operation.kind],
        status=status,
        amount=operation.amount,
        fee=0,
        currency=operation.currency,
        captured_at=captured_at,
        settlement_due=captured_at + timedelta(days=1) if captured_at else None,
        captured_amount=operation.captured_amount if card else None,
    )


def refund_view(operation: Operation) -> InternalTxn:
    """Kora's refund payment of a card operation's refund line."""
    line = next(m for m in operation.movements if m.type == "refund")
    return InternalTxn(
        payment_id=str(uuid.uuid4()),
        provider="card",
        provider_ref=operation.extra["refund_id"],
        our_reference=None,
        type="refund",
        status="CAPTURED",
        amount=-line.amount,
        fee=0,
        currency=operation.currency,
        captured_at=line.at,
        settlement_due=line.at + timedelta(days=1),
    )


def txn(**changes: object) -> InternalTxn:
    """A captured MoMo cash-in of 10 000 XOF, due the next day; ``changes`` override fields."""
    base = InternalTxn(
        payment_id="p-1",
        provider="momo",
        provider_ref="M1",
        our_reference="ref-1",
        type="cash_in",
        status="CAPTURED",
        amount=10_000,
        fee=0,
        currency="XOF",
        captured_at=START,
        settlement_due=START + timedelta(days=1),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def line(**changes: object) -> ReportLine:
    """A succeeded cash-in line matching ``txn()`` (fee 100 = 1 % of 10 000)."""
    base = ReportLine(
        line_number=2,
        provider_txn_id="M1",
        our_reference="ref-1",
        provider_parent_id=None,
        occurred_at=START + timedelta(minutes=3),
        status=LineStatus.SUCCEEDED,
        type=LineType.CASH_IN,
        amount=10_000,
        direction=Direction.IN,
        fee=100,
        net=9_900,
        currency="XOF",
    )
    return replace(base, **changes)  # type: ignore[arg-type]

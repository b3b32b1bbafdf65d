"""The reconciliation service's outcome events on its own database (SQLite and PostgreSQL): the
settlement hook of a match run records `reconciliation.settlement_confirmed` only for the
matched payments still CAPTURED, in chunks, signed with the service's key and valid against
the contract; nothing is recorded when the run's transaction rolls back; a confirmed mismatch
is recorded as `reconciliation.mismatch_confirmed`, and a value the contract refuses is not."""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncConnection

from kora.events import Envelope, envelope_from_json
from kora.events.contracts import validate_envelope
from kora.events.domain import RECONCILIATION_PRODUCER
from kora.events.signing import EventSigner, EventVerifier
from kora.kernel import FixedClock
from kora.payments.domain.model import PaymentStatus
from kora.reconciliation.adapters.crypto import AesGcmReportCipher
from kora.reconciliation.adapters.sql import SqlReportStore
from kora.reconciliation.adapters.tables import event_outbox, recon_results
from kora.reconciliation.domain.rules import MatchRules
from kora.reconciliation.service.importing import ReportImports
from kora.reconciliation.service.match_run import MatchRun, run_match
from kora.reconciliation.service.outcomes import OutcomeEvents
from kora.simulator.behaviour import Scenario
from kora.simulator.config import ApiStyle
from kora.simulator.reports import render_report
from tests.integration.reconciliation.test_recon_feed import Feed, feed, lifecycle, provider_payment
from tests.unit.reconciliation.factories import AS_OF, DAY, START, Simulation

__all__ = ["feed"]

RULES = MatchRules(fallback_window=None)
RUN_AT = START + timedelta(days=3, hours=1)


class Recon:
    def __init__(self, feed: Feed, *, max_payments: int = 1000) -> None:
        self.feed = feed
        key = Ed25519PrivateKey.generate()
        self.signer = EventSigner("recon-k1", key)
        self.verifier = EventVerifier({"recon-k1": key.public_key()}, producers={"recon-k1": RECONCILIATION_PRODUCER})
        self.outcomes = OutcomeEvents(self.signer, clock=FixedClock(RUN_AT), max_payments=max_payments)

    async def captured(self, sim: Simulation, amount: int, *, settled: bool = False) -> str:
        """A MoMo collection the simulator played, and Kora's side of it fed to the recon database."""
        op = sim.mobile("momo", "collection", amount, Scenario.SUCCEED)
        payment = provider_payment(provider="momo", amount=amount, payment_id=uuid.UUID(op.external_id))
        envelopes = lifecycle(self.feed, payment, provider_ref=op.id)
        if settled:
            payment.transition(PaymentStatus.SETTLED, at=START + timedelta(days=1), reason="settled", actor="ops")
            envelopes.append(self.feed.emit(payment))
        await self.feed.publish(*envelopes)
        await self.feed.drain()
        return str(payment.id)

    async def report(self, sim: Simulation) -> uuid.UUID:
        key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        imports = ReportImports(
            SqlReportStore(self.feed.engine), AesGcmReportCipher.from_setting(key), FixedClock(START)
        )
        data = render_report(ApiStyle.MOMO, sim.state.ledger.of_provider("momo"), DAY).encode()
        result = await imports.import_report("momo", data, filename="momo.csv", actor="ops-1", report_day=DAY)
        return result.report_id

    async def outbox(self) -> list[Envelope]:
        async with self.feed.engine.connect() as conn:
            rows = await conn.execute(sa.select(event_outbox.c.envelope).order_by(event_outbox.c.seq))
            envelopes = [envelope_from_json(raw) for raw in rows.scalars()]
        for envelope in envelopes:  # what the core's verifier and contract check will see
            self.verifier.verify(envelope)
            validate_envelope(envelope)
        return envelopes


async def test_the_hook_confirms_only_the_matched_payments_still_captured(feed: Feed) -> None:
    recon, sim = Recon(feed), Simulation()
    captured = await recon.captured(sim, 10_000)
    already = await recon.captured(sim, 6_000, settled=True)
    short_op = sim.mobile("momo", "collection", 4_000, Scenario.SUCCEED)  # Kora says 4_500: a mismatch
    short = provider_payment(provider="momo", amount=4_500, payment_id=uuid.UUID(short_op.external_id))
    await feed.publish(*lifecycle(feed, short, provider_ref=short_op.id))
    await feed.drain()
    report_id = await recon.report(sim)

    counts = await run_match(
        feed.engine,
        report_id,
        rules=RULES,
        as_of=AS_OF,
        clock=FixedClock(RUN_AT),
        hooks=[recon.outcomes.settlement_hook],
    )

    assert (counts["MATCHED"], counts["MISMATCH"]) == (2, 1)
    [event] = await recon.outbox()
    assert (event.type, event.version, event.producer) == (
        "reconciliation.settlement_confirmed",
        1,
        RECONCILIATION_PRODUCER,
    )
    assert (event.aggregate_type, event.aggregate_id, event.key_id) == ("recon_report", str(report_id), "recon-k1")
    p = event.payload
    assert (p["provider"], p["currency"], p["report_day"], p["chunk"], p["chunks"]) == (
        "momo",
        "XOF",
        DAY.isoformat(),
        1,
        1,
    )
    assert p["reference"] == f"recon:momo:{report_id}"
    assert p["payments"] == [
        {"payment_id": captured, "amount": 10_000, "fee": p["payments"][0]["fee"], "net": p["payments"][0]["net"]}
    ]
    assert already not in str(p)
    assert str(short.id) not in str(p)
    assert event.subject == "kora.events.reconciliation.settlement_confirmed.v1"


async def test_many_payments_are_confirmed_in_chunks(feed: Feed) -> None:
    recon, sim = Recon(feed, max_payments=2), Simulation()
    ids = [await recon.captured(sim, 1_000 * (i + 1)) for i in range(5)]
    report_id = await recon.report(sim)

    await run_match(feed.engine, report_id, rules=RULES, as_of=AS_OF, hooks=[recon.outcomes.settlement_hook])

    events = await recon.outbox()
    assert [(e.payload["chunk"], e.payload["chunks"], len(e.payload["payments"])) for e in events] == [
        (1, 3, 2),
        (2, 3, 2),
        (3, 3, 1),
    ]
    listed = [item["payment_id"] for e in events for item in e.payload["payments"]]
    assert listed == sorted(ids)
    assert {e.partition for e in events} == {events[0].partition}  # one report: published in order
    with pytest.raises(ValueError, match="max_payments"):
        OutcomeEvents(recon.signer, max_payments=1001)


async def test_nothing_is_announced_when_the_match_run_rolls_back(feed: Feed) -> None:
    recon, sim = Recon(feed), Simulation()
    await recon.captured(sim, 10_000)
    report_id = await recon.report(sim)

    async def fails(conn: AsyncConnection, run: MatchRun) -> None:
        raise RuntimeError("the review queue could not be written")

    with pytest.raises(RuntimeError):
        await run_match(feed.engine, report_id, rules=RULES, as_of=AS_OF, hooks=[recon.outcomes.settlement_hook, fails])
    assert await recon.outbox() == []
    assert await feed.rows(recon_results) == []

    await run_match(feed.engine, report_id, rules=RULES, as_of=AS_OF, hooks=[recon.outcomes.settlement_hook])
    assert len(await recon.outbox()) == 1


async def test_a_confirmed_mismatch_is_recorded_in_the_callers_transaction(feed: Feed) -> None:
    recon = Recon(feed)
    case, payment = uuid.uuid4(), uuid.uuid4()
    async with feed.engine.begin() as conn:
        await recon.outcomes.record_mismatch_confirmed(
            conn,
            case_id=case,
            payment_id=payment,
            outcome="MISMATCH",
            reason="amount",
            amount=4_000,
            currency="XOF",
            correlation_id="case-review-1",
        )
    [event] = await recon.outbox()
    assert (event.type, event.aggregate_type, event.aggregate_id) == (
        "reconciliation.mismatch_confirmed",
        "payment",
        str(payment),
    )
    assert event.correlation_id == "case-review-1"
    assert dict(event.payload) == {
        "case_id": str(case),
        "payment_id": str(payment),
        "outcome": "MISMATCH",
        "reason": "amount",
        "amount": 4_000,
        "currency": "XOF",
    }

    refused: list[tuple[dict[str, Any], str]] = [
        ({"outcome": "MATCHED"}, "outcome"),
        ({"reason": "Amount differs"}, "reason"),
        ({"amount": 0}, "amount"),
        ({"currency": "xof"}, "currency"),
    ]
    for change, field in refused:
        values: dict[str, Any] = {"outcome": "MISMATCH", "reason": None, "amount": None, "currency": None, **change}
        with pytest.raises(ValueError, match=field):
            async with feed.engine.begin() as conn:
                await recon.outcomes.record_mismatch_confirmed(conn, case_id=case, payment_id=payment, **values)
    assert len(await recon.outbox()) == 1

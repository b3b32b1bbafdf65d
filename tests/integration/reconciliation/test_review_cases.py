"""The review queue on the reconciliation database (SQLite and PostgreSQL): cases opened by a
real match run of a simulator-rendered MoMo report against Kora's side fed by real producer
events; re-runs, the automatic late-success rule, maker-checker, posting corrections, and the
audit chain.

The core is an in-test object implementing the ``CorePayments`` port (the real HTTP adapter is
another branch's); the mismatch recorder writes to a list (the real one is the outbox writer)."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncConnection

from kora.kernel import FixedClock
from kora.payments.domain.model import Payment, PaymentType
from kora.reconciliation.adapters.case_store import SqlAuditTrail, approved_not_posted, insert_case
from kora.reconciliation.adapters.core_client import CoreAuthRefused, CoreRefused
from kora.reconciliation.adapters.crypto import AesGcmReportCipher
from kora.reconciliation.adapters.sql import SqlReportStore
from kora.reconciliation.adapters.tables import recon_audit, recon_cases, recon_payments
from kora.reconciliation.domain.cases import (
    ADMIN,
    APPROVER,
    CLOSED_BY_REMATCH,
    REVIEWER,
    InvalidNote,
    InvalidProposal,
    InvalidTransition,
    NotAllowed,
    Proposal,
    ProposalKind,
    SameAsProposer,
)
from kora.reconciliation.domain.rules import MatchRules
from kora.reconciliation.service.case_hook import CaseOpener
from kora.reconciliation.service.case_metrics import CaseMetrics
from kora.reconciliation.service.cases import Actor, CaseService
from kora.reconciliation.service.importing import ReportImports
from kora.reconciliation.service.late_success import LateSuccessQueries
from kora.reconciliation.service.match_run import run_match
from kora.reconciliation.service.ports import CorePayment, Correction, PostedCorrection
from kora.simulator.behaviour import Scenario
from kora.simulator.config import ApiStyle
from kora.simulator.reports import render_report
from tests.integration.reconciliation.test_recon_feed import Feed, feed, lifecycle, provider_payment
from tests.unit.reconciliation.factories import AS_OF, DAY, START, Simulation

__all__ = ["feed"]

RUN_AT = START + timedelta(days=3, hours=1)
RULES = MatchRules(fallback_window=None)
REVIEWER_1 = Actor("user-rev-1", frozenset({REVIEWER}))
APPROVER_1 = Actor("user-app-1", frozenset({APPROVER}))
BOTH = Actor("user-both-1", frozenset({REVIEWER, APPROVER}))


class CoreDown(Exception):
    pass


@dataclass
class InTestCore:
    """The core as the service reaches it: payments it knows, a provider query that may turn a
    payment into a late success (by publishing its events, as the core does), corrections
    posted once per case id (a retry replays)."""

    feed: Feed
    known: dict[str, CorePayment] = field(default_factory=dict)
    late: dict[str, tuple[Payment, str]] = field(default_factory=dict)  # payment id -> (payment, provider ref)
    queries: list[str] = field(default_factory=list)
    post_calls: int = 0
    fail_posts: int = 0
    lose_answers: int = 0
    posted: dict[uuid.UUID, Correction] = field(default_factory=dict)
    attempts: list[Correction] = field(default_factory=list)
    refuse: Exception | None = None  # the core's answer for good (a 4xx), as the HTTP adapter raises it

    async def payment(self, payment_id: str) -> CorePayment | None:
        return self.known.get(payment_id)

    async def query_provider(self, payment_id: str) -> CorePayment | None:
        self.queries.append(payment_id)
        if payment_id in self.late:
            payment, ref = self.late.pop(payment_id)
            await self.feed.publish(*lifecycle(self.feed, payment, provider_ref=ref))
            await self.feed.drain()
            self.known[payment_id] = CorePayment(
                payment_id, payment.type.value, "CAPTURED", payment.money.amount, "XOF", "momo", ref
            )
        return self.known.get(payment_id)

    async def post_correction(self, correction: Correction) -> PostedCorrection:
        self.post_calls += 1
        self.attempts.append(correction)
        if self.refuse is not None:
            raise self.refuse
        if self.fail_posts:
            self.fail_posts -= 1
            raise CoreDown("core unavailable")
        replayed = correction.case_id in self.posted
        self.posted.setdefault(correction.case_id, correction)
        if self.lose_answers:  # posted, but the answer never reaches the service
            self.lose_answers -= 1
            raise CoreDown("connection reset")
        return PostedCorrection(correction.case_id, f"txn-{correction.case_id.hex[:8]}", replayed)


@dataclass
class Review:
    feed: Feed
    core: InTestCore
    clock: FixedClock
    audit: SqlAuditTrail
    service: CaseService
    opener: CaseOpener
    metrics: CaseMetrics
    mismatches: list[dict[str, Any]]

    async def match(self, report_id: uuid.UUID) -> dict[str, int]:
        return await run_match(
            self.feed.engine, report_id, rules=RULES, as_of=AS_OF, clock=self.clock, hooks=[self.opener.open_cases]
        )

    async def cases(self) -> list[dict[str, Any]]:
        async with self.feed.engine.connect() as conn:
            query = sa.select(recon_cases).order_by(recon_cases.c.subject)
            return [dict(r._mapping) for r in await conn.execute(query)]

    async def audit_count(self) -> int:
        async with self.feed.engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(recon_audit))).scalar_one())

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@pytest.fixture
async def review(feed: Feed) -> Review:
    clock = FixedClock(RUN_AT)
    audit = SqlAuditTrail(secrets.token_bytes(32))
    metrics = CaseMetrics(CollectorRegistry())
    core = InTestCore(feed)
    mismatches: list[dict[str, Any]] = []

    async def record(conn: AsyncConnection, **event: Any) -> None:
        assert conn.in_transaction()  # written in the approval's transaction
        mismatches.append(event)

    service = CaseService(feed.engine, audit=audit, core=core, record_mismatch=record, clock=clock, metrics=metrics)
    return Review(feed, core, clock, audit, service, CaseOpener(audit, metrics=metrics), metrics, mismatches)


@dataclass
class Scene:
    report_id: uuid.UUID
    short_case: uuid.UUID  # MISMATCH amount: people
    late_case: uuid.UUID  # MISSING_INTERNAL, query_status: automatic
    late_payment: Payment
    late_ref: str


async def _scene(review: Review) -> Scene:
    """A MoMo report of three payments: one Kora has as the provider does, one Kora has for
    4_500 instead of 4_000, one Kora has not heard of yet (a late success)."""
    sim = Simulation()
    matched_op = sim.mobile("momo", "collection", 10_000, Scenario.SUCCEED)
    short_op = sim.mobile("momo", "collection", 4_000, Scenario.SUCCEED)
    late_op = sim.mobile("momo", "disbursement", 2_500, Scenario.SUCCEED)
    report = render_report(ApiStyle.MOMO, sim.state.ledger.of_provider("momo"), DAY).encode()
    feed = review.feed
    matched = provider_payment(provider="momo", amount=10_000, payment_id=uuid.UUID(matched_op.external_id))
    short = provider_payment(provider="momo", amount=4_500, payment_id=uuid.UUID(short_op.external_id))
    envelopes = [
        *lifecycle(feed, matched, provider_ref=matched_op.id),
        *lifecycle(feed, short, provider_ref=short_op.id),
    ]
    await feed.publish(*envelopes)
    await feed.drain()
    late = provider_payment(
        provider="momo", amount=2_500, payment_id=uuid.UUID(late_op.external_id), kind=PaymentType.CASH_OUT
    )
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    imports = ReportImports(SqlReportStore(feed.engine), AesGcmReportCipher.from_setting(key), FixedClock(START))
    report_id = (await imports.import_report("momo", report, filename="momo.csv", actor="ops-1")).report_id

    counts = await review.match(report_id)
    assert counts == {"MATCHED": 1, "MISMATCH": 1, "MISSING_INTERNAL": 1, "MISSING_PROVIDER": 0, "PENDING": 0}
    by_outcome = {c["outcome"]: c for c in await review.cases()}
    assert set(by_outcome) == {"MISMATCH", "MISSING_INTERNAL"}  # the MATCHED line is no case
    return Scene(report_id, by_outcome["MISMATCH"]["id"], by_outcome["MISSING_INTERNAL"]["id"], late, late_op.id)


async def test_a_match_run_opens_cases_with_evidence_and_a_rerun_changes_nothing(review: Review) -> None:
    scene = await _scene(review)
    cases = {c["id"]: c for c in await review.cases()}
    short, late = cases[scene.short_case], cases[scene.late_case]
    assert (short["status"], short["reason"], short["amount"], short["currency"]) == ("open", "amount", 4_000, "XOF")
    assert short["payment_id"] is not None
    assert short["line_number"] is not None
    assert short["opened_at"] == RUN_AT
    evidence = json.loads(short["evidence"])
    assert evidence["line"]["amount"] == 4_000
    assert evidence["kora"]["amount"] == 4_500
    assert evidence["kora"]["payment_id"] == short["payment_id"]
    assert not {"raw", "msisdn", "phone"} & set(evidence["line"])
    # The late success is the automatic rule's: out of the review queue.
    assert (late["status"], late["auto_resolution"], late["payment_id"]) == ("awaiting_core", "query_status", None)
    assert json.loads(late["evidence"])["line"]["our_reference"] == str(scene.late_payment.id)
    assert review.metric("kora_recon_review_queue_size", provider="momo") == 0  # not refreshed yet
    page = await review.service.list(REVIEWER_1, queue=True)
    assert [c.id for c in page.cases] == [scene.short_case]
    assert page.total == 1
    assert review.metric("kora_recon_review_queue_size", provider="momo") == 1
    assert review.metric("kora_recon_cases_opened_total", provider="momo", outcome="MISMATCH", handling="manual") == 1

    records = await review.audit_count()
    assert records == 2  # one case.open each
    again = await review.match(scene.report_id)
    assert again["MISMATCH"] == 1
    after = await review.cases()
    assert [(c["id"], c["status"]) for c in after] == [(c["id"], c["status"]) for c in cases.values()]
    assert after[0]["last_run_at"] == RUN_AT
    assert await review.audit_count() == records  # nothing changed, nothing recorded


async def test_a_late_success_is_settled_by_the_core_and_closed_by_the_next_run(review: Review) -> None:
    scene = await _scene(review)
    review.core.late[str(scene.late_payment.id)] = (scene.late_payment, scene.late_ref)
    jobs = LateSuccessQueries(
        review.feed.engine,
        review.core,
        audit=review.audit,
        clock=review.clock,
        escalate_after=timedelta(hours=24),
        metrics=review.metrics,
    )
    assert await jobs.run_once() == {"pending": 0, "confirmed": 1, "escalated": 0, "error": 0}
    assert review.core.queries == [str(scene.late_payment.id)]
    cases = {c["id"]: c for c in await review.cases()}
    assert (cases[scene.late_case]["status"], cases[scene.late_case]["core_status"]) == ("awaiting_core", "CAPTURED")

    counts = await review.match(scene.report_id)  # the core's events reached recon_payments
    assert (counts["MATCHED"], counts["MISSING_INTERNAL"]) == (2, 0)
    closed = {c["id"]: c for c in await review.cases()}[scene.late_case]
    assert (closed["status"], closed["close_reason"]) == ("closed", CLOSED_BY_REMATCH)
    assert review.metric("kora_recon_cases_closed_by_rematch_total", provider="momo") == 1
    detail = await review.service.show(APPROVER_1, scene.late_case)
    assert [h["action"] for h in detail.history] == ["case.open", "case.query_core", "case.close"]
    assert detail.history[-1]["actor"] == "system"


async def test_what_the_core_cannot_settle_in_time_goes_to_people(review: Review) -> None:
    scene = await _scene(review)
    jobs = LateSuccessQueries(
        review.feed.engine, review.core, audit=review.audit, clock=review.clock, escalate_after=timedelta(hours=24)
    )
    review.core.known[str(scene.late_payment.id)] = CorePayment(
        str(scene.late_payment.id), "cash_out", "INITIATED", 2_500, "XOF", "momo", None
    )
    assert (await jobs.run_once())["pending"] == 1
    review.clock.advance(timedelta(hours=25))
    assert (await jobs.run_once())["escalated"] == 1
    late = {c["id"]: c for c in await review.cases()}[scene.late_case]
    assert late["status"] == "open"
    page = await review.service.list(REVIEWER_1, queue=True)
    assert {c.id for c in page.cases} == {scene.short_case, scene.late_case}
    assert review.core.queries == [str(scene.late_payment.id)]  # not asked again once escalated
    # A rematch that still finds it leaves it with people (no flapping back to automatic).
    await review.match(scene.report_id)
    assert {c["id"]: c for c in await review.cases()}[scene.late_case]["status"] == "open"


async def test_a_case_the_core_does_not_know_is_escalated_at_once(review: Review) -> None:
    scene = await _scene(review)
    jobs = LateSuccessQueries(
        review.feed.engine, review.core, audit=review.audit, clock=review.clock, escalate_after=timedelta(hours=24)
    )
    assert (await jobs.run_once())["escalated"] == 1
    assert {c["id"]: c for c in await review.cases()}[scene.late_case]["status"] == "open"


async def test_maker_checker_one_person_cannot_propose_and_approve(review: Review) -> None:
    scene = await _scene(review)
    service = review.service
    with pytest.raises(NotAllowed):
        await service.propose(APPROVER_1, scene.short_case, Proposal(ProposalKind.CONFIRM_MISMATCH, "short by 500"))
    await service.take(BOTH, scene.short_case)
    await service.comment(BOTH, scene.short_case, "the provider paid 4000, we booked 4500")
    with pytest.raises(InvalidNote):
        await service.comment(BOTH, scene.short_case, "customer +225 07 00 00 00 called")
    proposed = await service.propose(BOTH, scene.short_case, Proposal(ProposalKind.CONFIRM_MISMATCH, "short by 500"))
    assert (proposed.status, proposed.proposed_by) == ("proposed", BOTH.user_id)
    records = await review.audit_count()

    with pytest.raises(SameAsProposer):
        await service.approve(BOTH, scene.short_case)  # holds the approver role, but proposed it
    with pytest.raises(NotAllowed):
        await service.approve(REVIEWER_1, scene.short_case)  # a reviewer cannot approve
    with pytest.raises(NotAllowed):
        await service.approve(Actor("user-admin", frozenset({ADMIN})), scene.short_case)  # admin reads only
    unchanged = {c["id"]: c for c in await review.cases()}[scene.short_case]
    assert (unchanged["status"], unchanged["decided_by"]) == ("proposed", None)
    assert await review.audit_count() == records
    assert review.mismatches == []
    assert review.metric("kora_recon_maker_checker_refusals_total", reason="maker_checker") == 1
    assert review.metric("kora_recon_maker_checker_refusals_total", reason="role_not_allowed") == 3

    approved = await service.approve(APPROVER_1, scene.short_case)
    assert (approved.status, approved.decided_by) == ("resolved", APPROVER_1.user_id)
    (event,) = review.mismatches
    assert event["case_id"] == scene.short_case
    assert event["payment_id"] == approved.payment_id
    assert (event["outcome"], event["reason"], event["amount"], event["currency"]) == (
        "MISMATCH",
        "amount",
        4_000,
        "XOF",
    )
    assert event["correlation_id"]
    with pytest.raises(InvalidTransition):
        await service.approve(APPROVER_1, scene.short_case)
    history = (await service.show(REVIEWER_1, scene.short_case)).history
    assert [(h["action"], h["actor"], h["role"], h["before"], h["after"]) for h in history[1:]] == [
        ("case.take", BOTH.user_id, REVIEWER, "open", "investigating"),
        ("case.comment", BOTH.user_id, REVIEWER, "investigating", "investigating"),
        ("case.propose", BOTH.user_id, REVIEWER, "investigating", "proposed"),
        ("case.approve", APPROVER_1.user_id, APPROVER, "proposed", "resolved"),
    ]
    assert review.metric("kora_recon_case_actions_total", action="case.approve") == 1


async def test_a_rejected_proposal_goes_back_to_the_reviewers(review: Review) -> None:
    scene = await _scene(review)
    service = review.service
    await service.propose(REVIEWER_1, scene.short_case, Proposal(ProposalKind.NO_ACTION, "rounding"))
    with pytest.raises(SameAsProposer):
        await service.reject(Actor(REVIEWER_1.user_id, frozenset({REVIEWER, APPROVER})), scene.short_case, "no")
    rejected = await service.reject(APPROVER_1, scene.short_case, "500 is not rounding")
    assert rejected.status == "rejected"
    assert (await service.show(REVIEWER_1, scene.short_case)).comments[-1]["body"] == "500 is not rounding"
    await service.propose(REVIEWER_1, scene.short_case, Proposal(ProposalKind.ACCEPT_PROVIDER, "provider is right"))
    closed = await service.approve(APPROVER_1, scene.short_case)
    assert closed.status == "closed"
    assert closed.close_reason == "accept_provider: provider is right"
    # People closed it: a later run that still finds the mismatch does not reopen it.
    await review.match(scene.report_id)
    assert {c["id"]: c for c in await review.cases()}[scene.short_case]["status"] == "closed"


async def test_a_correction_posts_once_and_a_failed_post_stays_retryable(review: Review) -> None:
    scene = await _scene(review)
    service, core = review.service, review.core
    with pytest.raises(InvalidProposal):
        await service.propose(REVIEWER_1, scene.short_case, Proposal(ProposalKind.WRITE_OFF, "x", 500, "EUR"))
    with pytest.raises(InvalidTransition):  # the automatic rule has it: not people's yet
        await service.propose(REVIEWER_1, scene.late_case, Proposal(ProposalKind.NO_ACTION, "wait"))
    await service.propose(REVIEWER_1, scene.short_case, Proposal(ProposalKind.WRITE_OFF, "gap to suspense", 500))

    core.fail_posts = 1
    approved = await service.approve(APPROVER_1, scene.short_case)
    assert (approved.status, approved.posting_attempts) == ("approved", 1)
    assert approved.posting_error is not None
    assert "CoreDown" in approved.posting_error
    assert core.posted == {}
    page = await service.list(APPROVER_1, queue=True)
    assert scene.short_case in {c.id for c in page.cases}  # approved-not-posted stays in the queue

    with pytest.raises(NotAllowed):
        await service.retry_posting(REVIEWER_1, scene.short_case)
    core.lose_answers = 1  # the core posts, the answer is lost
    still = await service.retry_posting(APPROVER_1, scene.short_case)
    assert still.status == "approved"
    assert len(core.posted) == 1
    posted = await service.retry_posting(APPROVER_1, scene.short_case)  # the core replays
    assert (posted.status, posted.posted_transaction_id) == ("resolved", f"txn-{scene.short_case.hex[:8]}")
    assert posted.posting_error is None
    assert posted.posting_attempts == 3
    (correction,) = core.posted.values()
    assert (correction.kind, correction.amount, correction.currency) == ("write_off", 500, "XOF")
    assert (correction.proposed_by, correction.approved_by) == (REVIEWER_1.user_id, APPROVER_1.user_id)
    assert core.post_calls == 3
    with pytest.raises(InvalidTransition):
        await service.retry_posting(APPROVER_1, scene.short_case)
    assert await service.retry_all_postings() == 0
    assert core.post_calls == 3
    assert review.metric("kora_recon_correction_postings_total", result="failed") == 2
    assert review.metric("kora_recon_correction_postings_total", result="replayed") == 1


async def test_the_audit_chain_verifies_and_catches_tampering(review: Review) -> None:
    scene = await _scene(review)
    await review.service.propose(REVIEWER_1, scene.short_case, Proposal(ProposalKind.NO_ACTION, "fine"))
    await review.service.approve(APPROVER_1, scene.short_case)
    report = await review.audit.verify(review.feed.engine)
    assert report.ok
    assert report.records == 4
    assert report.head_position == 4

    async with review.feed.engine.begin() as conn:
        await conn.execute(
            sa.update(recon_audit).where(recon_audit.c.position == 3).values(actor=REVIEWER_1.user_id + "x")
        )
    tampered = await review.audit.verify(review.feed.engine)
    assert not tampered.ok
    assert [p for p, _ in tampered.broken] == [3]

    async with review.feed.engine.begin() as conn:
        await conn.execute(sa.update(recon_audit).where(recon_audit.c.position == 3).values(actor=REVIEWER_1.user_id))
        await conn.execute(sa.delete(recon_audit).where(recon_audit.c.position == 4))
    truncated = await review.audit.verify(review.feed.engine)
    assert not truncated.ok
    assert "head says 4" in truncated.broken[-1][1]
    assert not (await SqlAuditTrail(secrets.token_bytes(32)).verify(review.feed.engine)).ok  # another key


async def test_reading_needs_a_review_role_and_unknown_cases_are_refused(review: Review) -> None:
    scene = await _scene(review)
    with pytest.raises(NotAllowed):
        await review.service.list(Actor("user-9", frozenset({"customer"})))
    with pytest.raises(NotAllowed):
        await review.service.show(Actor("user-9", frozenset()), scene.short_case)
    admin = Actor("user-admin", frozenset({ADMIN}))
    page = await review.service.list(admin, provider="momo", outcome="MISMATCH", limit=1)
    assert [c.id for c in page.cases] == [scene.short_case]
    assert page.total == 1
    assert (await review.service.list(admin, statuses=frozenset({"awaiting_core"}))).total == 1
    assert (await review.service.list(admin, offset=1, limit=1)).total == 2
    from kora.reconciliation.domain.cases import CaseNotFound

    with pytest.raises(CaseNotFound):
        await review.service.take(REVIEWER_1, uuid.uuid4())


async def test_concurrent_actions_keep_one_chain_and_concurrent_retries_post_once(review: Review) -> None:
    import asyncio

    scene = await _scene(review)
    service, core = review.service, review.core
    # Concurrent comments from several reviewers: each append takes the head in turn.
    notes = [
        service.comment(Actor(f"user-rev-{i}", frozenset({REVIEWER})), scene.short_case, f"look {i}") for i in range(6)
    ]
    await asyncio.gather(*notes)
    report = await review.audit.verify(review.feed.engine)
    assert report.ok
    assert report.records == 2 + 6

    await service.propose(REVIEWER_1, scene.short_case, Proposal(ProposalKind.MANUAL_CREDIT, "credit the wallet", 500))
    core.fail_posts = 1
    assert (await service.approve(APPROVER_1, scene.short_case)).status == "approved"
    retries = await asyncio.gather(
        *(service.retry_posting(APPROVER_1, scene.short_case) for _ in range(3)), return_exceptions=True
    )
    statuses = [type(r).__name__ if isinstance(r, BaseException) else r.status for r in retries]
    assert set(statuses) <= {"resolved", "InvalidTransition"}
    assert "resolved" in statuses
    assert len(core.posted) == 1
    history = (await service.show(APPROVER_1, scene.short_case)).history
    assert [h["action"] for h in history].count("case.post") == 1
    assert (await review.audit.verify(review.feed.engine)).ok


async def test_a_case_closed_by_rematch_is_reopened_when_the_discrepancy_comes_back(review: Review) -> None:
    scene = await _scene(review)
    unlisted = provider_payment(provider="momo", amount=7_000)
    await review.feed.publish(*lifecycle(review.feed, unlisted, provider_ref="M-UNLISTED"))
    await review.feed.drain()
    hooks = [review.opener.open_cases]

    async def run(as_of: Any) -> dict[str, int]:
        return await run_match(
            review.feed.engine, scene.report_id, rules=RULES, as_of=as_of, clock=review.clock, hooks=hooks
        )

    assert (await run(AS_OF))["MISSING_PROVIDER"] == 1
    (case,) = [c for c in await review.cases() if c["subject"] == f"payment:{unlisted.id}"]
    assert (case["status"], case["line_number"], case["amount"]) == ("open", None, 7_000)
    assert (await run(START + timedelta(hours=2)))["PENDING"] == 1  # not due as of then: no discrepancy
    closed = {c["id"]: c for c in await review.cases()}[case["id"]]
    assert (closed["status"], closed["close_reason"]) == ("closed", CLOSED_BY_REMATCH)
    review.clock.advance(timedelta(hours=1))
    await run(AS_OF)
    reopened = {c["id"]: c for c in await review.cases()}[case["id"]]
    assert (reopened["status"], reopened["close_reason"], reopened["opened_at"]) == ("open", None, review.clock.now())
    assert len(await review.cases()) == 3  # the same case, not a new one
    history = (await review.service.show(REVIEWER_1, case["id"])).history
    assert [h["action"] for h in history] == ["case.open", "case.close", "case.reopen"]


async def _kora_amount(review: Review, payment_id: str, amount: int) -> None:
    """Kora's side of a payment now says ``amount`` (as a later fold of the core's events would)."""
    async with review.feed.engine.begin() as conn:
        await conn.execute(
            sa.update(recon_payments)
            .where(recon_payments.c.payment_id == payment_id)
            .values(amount=amount, captured_amount=amount)
        )


async def _history(review: Review, case_id: uuid.UUID) -> list[dict[str, Any]]:
    return (await review.service.show(REVIEWER_1, case_id)).history


async def test_money_needs_an_explicit_amount_and_the_evidence_shows_the_gap(review: Review) -> None:
    scene = await _scene(review)
    case = {c["id"]: c for c in await review.cases()}[scene.short_case]
    # The provider reports 4_000, Kora booked 4_500: the gap, not the line's 4_000, is what is in question.
    assert json.loads(case["evidence"])["gap"] == {"amount": -500, "currency": "XOF"}
    for kind in (ProposalKind.WRITE_OFF, ProposalKind.MANUAL_CREDIT, ProposalKind.MANUAL_DEBIT):
        with pytest.raises(InvalidProposal, match="give the amount"):
            await review.service.propose(REVIEWER_1, scene.short_case, Proposal(kind, "no amount given"))
    unchanged = {c["id"]: c for c in await review.cases()}[scene.short_case]
    assert (unchanged["status"], unchanged["proposal_kind"]) == ("open", None)
    proposed = await review.service.propose(
        REVIEWER_1, scene.short_case, Proposal(ProposalKind.WRITE_OFF, "the gap", 500)
    )
    assert (proposed.proposal_amount, proposed.proposal_payment_id) == (500, case["payment_id"])


async def test_a_rerun_that_moves_a_proposals_facts_withdraws_it(review: Review) -> None:
    scene = await _scene(review)
    service = review.service
    payment_id = {c["id"]: c for c in await review.cases()}[scene.short_case]["payment_id"]
    await service.propose(REVIEWER_1, scene.short_case, Proposal(ProposalKind.WRITE_OFF, "the gap", 500))
    await review.match(scene.report_id)  # the same facts: the proposal stands
    assert {c["id"]: c for c in await review.cases()}[scene.short_case]["status"] == "proposed"

    await _kora_amount(review, payment_id, 4_700)  # the gap is now 700, not the 500 proposed
    await review.match(scene.report_id)
    case = {c["id"]: c for c in await review.cases()}[scene.short_case]
    assert (case["status"], case["proposal_kind"], case["proposal_amount"], case["proposed_by"]) == (
        "investigating",
        None,
        None,
        None,
    )
    assert json.loads(case["evidence"])["gap"]["amount"] == -700
    last = (await _history(review, scene.short_case))[-1]
    assert (last["action"], last["actor"], last["before"], last["after"]) == (
        "case.withdraw",
        "system",
        "proposed",
        "investigating",
    )
    assert last["details"]["moved"] == "gap"
    assert (last["details"]["withdrawn_kind"], last["details"]["withdrawn_amount"]) == ("write_off", 500)
    assert review.metric("kora_recon_proposals_withdrawn_total", provider="momo") == 1
    with pytest.raises(InvalidTransition):  # nothing left to approve
        await service.approve(APPROVER_1, scene.short_case)

    # A proposal made when the run named another payment for the line is withdrawn too.
    await service.propose(REVIEWER_1, scene.short_case, Proposal(ProposalKind.WRITE_OFF, "the gap", 700))
    async with review.feed.engine.begin() as conn:
        await conn.execute(
            sa.update(recon_cases)
            .where(recon_cases.c.id == scene.short_case)
            .values(payment_id="p-named-before", proposal_payment_id="p-named-before")
        )
    await review.match(scene.report_id)
    case = {c["id"]: c for c in await review.cases()}[scene.short_case]
    assert (case["status"], case["payment_id"], case["proposal_payment_id"]) == ("investigating", payment_id, None)
    assert (await _history(review, scene.short_case))[-1]["details"]["moved"] == "payment_id"
    assert review.core.attempts == []


async def test_an_approved_case_keeps_its_facts_and_posts_exactly_what_was_approved(review: Review) -> None:
    scene = await _scene(review)
    service, core = review.service, review.core
    before = {c["id"]: c for c in await review.cases()}[scene.short_case]
    await service.propose(REVIEWER_1, scene.short_case, Proposal(ProposalKind.WRITE_OFF, "the gap", 500))
    core.fail_posts = 1
    assert (await service.approve(APPROVER_1, scene.short_case)).status == "approved"

    await _kora_amount(review, before["payment_id"], 4_700)
    await review.match(scene.report_id)
    await review.match(scene.report_id)  # recorded once, not on every run
    case = {c["id"]: c for c in await review.cases()}[scene.short_case]
    assert (case["status"], case["amount"], case["evidence"], case["payment_id"]) == (
        "approved",
        before["amount"],
        before["evidence"],
        before["payment_id"],
    )
    moved = [h for h in await _history(review, scene.short_case) if h["action"] == "case.facts_moved"]
    assert len(moved) == 1
    assert (moved[0]["before"], moved[0]["after"], moved[0]["details"]["now_gap"]) == ("approved", "approved", -700)

    # Even if the case's payment were rewritten, the approval posts to the payment it was made for.
    async with review.feed.engine.begin() as conn:
        await conn.execute(
            sa.update(recon_cases).where(recon_cases.c.id == scene.short_case).values(payment_id="p-rewritten")
        )
    posted = await service.retry_posting(APPROVER_1, scene.short_case)
    assert posted.status == "resolved"
    assert [(c.payment_id, c.amount) for c in core.attempts] == [(before["payment_id"], 500)] * 2


@pytest.mark.parametrize(
    "refusal",
    [
        CoreRefused("payment_not_captured", "a write-off needs a captured payment", status=409),
        CoreAuthRefused("forbidden", "scope not granted", status=403),
    ],
)
async def test_a_correction_the_core_refuses_for_good_goes_back_to_people(review: Review, refusal: Exception) -> None:
    scene = await _scene(review)
    service, core = review.service, review.core
    note = "the gap:\nprovider short\tby 500  \r\n see ticket"
    await service.propose(REVIEWER_1, scene.short_case, Proposal(ProposalKind.WRITE_OFF, note, 500))
    core.refuse = refusal
    refused = await service.approve(APPROVER_1, scene.short_case)
    assert refused.status == "investigating"
    assert refused.posting_error == f"refused by the core: {refusal.code}"  # type: ignore[attr-defined]
    (sent,) = core.attempts
    assert sent.reason == "recon case write_off: the gap: provider short by 500 see ticket"
    assert sent.reason.isprintable()
    last = (await _history(review, scene.short_case))[-1]
    assert (last["action"], last["before"], last["after"], last["details"]["code"]) == (
        "case.post_refused",
        "approved",
        "investigating",
        refusal.code,  # type: ignore[attr-defined]
    )
    assert review.metric("kora_recon_correction_postings_total", result="refused") == 1
    assert scene.short_case in {c.id for c in (await service.list(REVIEWER_1, queue=True)).cases}
    assert await service.retry_all_postings() == 0  # not retried for ever: nothing approved is left
    assert core.post_calls == 1

    # People take it from there: a new proposal, a new approval.
    core.refuse = None
    await service.propose(REVIEWER_1, scene.short_case, Proposal(ProposalKind.MANUAL_DEBIT, "debit instead", 500))
    assert (await service.approve(APPROVER_1, scene.short_case)).status == "resolved"


async def test_retries_go_by_last_attempt_so_failing_ones_do_not_starve_the_rest(review: Review) -> None:
    scene = await _scene(review)
    payment_id = {c["id"]: c for c in await review.cases()}[scene.short_case]["payment_id"]
    ids = [uuid.uuid4(), uuid.uuid4()]
    async with review.feed.engine.begin() as conn:
        for n, case_id in enumerate(ids):
            await insert_case(
                conn,
                {
                    "id": case_id,
                    "provider": "momo",
                    "report_id": scene.report_id,
                    "subject": f"line:{900 + n}",
                    "line_number": 900 + n,
                    "payment_id": payment_id,
                    "outcome": "MISMATCH",
                    "reason": "amount",
                    "auto_resolution": "none",
                    "amount": 100,
                    "currency": "XOF",
                    "evidence": "{}",
                    "status": "approved",
                    "opened_at": RUN_AT,
                    "updated_at": RUN_AT,
                    "last_run_at": RUN_AT,
                    "proposal_kind": "manual_credit",
                    "proposal_amount": 100,
                    "proposal_currency": "XOF",
                    "proposal_note": "x",
                    "proposal_payment_id": payment_id,
                    "proposed_by": REVIEWER_1.user_id,
                    "decided_by": APPROVER_1.user_id,
                    "decided_at": RUN_AT - timedelta(hours=2 - n),  # the first approved first
                },
            )
    review.core.fail_posts = 10  # the core is down for a while
    tried = []
    for _ in range(3):
        review.clock.advance(timedelta(minutes=5))
        assert await review.service.retry_all_postings(limit=1) == 0
        tried.append(review.core.attempts[-1].case_id)
    assert tried == [ids[0], ids[1], ids[0]]  # each in turn, not the oldest for ever
    async with review.feed.engine.connect() as conn:
        assert await approved_not_posted(conn, limit=2) == [ids[1], ids[0]]

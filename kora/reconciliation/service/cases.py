"""The review queue's use cases: list, show, take, comment, propose, approve, reject and retry
a posting, with the roles checked here (the principal is passed in) and maker-checker enforced.

Each action runs in one transaction that also appends its audit record; a refused action
changes nothing. A money-moving approval commits first, then posts the correction through the
core outside any transaction (never call out with a transaction open), to the payment and for
the amount the proposal was made for; if the core fails for a passing reason (unreachable, 5xx),
the case stays ``approved`` with the error recorded, and a retry posts it (the core is idempotent
by case id, so a retry after a lost answer replays, it does not post twice). If the core refuses
it for good (a 4xx), the case goes back to people (``investigating``) with the core's code."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from loguru import logger
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kora.kernel import Clock
from kora.observability import correlation_scope, get_correlation_id, get_tracer
from kora.reconciliation.adapters import case_store as store
from kora.reconciliation.adapters.case_store import CaseFilter, SqlAuditTrail
from kora.reconciliation.domain.cases import (
    APPROVER,
    READERS,
    REVIEWER,
    SYSTEM,
    Action,
    CaseError,
    CaseNotFound,
    CaseStatus,
    InvalidTransition,
    NotAllowed,
    Proposal,
    ProposalKind,
    SameAsProposer,
    after_approval,
    check_checker,
    check_note,
    check_proposal,
    check_role,
    next_status,
)
from kora.reconciliation.service.case_metrics import CaseMetrics
from kora.reconciliation.service.case_types import (
    Actor,
    Case,
    CaseDetail,
    CasePage,
    MismatchRecorder,
    Principal,
    case_from_row,
)
from kora.reconciliation.service.ports import CorePayments, Correction, CorrectionRefused

__all__ = ["MAX_PAGE", "Actor", "Case", "CaseDetail", "CasePage", "CaseService", "MismatchRecorder", "Principal"]

_tracer = get_tracer("kora.reconciliation")
MAX_PAGE = 200
QUEUE_STATUSES = frozenset(s.value for s in CaseStatus if s.needs_people)


def correction_reason(kind: str, note: str) -> str:
    """The reason sent to the core with a correction: one printable line of at most 200
    characters (the core requires ``reason.isprintable()``; a note may hold newlines or tabs)."""
    text = " ".join(f"recon case {kind}: {note}".split())
    return "".join(ch for ch in text if ch.isprintable())[:200]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CaseService:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        audit: SqlAuditTrail,
        core: CorePayments,
        record_mismatch: MismatchRecorder,
        clock: Clock,
        metrics: CaseMetrics | None = None,
    ) -> None:
        self._engine = engine
        self._audit = audit
        self._core = core
        self._record_mismatch = record_mismatch
        self._clock = clock
        self._metrics = metrics

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    # reading ------------------------------------------------------------------------------
    async def list(
        self,
        principal: Principal,
        *,
        statuses: frozenset[str] = frozenset(),
        queue: bool = False,
        provider: str | None = None,
        outcome: str | None = None,
        report_id: uuid.UUID | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> CasePage:
        """Cases, oldest first; ``queue`` keeps those waiting for people. Readers: reviewers,
        approvers, admins."""
        self._check_reader(principal)
        unknown = statuses - {s.value for s in CaseStatus}
        if unknown:
            raise CaseError(f"unknown status {sorted(unknown)[0]!r}")
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise CaseError(f"limit is 1..{MAX_PAGE}, offset >= 0")
        wanted = (statuses & QUEUE_STATUSES if statuses else QUEUE_STATUSES) if queue else statuses
        where = CaseFilter(frozenset(wanted), provider, outcome, report_id)
        async with self._engine.connect() as conn:
            rows, total = await store.find_cases(conn, where, limit=limit, offset=offset)
        await self.refresh_queue_metrics()
        return CasePage([case_from_row(row) for row in rows], total, limit, offset)

    async def show(self, principal: Principal, case_id: uuid.UUID) -> CaseDetail:
        """A case with its evidence, comments and history (its audit records)."""
        self._check_reader(principal)
        async with self._engine.connect() as conn:
            row = await store.get_case(conn, case_id)
            if row is None:
                raise CaseNotFound(str(case_id))
            comments = await store.comments_of(conn, case_id)
            history = await store.audit_of(conn, case_id)
        return CaseDetail(
            case_from_row(row),
            json.loads(row["evidence"]),
            [
                {"author": c["author"], "role": c["role"], "body": c["body"], "at": c["created_at"].isoformat()}
                for c in comments
            ],
            [
                {
                    "position": h["position"],
                    "at": h["occurred_at"].isoformat(),
                    "actor": h["actor"],
                    "role": h["role"],
                    "action": h["action"],
                    "before": h["status_before"],
                    "after": h["status_after"],
                    "details": json.loads(h["details"]),
                }
                for h in history
            ],
        )

    # people's actions ---------------------------------------------------------------------
    async def take(self, principal: Principal, case_id: uuid.UUID) -> Case:
        """A reviewer starts investigating an open (or rejected) case."""
        with self._action(Action.TAKE, principal, case_id):
            role = self._role(Action.TAKE, principal, REVIEWER)
            async with self._engine.begin() as conn:
                row = await self._lock(conn, case_id)
                before = CaseStatus(row["status"])
                after = next_status(Action.TAKE, before)
                await self._change(conn, row, principal, role, Action.TAKE, before, after, {}, {})
            return await self._get(case_id)

    async def comment(self, principal: Principal, case_id: uuid.UUID, body: str) -> Case:
        """A note on the case (no phone or account numbers); the status does not change."""
        with self._action(Action.COMMENT, principal, case_id):
            role = self._role(Action.COMMENT, principal, REVIEWER, APPROVER)
            text = check_note(body)
            async with self._engine.begin() as conn:
                row = await self._lock(conn, case_id)
                before = CaseStatus(row["status"])
                next_status(Action.COMMENT, before)
                at = self._clock.now()
                comment_id = await store.add_comment(
                    conn, case_id, author=principal.user_id, role=role, body=text, at=at
                )
                details = {"comment_id": comment_id, "body_sha256": _digest(text)}
                await self._change(conn, row, principal, role, Action.COMMENT, before, before, {}, details)
            return await self._get(case_id)

    async def propose(self, principal: Principal, case_id: uuid.UUID, proposal: Proposal) -> Case:
        """A reviewer proposes how to settle the case; another person decides."""
        with self._action(Action.PROPOSE, principal, case_id):
            role = self._role(Action.PROPOSE, principal, REVIEWER)
            async with self._engine.begin() as conn:
                row = await self._lock(conn, case_id)
                before = CaseStatus(row["status"])
                after = next_status(Action.PROPOSE, before)
                checked = check_proposal(proposal, payment_id=row["payment_id"], case_currency=row["currency"])
                values = {
                    "proposal_kind": checked.kind.value,
                    "proposal_amount": checked.amount,
                    "proposal_currency": checked.currency,
                    "proposal_note": checked.note,
                    "proposal_payment_id": row["payment_id"],  # what it was made for (a re-run cannot move it)
                    "proposed_by": principal.user_id,
                    "proposed_at": self._clock.now(),
                    "decided_by": None,
                    "decided_at": None,
                }
                details = {
                    "kind": checked.kind.value,
                    "payment_id": row["payment_id"],
                    "amount": checked.amount,
                    "currency": checked.currency,
                    "note_sha256": _digest(checked.note),
                }
                await self._change(conn, row, principal, role, Action.PROPOSE, before, after, values, details)
            return await self._get(case_id)

    async def reject(self, principal: Principal, case_id: uuid.UUID, note: str) -> Case:
        """An approver (not the proposer) turns the proposal down; the reviewers take it again."""
        with self._action(Action.REJECT, principal, case_id):
            role = self._role(Action.REJECT, principal, APPROVER)
            text = check_note(note)
            async with self._engine.begin() as conn:
                row = await self._lock(conn, case_id)
                before = CaseStatus(row["status"])
                after = next_status(Action.REJECT, before)
                self._check_checker(row, principal)
                at = self._clock.now()
                await store.add_comment(conn, case_id, author=principal.user_id, role=role, body=text, at=at)
                values = {"decided_by": principal.user_id, "decided_at": at}
                details = {"kind": row["proposal_kind"], "note_sha256": _digest(text)}
                await self._change(conn, row, principal, role, Action.REJECT, before, after, values, details)
            return await self._get(case_id)

    async def approve(self, principal: Principal, case_id: uuid.UUID) -> Case:
        """An approver (not the proposer) accepts the proposal and its effect follows:
        ``confirm_mismatch`` writes the event for the core in the same transaction (resolved);
        ``accept_provider``/``no_action`` close the case; a money-moving kind is posted through
        the core after the commit (resolved once posted; approved-not-posted if the core fails)."""
        with self._action(Action.APPROVE, principal, case_id) as correlation_id:
            role = self._role(Action.APPROVE, principal, APPROVER)
            async with self._engine.begin() as conn:
                row = await self._lock(conn, case_id)
                before = CaseStatus(row["status"])
                next_status(Action.APPROVE, before)
                self._check_checker(row, principal)
                kind = ProposalKind(row["proposal_kind"])
                at = self._clock.now()
                values: dict[str, Any] = {"decided_by": principal.user_id, "decided_at": at}
                if kind is ProposalKind.CONFIRM_MISMATCH:
                    await self._record_mismatch(
                        conn,
                        case_id=case_id,
                        payment_id=row["proposal_payment_id"] or row["payment_id"],
                        outcome=row["outcome"],
                        reason=row["reason"],
                        amount=row["amount"],
                        currency=row["currency"],
                        correlation_id=correlation_id,
                    )
                after = after_approval(kind)
                if after is CaseStatus.CLOSED:
                    values |= {"close_reason": f"{kind.value}: {row['proposal_note']}"[:200], "closed_at": at}
                details = {"kind": kind.value, "amount": row["proposal_amount"], "currency": row["proposal_currency"]}
                await self._change(conn, row, principal, role, Action.APPROVE, before, after, values, details)
            if kind.moves_money:
                await self._post(case_id, principal.user_id, role)
            return await self._get(case_id)

    async def retry_posting(self, principal: Principal, case_id: uuid.UUID) -> Case:
        """Post an approved correction whose posting failed (an approver, or the job)."""
        with self._action(Action.POST, principal, case_id):
            role = self._role(Action.POST, principal, APPROVER)
            async with self._engine.connect() as conn:
                row = await store.get_case(conn, case_id)
            if row is None:
                raise CaseNotFound(str(case_id))
            if row["status"] != CaseStatus.APPROVED or not ProposalKind(row["proposal_kind"]).moves_money:
                raise InvalidTransition(f"nothing to post: the case is {row['status']}")
            await self._post(case_id, principal.user_id, role)
            return await self._get(case_id)

    async def retry_all_postings(self, *, limit: int = 100) -> int:
        """The job: post approved-not-posted corrections, the least recently tried first (a
        correction that keeps failing does not starve the others); returns how many got posted."""
        with correlation_scope(get_correlation_id()):
            async with self._engine.connect() as conn:
                ids = await store.approved_not_posted(conn, limit=limit)
            posted = 0
            for case_id in ids:
                posted += await self._post(case_id, SYSTEM, SYSTEM)
            return posted

    # posting ------------------------------------------------------------------------------
    async def _post(self, case_id: uuid.UUID, actor: str, role: str) -> bool:
        async with self._engine.connect() as conn:
            row = await store.get_case(conn, case_id)
        if row is None or row["status"] != CaseStatus.APPROVED:
            return False
        correction = Correction(
            case_id=case_id,
            payment_id=row["proposal_payment_id"],  # the payment the proposal was made for, never a later one
            kind=row["proposal_kind"],
            amount=row["proposal_amount"],
            currency=row["proposal_currency"],
            reason=correction_reason(row["proposal_kind"], row["proposal_note"]),
            proposed_by=row["proposed_by"],
            approved_by=row["decided_by"],
        )
        with _tracer.start_as_current_span("recon.case.post_correction") as span:
            span.set_attribute("recon.case_id", str(case_id))
            span.set_attribute("recon.correction.kind", correction.kind)
            try:
                posted = await self._core.post_correction(correction)
            except CorrectionRefused as exc:  # for good: back to people
                span.record_exception(exc)
                await self._posting_refused(case_id, actor, role, exc)
                return False
            except Exception as exc:  # the core is unreachable or failed: recorded on the case, retried
                span.record_exception(exc)
                await self._posting_failed(case_id, actor, role, exc)
                return False
        async with self._engine.begin() as conn:
            row = await self._lock(conn, case_id)
            if row["status"] != CaseStatus.APPROVED:
                return False  # a concurrent retry recorded it first (the core replayed ours)
            at = self._clock.now()
            values = {
                "posted_transaction_id": posted.transaction_id,
                "posted_at": at,
                "last_posting_at": at,
                "posting_attempts": row["posting_attempts"] + 1,
                "posting_error": None,
            }
            details = {"transaction_id": posted.transaction_id, "replayed": posted.replayed}
            before = CaseStatus.APPROVED
            await self._change_as(conn, row, actor, role, Action.POST, before, CaseStatus.RESOLVED, values, details)
        if self._metrics:
            self._metrics.posting("replayed" if posted.replayed else "posted")
        logger.info("recon correction posted", case_id=str(case_id), kind=correction.kind, replayed=posted.replayed)
        return True

    async def _posting_failed(self, case_id: uuid.UUID, actor: str, role: str, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"[:200]
        async with self._engine.begin() as conn:
            row = await self._lock(conn, case_id)
            if row["status"] != CaseStatus.APPROVED:
                return
            values = {
                "posting_attempts": row["posting_attempts"] + 1,
                "posting_error": error,
                "last_posting_at": self._clock.now(),
            }
            status = CaseStatus.APPROVED
            details = {"error": type(exc).__name__}
            await self._change_as(conn, row, actor, role, Action.POST_FAILED, status, status, values, details)
        if self._metrics:
            self._metrics.posting("failed")
        logger.warning("recon correction not posted; the case stays approved", case_id=str(case_id), error=error)

    async def _posting_refused(self, case_id: uuid.UUID, actor: str, role: str, exc: CorrectionRefused) -> None:
        """The core refused the correction for good (a 4xx): retrying gets the same answer, so
        the case goes back to people (investigating) with the core's code; they propose again."""
        code = str(getattr(exc, "code", None) or type(exc).__name__)[:64]
        async with self._engine.begin() as conn:
            row = await self._lock(conn, case_id)
            if row["status"] != CaseStatus.APPROVED:
                return
            values = {
                "posting_attempts": row["posting_attempts"] + 1,
                "posting_error": f"refused by the core: {code}"[:200],
                "last_posting_at": self._clock.now(),
            }
            details = {"code": code, "kind": row["proposal_kind"], "payment_id": row["proposal_payment_id"]}
            await self._change_as(
                conn,
                row,
                actor,
                role,
                Action.POST_REFUSED,
                CaseStatus.APPROVED,
                CaseStatus.INVESTIGATING,
                values,
                details,
            )
        if self._metrics:
            self._metrics.posting("refused")
        logger.warning(
            "recon correction refused by the core; the case goes back to people", case_id=str(case_id), code=code
        )

    # helpers ------------------------------------------------------------------------------
    async def refresh_queue_metrics(self) -> None:
        if self._metrics is None:
            return
        async with self._engine.connect() as conn:
            by_provider = await store.queue_by_provider(conn, QUEUE_STATUSES)
        self._metrics.queue(by_provider, now=self._clock.now())

    @contextmanager
    def _action(self, action: Action, principal: Principal, case_id: uuid.UUID) -> Iterator[str]:
        with (
            correlation_scope(get_correlation_id()) as correlation_id,
            _tracer.start_as_current_span(f"recon.{action.value}") as span,
        ):
            span.set_attribute("recon.case_id", str(case_id))
            try:
                yield correlation_id
            except SameAsProposer:
                self._refused("maker_checker", action, principal, case_id)
                raise
            except NotAllowed:
                self._refused("role_not_allowed", action, principal, case_id)
                raise
            except CaseError as exc:
                logger.info("recon case action refused", action=action.value, case_id=str(case_id), code=exc.code)
                raise

    def _refused(self, reason: str, action: Action, principal: Principal, case_id: uuid.UUID) -> None:
        if self._metrics:
            self._metrics.refused(reason)
        logger.warning(
            "recon case action refused", action=action.value, case_id=str(case_id), actor=principal.user_id, code=reason
        )

    def _role(self, action: Action, principal: Principal, *preferred: str) -> str:
        """The role the principal acts in (checked), recorded with the action."""
        check_role(action, principal.roles)
        return next(role for role in preferred if role in principal.roles)

    def _check_reader(self, principal: Principal) -> None:
        if not principal.roles & READERS:
            if self._metrics:
                self._metrics.refused("role_not_allowed")
            raise NotAllowed("reading cases needs one of the roles " + ", ".join(sorted(READERS)))

    @staticmethod
    def _check_checker(row: dict[str, Any], principal: Principal) -> None:
        check_checker(row["proposed_by"], principal.user_id)

    async def _lock(self, conn: AsyncConnection, case_id: uuid.UUID) -> dict[str, Any]:
        row = await store.lock_case(conn, case_id)
        if row is None:
            raise CaseNotFound(str(case_id))
        return row

    async def _get(self, case_id: uuid.UUID) -> Case:
        async with self._engine.connect() as conn:
            row = await store.get_case(conn, case_id)
        if row is None:
            raise CaseNotFound(str(case_id))
        await self.refresh_queue_metrics()
        return case_from_row(row)

    async def _change(
        self,
        conn: AsyncConnection,
        row: dict[str, Any],
        principal: Principal,
        role: str,
        action: Action,
        before: CaseStatus,
        after: CaseStatus,
        values: dict[str, Any],
        details: dict[str, Any],
    ) -> None:
        await self._change_as(conn, row, principal.user_id, role, action, before, after, values, details)

    async def _change_as(
        self,
        conn: AsyncConnection,
        row: dict[str, Any],
        actor: str,
        role: str,
        action: Action,
        before: CaseStatus,
        after: CaseStatus,
        values: dict[str, Any],
        details: dict[str, Any],
    ) -> None:
        at = self._clock.now()
        await store.update_case(conn, row["id"], {**values, "status": after.value, "updated_at": at})
        await self._audit.append(
            conn,
            at=at,
            actor=actor,
            role=role,
            action=action.value,
            case_id=row["id"],
            before=before.value,
            after=after.value,
            correlation_id=get_correlation_id(),
            details=details,
        )
        if self._metrics:
            self._metrics.action(action.value)
        logger.info(
            "recon case action",
            action=action.value,
            case_id=str(row["id"]),
            provider=row["provider"],
            actor=actor,
            role=role,
            before=before.value,
            after=after.value,
        )

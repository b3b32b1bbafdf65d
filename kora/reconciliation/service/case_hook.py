"""Opening review cases from a match run, inside the run's transaction (a `run_match` hook).

Every result that is neither MATCHED nor PENDING becomes a case, or updates the case of the
same (report, line) or (report, unlisted payment): re-running a report never duplicates a case.
A result hinted ``query_status`` (a late success) starts ``awaiting_core``, the automatic rule's
state, out of the review queue; everything else starts ``open``. A case whose discrepancy is
gone on a later run is closed ("resolved by rematch"), and reopened if it comes back.

A proposal is tied to the facts it was made for: when a later run names another payment,
outcome, amount or currency for a ``proposed`` case, the proposal is withdrawn (the case goes
back to ``investigating``, recorded); the facts of an ``approved`` case are never changed (two
people decided on them), a run that finds others only records that they moved."""

from __future__ import annotations

import json
import uuid
from typing import Any

from loguru import logger
from sqlalchemy.ext.asyncio import AsyncConnection

from kora.observability import get_correlation_id, get_tracer
from kora.reconciliation.adapters.case_store import (
    SqlAuditTrail,
    audit_of,
    cases_of_report,
    insert_case,
    update_case,
)
from kora.reconciliation.domain.cases import CLOSED_BY_REMATCH, SYSTEM, Action, CaseStatus, case_subject, next_status
from kora.reconciliation.domain.matching import MatchResult, Outcome, Resolution
from kora.reconciliation.service.case_metrics import CaseMetrics
from kora.reconciliation.service.match_run import MatchRun

_tracer = get_tracer("kora.reconciliation")
_NOT_CASES = (Outcome.MATCHED, Outcome.PENDING)
# What a later run may change on a case still in the works.
_TRACKED = ("outcome", "reason", "auto_resolution", "amount", "currency", "payment_id", "evidence")
# What a proposal was made for: when one of these moves, the proposal no longer holds (the gap
# is the provider's amount less Kora's, from the evidence).
_PROPOSAL_FACTS = ("payment_id", "outcome", "reason", "amount", "currency", "gap")
_PROPOSAL_FIELDS = (
    "proposal_kind",
    "proposal_amount",
    "proposal_currency",
    "proposal_note",
    "proposal_payment_id",
    "proposed_by",
    "proposed_at",
)


def evidence(result: MatchResult) -> dict[str, Any]:
    """What the case is about, as the stored line and recon_payments hold it: ids, amounts,
    statuses and times; never a raw line (the encrypted file is the only place for that)."""
    line, txn = result.line, result.internal
    out: dict[str, Any] = {
        "outcome": result.outcome.value,
        "reasons": [reason.value for reason in result.reasons],
        "matched_by": None if result.matched_by is None else result.matched_by.value,
        "auto_resolution": result.auto_resolution.value,
        "detail": result.detail,
        "line": None,
        "kora": None,
        "gap": None,
    }
    if line is not None:
        out["line"] = {
            "line_number": line.line_number,
            "provider_txn_id": line.provider_txn_id,
            "our_reference": line.our_reference,
            "provider_parent_id": line.provider_parent_id,
            "occurred_at": line.occurred_at.isoformat(),
            "status": line.status.value,
            "type": line.type.value,
            "direction": None if line.direction is None else line.direction.value,
            "amount": line.amount,
            "fee": line.fee,
            "net": line.net,
            "currency": line.currency,
        }
    if txn is not None:
        out["kora"] = {
            "payment_id": txn.payment_id,
            "provider_ref": txn.provider_ref,
            "our_reference": txn.our_reference,
            "type": txn.type,
            "status": txn.status,
            "amount": txn.amount,
            "captured_amount": txn.captured_amount,
            "fee": txn.fee,
            "currency": txn.currency,
            "captured_at": None if txn.captured_at is None else txn.captured_at.isoformat(),
            "settlement_due": None if txn.settlement_due is None else txn.settlement_due.isoformat(),
        }
    if line is not None and txn is not None and line.currency == txn.currency:
        # What the reviewer weighs a correction against: the provider's amount less Kora's, in
        # minor units (negative: the provider reports less than Kora booked).
        out["gap"] = {"amount": line.amount - txn.amount, "currency": line.currency}
    return out


def _facts(result: MatchResult) -> dict[str, Any]:
    about = result.line if result.line is not None else result.internal
    return {
        "outcome": result.outcome.value,
        "reason": None if result.reason is None else result.reason.value,
        "auto_resolution": result.auto_resolution.value,
        "amount": None if about is None else about.amount,
        "currency": None if about is None else about.currency,
        "payment_id": None if result.internal is None else result.internal.payment_id,
        "evidence": json.dumps(evidence(result), sort_keys=True, separators=(",", ":")),
    }


def _proposal_facts(values: dict[str, Any]) -> dict[str, Any]:
    """The facts a proposal rests on, from a case row or a run's `_facts`."""
    shown = json.loads(values["evidence"])
    line, kora = shown.get("line"), shown.get("kora")
    out = {name: values[name] for name in _PROPOSAL_FACTS if name != "gap"}
    # Computed from the amounts (not the evidence's "gap"), so cases opened before it had one compare alike.
    out["gap"] = None
    if line is not None and kora is not None and line["currency"] == kora["currency"]:
        out["gap"] = int(line["amount"]) - int(kora["amount"])
    return out


def _moved(row: dict[str, Any], facts: dict[str, Any]) -> list[str]:
    before, now = _proposal_facts(row), _proposal_facts(facts)
    return [name for name in _PROPOSAL_FACTS if before[name] != now[name]]


def _first_status(result: MatchResult) -> CaseStatus:
    automatic = result.auto_resolution is Resolution.QUERY_STATUS
    return CaseStatus.AWAITING_CORE if automatic else CaseStatus.OPEN


class CaseOpener:
    """``opener.open_cases`` is the hook: ``run_match(..., hooks=[opener.open_cases])``."""

    def __init__(self, audit: SqlAuditTrail, *, metrics: CaseMetrics | None = None) -> None:
        self._audit = audit
        self._metrics = metrics

    async def open_cases(self, conn: AsyncConnection, run: MatchRun) -> dict[str, int]:
        """Open, update, reopen or close the report's cases after ``run``; returns the counts."""
        with _tracer.start_as_current_span("recon.cases.open") as span:
            span.set_attribute("recon.provider", run.provider)
            span.set_attribute("recon.report_id", str(run.report_id))
            counts = await self._apply(conn, run)
            for name, value in counts.items():
                span.set_attribute(f"recon.cases.{name}", value)
        logger.info("recon cases after match run", provider=run.provider, report_id=str(run.report_id), **counts)
        return counts

    async def _apply(self, conn: AsyncConnection, run: MatchRun) -> dict[str, int]:
        counts = {"opened": 0, "reopened": 0, "updated": 0, "closed": 0}
        existing = await cases_of_report(conn, run.report_id)
        discrepant: dict[str, MatchResult] = {}
        for result in run.results:
            if result.outcome in _NOT_CASES:
                continue
            line_number = None if result.line is None else result.line.line_number
            payment_id = None if result.internal is None else result.internal.payment_id
            discrepant[case_subject(line_number, payment_id)] = result
        for subject, result in discrepant.items():
            row = existing.get(subject)
            if row is None:
                await self._open(conn, run, subject, result)
                counts["opened"] += 1
            elif row["status"] == CaseStatus.CLOSED and row["close_reason"] == CLOSED_BY_REMATCH:
                await self._reopen(conn, run, row, result)
                counts["reopened"] += 1
            elif await self._update(conn, run, row, result):
                counts["updated"] += 1
        for subject, row in existing.items():
            if subject not in discrepant and await self._close(conn, run, row):
                counts["closed"] += 1
        return counts

    async def _open(self, conn: AsyncConnection, run: MatchRun, subject: str, result: MatchResult) -> None:
        case_id = uuid.uuid4()
        status = _first_status(result)
        facts = _facts(result)
        await insert_case(
            conn,
            {
                "id": case_id,
                "provider": run.provider,
                "report_id": run.report_id,
                "subject": subject,
                "line_number": None if result.line is None else result.line.line_number,
                "status": status.value,
                "opened_at": run.at,
                "updated_at": run.at,
                "last_run_at": run.at,
                **facts,
            },
        )
        await self._record(conn, run, case_id, Action.OPEN, None, status, facts)
        if self._metrics:
            self._metrics.opened(run.provider, facts["outcome"], automatic=status is CaseStatus.AWAITING_CORE)

    async def _reopen(self, conn: AsyncConnection, run: MatchRun, row: dict[str, Any], result: MatchResult) -> None:
        status = _first_status(result)
        facts = _facts(result)
        values = {**facts, "status": status.value, "opened_at": run.at, "updated_at": run.at, "last_run_at": run.at}
        values |= {"close_reason": None, "closed_at": None, "query_attempts": 0, "last_query_at": None}
        await update_case(conn, row["id"], values)
        await self._record(conn, run, row["id"], Action.REOPEN, CaseStatus(row["status"]), status, facts)
        if self._metrics:
            self._metrics.opened(run.provider, facts["outcome"], automatic=status is CaseStatus.AWAITING_CORE)

    async def _update(self, conn: AsyncConnection, run: MatchRun, row: dict[str, Any], result: MatchResult) -> bool:
        current = CaseStatus(row["status"])
        if current.is_final:
            # People decided: a later run does not reopen it.
            await update_case(conn, row["id"], {"last_run_at": run.at})
            return False
        facts = _facts(result)
        if current is CaseStatus.APPROVED:
            # Two people decided on these facts and the correction awaits posting: they stay.
            await update_case(conn, row["id"], {"last_run_at": run.at})
            await self._facts_moved(conn, run, row, facts)
            return False
        changed = {name: facts[name] for name in _TRACKED if row[name] != facts[name]}
        status: CaseStatus = current
        if current is CaseStatus.AWAITING_CORE and result.auto_resolution is not Resolution.QUERY_STATUS:
            status = CaseStatus.OPEN  # no longer something the core can settle: people
        if not changed and status is current:
            await update_case(conn, row["id"], {"last_run_at": run.at})
            return False
        moved = _moved(row, facts)
        withdrawn = current is CaseStatus.PROPOSED and bool(moved)
        values = {**changed, "status": status.value, "updated_at": run.at, "last_run_at": run.at}
        if withdrawn:
            status = next_status(Action.WITHDRAW, current)
            values |= {"status": status.value} | dict.fromkeys(_PROPOSAL_FIELDS)
        await update_case(conn, row["id"], values)
        shown = {name: value for name, value in changed.items() if name != "evidence"}
        if withdrawn:
            shown |= {
                "withdrawn_kind": row["proposal_kind"],
                "withdrawn_amount": row["proposal_amount"],
                "withdrawn_payment_id": row["proposal_payment_id"],
                "proposed_by": row["proposed_by"],
                "moved": ",".join(moved),
            }
            await self._record(conn, run, row["id"], Action.WITHDRAW, current, status, shown)
            if self._metrics:
                self._metrics.withdrawn(run.provider)
            return True
        await self._record(conn, run, row["id"], Action.UPDATE, current, status, shown)
        return True

    async def _facts_moved(
        self, conn: AsyncConnection, run: MatchRun, row: dict[str, Any], facts: dict[str, Any]
    ) -> None:
        """Record (once per new set of facts) that a run found other facts for an approved case."""
        moved = _moved(row, facts)
        if not moved:
            return
        seen = _proposal_facts(facts)
        for record in reversed(await audit_of(conn, row["id"])):
            if record["action"] == Action.FACTS_MOVED.value:
                if {name: json.loads(record["details"]).get(f"now_{name}") for name in _PROPOSAL_FACTS} == seen:
                    return  # already recorded
                break
        details: dict[str, Any] = {f"now_{name}": value for name, value in seen.items()}
        details["moved"] = ",".join(moved)
        status = CaseStatus.APPROVED
        await self._record(conn, run, row["id"], Action.FACTS_MOVED, status, status, details)
        logger.warning(
            "recon match run found other facts for an approved case; it keeps the approved ones",
            case_id=str(row["id"]),
            moved=details["moved"],
        )

    async def _close(self, conn: AsyncConnection, run: MatchRun, row: dict[str, Any]) -> bool:
        current = CaseStatus(row["status"])
        if current.is_final or current is CaseStatus.APPROVED:
            return False
        values = {
            "status": CaseStatus.CLOSED.value,
            "close_reason": CLOSED_BY_REMATCH,
            "closed_at": run.at,
            "updated_at": run.at,
            "last_run_at": run.at,
        }
        await update_case(conn, row["id"], values)
        await self._record(conn, run, row["id"], Action.CLOSE, current, CaseStatus.CLOSED, {"note": CLOSED_BY_REMATCH})
        if self._metrics:
            self._metrics.closed_by_rematch(run.provider)
        return True

    async def _record(
        self,
        conn: AsyncConnection,
        run: MatchRun,
        case_id: uuid.UUID,
        action: Action,
        before: CaseStatus | None,
        after: CaseStatus,
        facts: dict[str, Any],
    ) -> None:
        details = {name: value for name, value in facts.items() if name != "evidence"}
        details["report_id"] = str(run.report_id)
        await self._audit.append(
            conn,
            at=run.at,
            actor=SYSTEM,
            role=SYSTEM,
            action=action.value,
            case_id=case_id,
            before=None if before is None else before.value,
            after=after.value,
            correlation_id=get_correlation_id(),
            details=details,
        )
        if self._metrics:
            self._metrics.action(action.value)

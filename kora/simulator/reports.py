"""Daily settlement reports, each provider in its own CSV dialect, and the ground-truth
manifest of what the simulator injected into them. Pure functions of the recorded operations.

A report for day J lists the money movements (successes, failures for MoMo, reversals,
captures, refunds, chargebacks) that happened on J (UTC; Africa/Abidjan is UTC+0 all year).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from kora.simulator.amounts import format_major
from kora.simulator.behaviour import Scenario
from kora.simulator.config import ApiStyle
from kora.simulator.records import Movement, Operation, iso

ABIDJAN = ZoneInfo("Africa/Abidjan")

MOMO_COLUMNS = ("Id", "External Id", "Date", "Status", "Type", "Amount", "Currency", "Fee", "Net")
WAVE_COLUMNS = (
    "transaction_id",
    "client_reference",
    "timestamp",
    "status",
    "type",
    "amount",
    "fee",
    "net_amount",
    "currency",
)
CARD_COLUMNS = (
    "RECORD_TYPE",
    "ACQUIRER_REF",
    "MERCHANT_REF",
    "AUTH_ID",
    "TXN_DATE",
    "TXN_TIME",
    "CURRENCY",
    "GROSS",
    "FEE",
    "NET",
)
_MOMO_STATUS = {"succeeded": "SUCCESSFUL", "failed": "FAILED", "reversed": "REVERSED"}


def _lines(operations: Iterable[Operation], day: date, *, with_failures: bool) -> list[tuple[Operation, Movement]]:
    """The (operation, movement) lines of ``day`` as the provider reports them: omitted ones
    left out, duplicated ones twice."""
    lines: list[tuple[Operation, Movement]] = []
    for operation in operations:
        scenario = operation.behaviour.scenario
        if scenario is Scenario.OMITTED_FROM_REPORT:
            continue
        for movement in operation.movements:
            if movement.at.date() != day or (movement.status == "failed" and not with_failures):
                continue
            lines.append((operation, movement))
            if scenario is Scenario.DUPLICATED_IN_REPORT:
                lines.append((operation, movement))
    lines.sort(key=lambda line: (line[1].at, line[1].line_id))
    return lines


def _csv(columns: Sequence[str], rows: Iterable[Sequence[str]], delimiter: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def momo_report(operations: Iterable[Operation], day: date) -> str:
    """``;``-separated; dates ``dd/MM/yyyy HH:mm`` in Africa/Abidjan; signed amounts in major
    units with two decimals."""
    rows = [
        (
            m.line_id,
            op.external_id or "",
            m.at.astimezone(ABIDJAN).strftime("%d/%m/%Y %H:%M"),
            _MOMO_STATUS.get(m.status, m.status.upper()),
            m.type.upper(),
            format_major(m.amount, op.currency, places=2),
            op.currency,
            format_major(m.fee, op.currency, places=2),
            format_major(m.net, op.currency, places=2),
        )
        for op, m in _lines(operations, day, with_failures=True)
    ]
    return _csv(MOMO_COLUMNS, rows, ";")


def wave_report(operations: Iterable[Operation], day: date) -> str:
    """``,``-separated; ISO 8601 UTC timestamps; signed amounts in minor units; no failures."""
    rows = [
        (
            m.line_id,
            op.external_id or "",
            m.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            m.status,
            m.type,
            str(m.amount),
            str(m.fee),
            str(m.net),
            op.currency,
        )
        for op, m in _lines(operations, day, with_failures=False)
    ]
    return _csv(WAVE_COLUMNS, rows, ",")


def card_report(operations: Iterable[Operation], day: date) -> str:
    """``|``-separated; ``YYYYMMDD`` and ``HHMMSS`` UTC; signed minor units."""
    rows = [
        (
            m.type.upper(),
            m.line_id,
            op.external_id or "",
            op.id,
            m.at.strftime("%Y%m%d"),
            m.at.strftime("%H%M%S"),
            op.currency,
            str(m.amount),
            str(m.fee),
            str(m.net),
        )
        for op, m in _lines(operations, day, with_failures=False)
    ]
    return _csv(CARD_COLUMNS, rows, "|")


def render_report(style: ApiStyle, operations: Iterable[Operation], day: date) -> str:
    if style is ApiStyle.MOMO:
        return momo_report(operations, day)
    if style is ApiStyle.WAVE:
        return wave_report(operations, day)
    return card_report(operations, day)


def manifest(
    provider: str,
    style: ApiStyle,
    operations: Sequence[Operation],
    day: date,
    unrecorded: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    """What really happened on ``day`` and what was injected, to check a reconciliation against."""
    of_day = [op for op in operations if op.created_at.date() == day or any(m.at.date() == day for m in op.movements)]
    true_lines = [(op, m) for op in of_day for m in op.movements if m.at.date() == day]
    if style is not ApiStyle.MOMO:
        true_lines = [(op, m) for op, m in true_lines if m.status != "failed"]
    reported = _lines(of_day, day, with_failures=style is ApiStyle.MOMO)
    injected: dict[str, list[dict[str, Any]]] = {}
    for op in of_day:
        if op.behaviour.scenario is not Scenario.SUCCEED:
            injected.setdefault(str(op.behaviour.scenario), []).append(_summary(op))
    return {
        "provider": provider,
        "style": str(style),
        "date": day.isoformat(),
        "operations": [_summary(op) for op in of_day],
        "injected": injected,
        "late_answers": [_summary(op) for op in of_day if op.answered_late],
        "omitted_lines": [m.line_id for op, m in true_lines if op.behaviour.scenario is Scenario.OMITTED_FROM_REPORT],
        "duplicated_lines": [
            m.line_id for op, m in true_lines if op.behaviour.scenario is Scenario.DUPLICATED_IN_REPORT
        ],
        "duplicate_callbacks": [op.reference for op in of_day if op.behaviour.scenario is Scenario.DUPLICATE_CALLBACK],
        "lost_callbacks": [op.reference for op in of_day if op.behaviour.scenario is Scenario.LOST_CALLBACK],
        "unrecorded_requests": [
            {"kind": u["kind"], "reference": u["reference"], "at": iso(u["at"])}
            for u in unrecorded
            if u["provider"] == provider and u["at"].date() == day
        ],
        "true_lines": len(true_lines),
        "reported_lines": len(reported),
        "true_totals": _totals(m for _, m in true_lines),
        "reported_totals": _totals(m for _, m in reported),
    }


def _summary(op: Operation) -> dict[str, Any]:
    return {
        "operation_id": op.id,
        "kind": op.kind,
        "reference": op.reference,
        "external_id": op.external_id,
        "status": str(op.status),
        "amount": op.amount,
        "fee": op.fee,
        "currency": op.currency,
        "behaviour": op.behaviour.code,
    }


def _totals(movements: Iterable[Movement]) -> dict[str, int]:
    """Sums of the money-moving lines (failures excluded), in minor units; one currency per
    provider is the normal case, several currencies add up as plain numbers."""
    totals = {"amount": 0, "fee": 0, "net": 0}
    for m in movements:
        if m.status == "failed":
            continue
        totals["amount"] += m.amount
        totals["fee"] += m.fee
        totals["net"] += m.net
    return totals

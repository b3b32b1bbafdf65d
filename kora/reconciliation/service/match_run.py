"""A match run: a stored report's lines against Kora's side of that provider's payments
(`recon_payments`), its results stored in place of the report's previous run, in one
transaction."""

from __future__ import annotations

import uuid
from datetime import datetime

from loguru import logger
from sqlalchemy.ext.asyncio import AsyncEngine

from kora.kernel import Clock, SystemClock
from kora.reconciliation.adapters.view_store import lock_report, payments_of, replace_results, report_lines
from kora.reconciliation.domain.matching import Outcome, match
from kora.reconciliation.domain.rules import MatchRules
from kora.reconciliation.service.importing import ReportNotFound


async def run_match(
    engine: AsyncEngine,
    report_id: uuid.UUID,
    *,
    rules: MatchRules,
    as_of: datetime,
    clock: Clock | None = None,
) -> dict[str, int]:
    """Match report ``report_id`` as of ``as_of`` and store the results, replacing those of an
    earlier run of the same report. Returns the count of each outcome (every outcome named,
    zeros included). Raises ReportNotFound for an unknown report."""
    now = (clock or SystemClock()).now()
    async with engine.begin() as conn:
        provider = await lock_report(conn, report_id)
        if provider is None:
            raise ReportNotFound(str(report_id))
        lines = await report_lines(conn, report_id)
        internal = await payments_of(conn, provider)
        results = match(lines, internal, rules=rules, as_of=as_of)
        await replace_results(conn, report_id, results, at=now)
    counts = {outcome.value: 0 for outcome in Outcome}
    for result in results:
        counts[result.outcome.value] += 1
    logger.info("recon match run", provider=provider, lines=len(lines), payments=len(internal), **counts)
    return counts

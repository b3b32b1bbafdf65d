"""A match run: a stored report's lines against Kora's side of that provider's payments
(`recon_payments`), its results stored in place of the report's previous run, in one
transaction."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from loguru import logger
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kora.kernel import Clock, SystemClock
from kora.reconciliation.adapters.view_store import (
    lock_report,
    payments_for_report,
    replace_results,
    report_lines,
    report_span,
)
from kora.reconciliation.domain.matching import InternalTxn, MatchResult, Outcome, match
from kora.reconciliation.domain.rules import MatchRules
from kora.reconciliation.service.importing import ReportNotFound


@dataclass(frozen=True, slots=True)
class MatchRun:
    """What a match run decided, handed to the run's hooks inside its transaction."""

    report_id: uuid.UUID
    provider: str
    as_of: datetime
    at: datetime
    results: Sequence[MatchResult]
    internal: Sequence[InternalTxn]


# Called with the run's connection, in its transaction, after the results are stored: what
# follows from a run (outcome events, review cases) commits with it or not at all.
MatchHook = Callable[[AsyncConnection, MatchRun], Awaitable[object]]
# A provider's rules, looked up once the run knows the report's provider (kora.reconciliation.schedules.load_rules).
RuleBook = Callable[[str], MatchRules]


# How far around a report's day (and its lines' times) a capture still counts as the report's:
# absorbs cut-off times and time-zone shifts; never less than the amount fallback's window.
CUT_OFF_TOLERANCE = timedelta(hours=3)


def expected_window(
    day: date | None, first_line: datetime | None, last_line: datetime | None, *, rules: MatchRules
) -> tuple[datetime, datetime]:
    """The capture times a report is expected to list: its day (UTC) and the span of its lines,
    widened by the cut-off tolerance. A report with neither expects nothing but what it names."""
    tolerance = max(CUT_OFF_TOLERANCE, rules.fallback_window or timedelta(0))
    starts = [t for t in (first_line,) if t is not None]
    ends = [t for t in (last_line,) if t is not None]
    if day is not None:
        starts.append(datetime.combine(day, time.min, tzinfo=UTC))
        ends.append(datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC))
    if not starts:
        nothing = datetime.min.replace(tzinfo=UTC)
        return nothing, nothing
    return min(starts) - tolerance, max(ends) + tolerance


async def run_match(
    engine: AsyncEngine,
    report_id: uuid.UUID,
    *,
    rules: MatchRules | RuleBook,
    as_of: datetime,
    clock: Clock | None = None,
    hooks: Sequence[MatchHook] = (),
) -> dict[str, int]:
    """Match report ``report_id`` as of ``as_of`` and store the results, replacing those of an
    earlier run of the same report. Kora's side is what the report is expected to list (its
    day's captures not listed by another report, and whatever its lines name): a payment of
    another day is never MISSING_PROVIDER here. Returns the count of each outcome (every outcome named,
    zeros included). ``rules`` are the provider's (or a function giving them for the report's
    provider). Each of ``hooks`` runs in the run's transaction after the results are stored.
    Raises ReportNotFound for an unknown report."""
    now = (clock or SystemClock()).now()
    async with engine.begin() as conn:
        provider = await lock_report(conn, report_id)
        if provider is None:
            raise ReportNotFound(str(report_id))
        if not isinstance(rules, MatchRules):
            rules = rules(provider)
        lines = await report_lines(conn, report_id)
        captured_from, captured_to = expected_window(*await report_span(conn, report_id), rules=rules)
        internal = await payments_for_report(
            conn, provider, report_id, captured_from=captured_from, captured_to=captured_to
        )
        results = match(lines, internal, rules=rules, as_of=as_of)
        await replace_results(conn, report_id, results, at=now)
        run = MatchRun(report_id, provider, as_of, now, results, internal)
        for hook in hooks:
            await hook(conn, run)
    counts = {outcome.value: 0 for outcome in Outcome}
    for result in results:
        counts[result.outcome.value] += 1
    logger.info("recon match run", provider=provider, lines=len(lines), payments=len(internal), **counts)
    return counts

"""The reconciliation service's composition root for what every process shares: the review
queue, the outcome events, and the hooks every match run takes.

`kora recon serve`, `kora recon worker` and the `kora recon` commands build one `Review` each,
so a match run opens and closes review cases and confirms settlements whoever starts it, and a
case decided over HTTP or from a shell reaches the core the same way (its service API under
the service's identity, or an outcome event).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from kora.events.signing import load_signing_keys
from kora.kernel import Clock
from kora.platform.settings import ConfigurationError
from kora.reconciliation.adapters.case_store import SqlAuditTrail
from kora.reconciliation.adapters.core_client import CoreClient
from kora.reconciliation.metrics import ReconMetrics
from kora.reconciliation.service.case_hook import CaseOpener
from kora.reconciliation.service.case_metrics import CaseMetrics
from kora.reconciliation.service.cases import CaseService
from kora.reconciliation.service.late_success import LateSuccessQueries
from kora.reconciliation.service.match_run import MatchHook
from kora.reconciliation.service.outcomes import OutcomeEvents
from kora.reconciliation.service.ports import CorePayments
from kora.reconciliation.service.review_settings import ReviewSettings
from kora.reconciliation.service.settings import ReconSettings


@dataclass
class Review:
    """The review queue and the outcome events of one process, on one database."""

    cases: CaseService
    audit: SqlAuditTrail
    opener: CaseOpener
    outcomes: OutcomeEvents
    late_success: LateSuccessQueries
    case_metrics: CaseMetrics
    _core: CorePayments
    _owned_client: CoreClient | None

    def match_hooks(self) -> list[MatchHook]:
        """What follows from every match run, in its transaction: settlements confirmed to the
        core, review cases opened, updated or closed."""
        return [self.outcomes.settlement_hook, self.opener.open_cases]

    async def work_once(self, *, limit: int = 100) -> dict[str, object]:
        """The automatic review rules, once: late successes asked of the core (escalated when
        still unresolved after the configured time) and approved corrections' postings retried."""
        late = await self.late_success.run_once(limit=limit)
        posted = await self.cases.retry_all_postings(limit=limit)
        return {"late_success": late, "postings_retried": posted}

    async def aclose(self) -> None:
        if self._owned_client is not None:
            await self._owned_client.aclose()


def build_review(
    engine: AsyncEngine,
    settings: ReconSettings,
    *,
    clock: Clock,
    registry: CollectorRegistry,
    metrics: ReconMetrics | None = None,
    review: ReviewSettings | None = None,
    core: CorePayments | None = None,
) -> Review:
    """The review queue on ``engine``: the core reached through its service API (``core`` when
    given, as tests do with an in-process core, else a `CoreClient` from the settings), outcome
    events signed with the service's key, case metrics in ``registry``. Raises
    ConfigurationError when a required secret is missing (production)."""
    review = review or ReviewSettings.from_env()
    try:
        signer, _ = load_signing_keys(settings.require_event_keys())
    except ValueError as exc:
        raise ConfigurationError(str(exc).replace("KORA_EVENT_SIGNING_KEYS", "KORA_RECON_EVENT_SIGNING_KEYS")) from exc
    owned = None
    if core is None:
        core = owned = CoreClient.from_settings(settings, clock=clock)
    audit = SqlAuditTrail(review.audit_key)
    case_metrics = CaseMetrics(registry)
    outcomes = OutcomeEvents(signer, clock=clock, recorded=metrics.recorded if metrics is not None else None)
    cases = CaseService(
        engine,
        audit=audit,
        core=core,
        record_mismatch=outcomes.record_mismatch_confirmed,
        clock=clock,
        metrics=case_metrics,
    )
    late = LateSuccessQueries(
        engine, core, audit=audit, clock=clock, escalate_after=review.escalate_after, metrics=case_metrics
    )
    return Review(
        cases=cases,
        audit=audit,
        opener=CaseOpener(audit, metrics=case_metrics),
        outcomes=outcomes,
        late_success=late,
        case_metrics=case_metrics,
        _core=core,
        _owned_client=owned,
    )

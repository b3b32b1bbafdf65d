"""`kora recon worker`: the reconciliation service's long-running process, on its own database.

Three jobs, until SIGTERM:
- the `recon` consumer (ReconFeedHandler): the core's `payment.status_changed` v1 folded into
  `recon_payments`, verified against the core's public keys only;
- the relay: the service's own outbox (its outcome events, signed with its own key) to the bus;
- the match schedule: every `match_interval_seconds`, each report never matched, and each
  report imported within `rematch_days` with open results (PENDING, MISSING_INTERNAL, MISSING_PROVIDER), is
  matched as of now with the settlement and review-case hooks, so PENDING becomes
  MISSING_PROVIDER once due and a payment captured after the report was imported is matched
  (and confirmed settled) then; after each round, the automatic review rules (late successes
  asked of the core, escalation, postings retried) run once.

The bus: NATS JetStream in deployment (as NATS user `kora-recon`). On the embedded default
(`KORA_EVENTS_BUS=inprocess`) the stream is a table of the core's database
(KORA_DATABASE_URL): the worker reads and appends to `event_stream` there and keeps its cursor in
`event_consumer_cursors`, and touches no other core table; processed events, dead letters and
the outbox stay in the reconciliation database (ADR 0024).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from loguru import logger
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from kora.events.adapters.dead_letters import SqlDeadLetters
from kora.events.buses import Bus, NatsConnection, connect_bus
from kora.events.domain import PRODUCER
from kora.events.relay import Relay, sleep_or_stop
from kora.events.runtime import ConsumerRunner
from kora.events.signing import EventVerifier, load_verify_keys, verify_key_producers
from kora.kernel import Clock, SystemClock
from kora.observability.event_metrics import EventMetrics
from kora.platform.db import create_engine
from kora.platform.settings import ConfigurationError
from kora.reconciliation.adapters.tables import recon_reports, recon_results
from kora.reconciliation.composition import build_review
from kora.reconciliation.domain.rules import MatchRules
from kora.reconciliation.metrics import ReconMetrics
from kora.reconciliation.schedules import load_rules
from kora.reconciliation.service.feed import ReconFeedHandler
from kora.reconciliation.service.match_run import RuleBook
from kora.reconciliation.service.observed import match_observed
from kora.reconciliation.service.ports import CorePayments
from kora.reconciliation.service.report_audit import match_audit_hook
from kora.reconciliation.service.review_settings import ReviewSettings
from kora.reconciliation.service.settings import ReconSettings

# Results a later run can still change: not due yet, a late line, or a payment another day's
# report may list after all (its case closes by rematch).
OPEN_OUTCOMES = ("PENDING", "MISSING_INTERNAL", "MISSING_PROVIDER")
REPORTS_PER_ROUND = 100


class ReconWorker:
    """Everything `kora recon worker` runs, built once per process (or per test)."""

    def __init__(
        self,
        settings: ReconSettings,
        *,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        rules: MatchRules | RuleBook | None = None,
        core: CorePayments | None = None,
        review: ReviewSettings | None = None,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.registry = registry or CollectorRegistry()
        # Each provider's rules (fee schedule, windows) from its file, unless a test fixes them.
        self.rules: MatchRules | RuleBook = rules or load_rules
        try:
            core_keys = load_verify_keys(settings.event_verify_keys)
            # The core's keys sign for kora-core only (whatever the entries say otherwise would be
            # refused anyway: the recon consumer reads payment events, which only the core publishes).
            producers = {**verify_key_producers(settings.event_verify_keys), **dict.fromkeys(core_keys, PRODUCER)}
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        if not core_keys:
            raise ConfigurationError("KORA_EVENT_VERIFY_KEYS: the core's public event keys are required")
        self.engine = create_engine(settings.database_url, pool_size=5)
        self._stream_engine: AsyncEngine | None = None
        if settings.events_bus == "inprocess":
            self._stream_engine = create_engine(settings.core_database_url, pool_size=2)
        self.event_metrics = EventMetrics(self.registry)
        self.metrics = ReconMetrics(self.registry)
        self.verifier = EventVerifier(core_keys, producers=producers)
        self.review = build_review(
            self.engine,
            settings,
            clock=self.clock,
            registry=self.registry,
            metrics=self.metrics,
            review=review,
            core=core,
        )
        self.outcomes = self.review.outcomes
        self._audited = match_audit_hook(self.review.audit, self.clock, actor="kora-recon-worker", role="system")
        self.feed = ReconFeedHandler(clock=self.clock)
        self._bus: Bus | None = None
        self._lock = asyncio.Lock()

    async def bus(self) -> Bus:
        async with self._lock:
            if self._bus is None:
                s = self.settings
                nats = NatsConnection(
                    s.nats_url, s.nats_user, s.nats_password, s.nats_stream, s.nats_dlq_stream, s.nats_namespace
                )
                self._bus = await connect_bus(
                    s.events_bus,
                    stream_engine=self._stream_engine or self.engine,
                    clock=self.clock,
                    nats=nats,
                    name="kora-recon",
                )
            return self._bus

    async def runner(self) -> ConsumerRunner:
        """The `recon` consumer on the reconciliation database."""
        return ConsumerRunner(
            self.feed,
            source=await self.bus(),
            engine=self.engine,
            verifier=self.verifier,
            clock=self.clock,
            dead_letters=SqlDeadLetters(self.engine),
            metrics=self.event_metrics,
        )

    async def relay(self) -> Relay:
        """The relay of the reconciliation database's outbox."""
        return Relay(
            self.engine,
            await self.bus(),
            self.clock,
            metrics=self.event_metrics,
            idle_seconds=self.settings.relay_idle_seconds,
        )

    async def replay(self, *, from_seq: int | None = None, since: datetime | None = None, actor: str) -> dict[str, int]:
        """Re-deliver the core's stream to the `recon` consumer from a sequence or a time (ADR
        0021): what it already applied is a duplicate (processed_events), so only what it missed
        takes effect. `actor` is logged: the service keeps no audit trail of its own yet."""
        runner = await self.runner()
        counts: dict[str, int] = {}
        async for delivery in (await self.bus()).replay(self.feed.spec, from_seq=from_seq, since=since):
            outcome = await runner.process(delivery, last_attempt=True)
            counts[outcome.word] = counts.get(outcome.word, 0) + 1
        logger.info(
            "recon consumer replayed",
            actor=actor[:64],
            from_seq=from_seq or 0,
            since=since.isoformat() if since else "",
            **counts,
        )
        return counts

    async def reports_due(self) -> list[uuid.UUID]:
        """Reports never matched, and recent ones (imported within `rematch_days`) whose latest
        run left results open, oldest first."""
        r, res = recon_reports, recon_results
        matched = sa.exists().where(res.c.report_id == r.c.id)
        still_open = sa.exists().where(res.c.report_id == r.c.id, res.c.outcome.in_(OPEN_OUTCOMES))
        recent = r.c.imported_at >= self.clock.now() - timedelta(days=self.settings.rematch_days)
        query = (
            sa.select(r.c.id)
            .where(sa.or_(~matched, sa.and_(recent, still_open)))
            .order_by(r.c.imported_at)
            .limit(REPORTS_PER_ROUND)
        )
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).scalars())

    async def match_due(self) -> dict[str, int]:
        """One round of the schedule: match every due report as of now, with the settlement and
        review-case hooks. A failing report is logged and counted; the others still run."""
        totals: dict[str, int] = {}
        for report_id in await self.reports_due():
            try:
                counts = await match_observed(
                    self.engine,
                    self.metrics,
                    report_id,
                    rules=self.rules,
                    as_of=self.clock.now(),
                    clock=self.clock,
                    hooks=[*self.review.match_hooks(), self._audited],
                )
            except Exception as exc:
                logger.opt(exception=exc).error("recon match run failed", report_id=str(report_id))
                continue
            for outcome, n in counts.items():
                totals[outcome] = totals.get(outcome, 0) + n
        return totals

    async def run_matches(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.match_due()
            except Exception as exc:  # the database is away: try again next round
                logger.opt(exception=exc).warning("recon match round failed")
            try:
                await self.review.work_once()
            except Exception as exc:  # the core or the database is away: next round
                logger.opt(exception=exc).warning("recon review rules round failed")
            await sleep_or_stop(stop, self.settings.match_interval_seconds)

    async def run(self, stop: asyncio.Event) -> None:
        """The consumer, the relay and the match schedule, until `stop` is set."""
        runner, relay = await self.runner(), await self.relay()
        await asyncio.gather(runner.run(stop), relay.run(stop), self.run_matches(stop))

    async def aclose(self) -> None:
        bus, self._bus = self._bus, None
        close = getattr(bus, "close", None)
        if close is not None:
            try:
                await close()
            except Exception as exc:
                logger.warning("closing the bus failed", error=type(exc).__name__)
        await self.review.aclose()
        await self.engine.dispose()
        if self._stream_engine is not None:
            await self._stream_engine.dispose()

"""The composition root: builds adapters, wires them to the modules' ports, and hands the
HTTP layer and the CLI a `Kora` container. Nothing is built at import time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType
from typing import Any, Self

import httpx
import sqlalchemy as sa
from loguru import logger
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# Importing the table modules registers every table on the shared metadata.
import kora.audit.adapters.tables
import kora.events.adapters.tables
import kora.events.consumers
import kora.identity.adapters.tables
import kora.ledger.adapters.tables
import kora.operations.adapters.tables
import kora.payments.adapters.tables
import kora.providers.adapters.tables  # noqa: F401
from kora.audit import SqlAuditTrail, audit_key_from_secret, verify_audit_chain
from kora.audit.domain import AuditReport
from kora.bootstrap_events import EventsRuntime
from kora.bootstrap_risk import build_payment_risk
from kora.bootstrap_settlement import CoreReconOutcomes
from kora.events import PRODUCER, EventRecorder
from kora.events.adapters.outbox import write_outbox
from kora.events.consumers import NotificationsConsumer, SimulatedSender, build_consumers
from kora.events.consumers.recon_outcomes import SettlementConsumer
from kora.events.signing import EventSigner, EventVerifier, load_signing_keys, load_verify_keys, verify_key_producers
from kora.identity import IdentityService, build_identity_adapters, build_service_authenticator
from kora.identity.adapters.nonces import SqlRequestNonceStore
from kora.identity.adapters.sql import SqlLoginThrottle, SqlRefreshTokenStore, SqlUserRepository
from kora.kernel import Clock, SystemClock
from kora.ledger import InvariantReport, Ledger
from kora.ledger.adapters.sql import AccountCache, SqlLedgerStore
from kora.observability import KoraMetrics, get_correlation_id, render_metrics
from kora.observability.event_metrics import EventMetrics
from kora.observability.service_metrics import ServiceMetrics
from kora.operations import OperationalControls
from kora.operations.adapters.prometheus import PrometheusControlMetrics
from kora.operations.adapters.sql import SqlControlStore
from kora.payments import FeeSchedule, PaymentsConfig, PaymentsService
from kora.payments.adapters.sql import SqlIdempotencyStore, SqlPaymentRepository
from kora.platform.db import create_engine
from kora.platform.settings import ConfigurationError, Settings, webhook_secret_name
from kora.platform.uow import SqlUnitOfWork
from kora.providers import (
    CardAcquirer,
    ProviderGateway,
    StaticCardAcquirers,
    StaticProviderRegistry,
)
from kora.providers.adapters.card import CARD_SIGNATURE_HEADER, HttpCardAcquirer, parse_card_notification
from kora.providers.adapters.momo import HttpMomoGateway, momo_callback_reference
from kora.providers.adapters.sandbox import SandboxGateway
from kora.providers.adapters.sql import SqlWebhookReceipts
from kora.providers.adapters.wave import HttpWaveGateway, parse_wave_event
from kora.providers.card import CardNotificationSource
from kora.providers.card_notifications import CardNotificationInbox
from kora.providers.resilience import ProviderGuard, ProviderPolicy
from kora.providers.routing import RoutingTable
from kora.providers.webhooks import PaymentAtProvider, SignedEvents, StatusHints, WebhookInbox, WebhookSource


class LedgerWalletOpener:
    """Identity's WalletOpener port, served by the ledger in the same transaction."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def open_wallet(self, owner_id: uuid.UUID, currency: str) -> uuid.UUID:
        return (await self._ledger.open_wallet(owner_id, currency)).id


class KoraUnitOfWork(SqlUnitOfWork):
    """One transaction, with every module's repositories built on its connection."""

    ledger: Ledger
    payments: SqlPaymentRepository
    idempotency: SqlIdempotencyStore
    audit: SqlAuditTrail
    users: SqlUserRepository
    refresh_tokens: SqlRefreshTokenStore
    throttle: SqlLoginThrottle
    wallets: LedgerWalletOpener
    request_nonces: SqlRequestNonceStore
    controls: SqlControlStore
    events: EventRecorder

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Clock,
        audit_key: bytes,
        audit_chains: int,
        accounts: AccountCache,
        signer: EventSigner,
        snapshot: bool = False,
        connection: AsyncConnection | None = None,
    ) -> None:
        super().__init__(engine, snapshot=snapshot, connection=connection)
        self._signer = signer
        self._accounts = accounts
        self._audit_chains = audit_chains
        self._clock = clock
        self._audit_key = audit_key

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        conn = self.connection
        self.events = EventRecorder()
        self.ledger = Ledger(SqlLedgerStore(conn, cache=self._accounts, events=self.events), self._clock)
        self.payments = SqlPaymentRepository(conn, events=self.events)
        self.idempotency = SqlIdempotencyStore(conn)
        self.audit = SqlAuditTrail(conn, key=self._audit_key, clock=self._clock, chains=self._audit_chains)
        self.users = SqlUserRepository(conn, events=self.events)
        self.refresh_tokens = SqlRefreshTokenStore(conn)
        self.throttle = SqlLoginThrottle(conn)
        self.wallets = LedgerWalletOpener(self.ledger)
        self.request_nonces = SqlRequestNonceStore(conn)
        self.controls = SqlControlStore(conn)
        self._after_commit: list[Callable[[], None]] = []
        return self

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once this transaction has committed (metrics of what it decided: a
        rolled-back transaction, e.g. a group commit that falls back, counts nothing)."""
        self._after_commit.append(callback)

    async def commit(self) -> None:
        """Write the events recorded meanwhile to the outbox, then commit: the state change and
        its events land together or not at all (ADR 0018)."""
        if len(self.events):
            await write_outbox(self.connection, self.events.drain(), self._signer, at=self._clock.now())
        await super().commit()
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await super().__aexit__(exc_type, exc, tb)


class IdentityDirectory:
    """Payments' RecipientDirectory port, served by the identity module."""

    def __init__(self, identity: IdentityService) -> None:
        self._identity = identity

    async def user_for_phone(self, phone_number: str) -> uuid.UUID | None:
        return await self._identity.resolve_user_by_phone(phone_number)

    async def mobile_money_number(self, user_id: uuid.UUID) -> str:
        return (await self._identity.profile(user_id)).phone_number


class Kora:
    """Everything the entrypoints need, built once per process (or per test)."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        providers: list[ProviderGateway] | None = None,
        registry: CollectorRegistry | None = None,
        acquirers: list[CardAcquirer] | None = None,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.engine = create_engine(settings.database_url, pool_size=settings.db_pool_size)
        self.registry = registry or CollectorRegistry()
        self.metrics = KoraMetrics(self.registry)
        self.event_metrics = EventMetrics(self.registry)
        self._audit_key = audit_key_from_secret(settings.secret("KORA_AUDIT_KEY"))
        self._accounts = AccountCache()
        try:
            self.event_signer, own_keys = load_signing_keys(settings.secret("KORA_EVENT_SIGNING_KEYS"))
            # Each key signs for one producer: the core's own keys for kora-core, the others for
            # what KORA_EVENT_VERIFY_KEYS says (the reconciliation service's: kora-reconciliation).
            self.event_verifier = EventVerifier(
                {**load_verify_keys(settings.event_verify_keys), **own_keys},
                producers={**verify_key_producers(settings.event_verify_keys), **dict.fromkeys(own_keys, PRODUCER)},
            )
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        adapters = build_identity_adapters(settings)
        self.identity = IdentityService(
            uow_factory=self.unit_of_work,
            clock=self.clock,
            settings=settings,
            metrics=self.metrics,
            **adapters,
        )
        self._http_client: httpx.AsyncClient | None = None
        gateways = providers or self._configured_gateways(settings)
        default = gateways[0].name if providers else settings.default_provider
        if not any(g.name == default for g in gateways):
            raise ConfigurationError(
                f"default provider {default!r} is not configured (KORA_DEFAULT_PROVIDER, KORA_PROVIDER_*_URL)"
            )
        # Controlled degradation (kora ops): pauses and disabled providers, cached per process.
        names = [g.name for g in gateways]
        self.controls = OperationalControls(
            self.unit_of_work,
            clock=self.clock,
            metrics=PrometheusControlMetrics(self.registry, providers=names),
            providers=names,
        )
        self.providers = StaticProviderRegistry(
            gateways,
            default=default,
            routing=_routing_table(settings),
            settlement_days=_settlement_days(settings),
            availability=self.controls,
        )
        self.acquirers = self._card_acquirers(settings, acquirers)
        self.risk = build_payment_risk(settings, self.engine, self.registry, self.clock)
        self.payments = PaymentsService(
            uow_factory=self.unit_of_work,
            directory=IdentityDirectory(self.identity),
            providers=self.providers,
            clock=self.clock,
            config=PaymentsConfig(
                idempotency_ttl=timedelta(seconds=settings.idempotency_ttl_seconds),
                group_commit_max=settings.group_commit_max,
                correction_max_amount=settings.correction_max_amount,
            ),
            metrics=self.metrics,
            merchant_fees=_merchant_fees(settings),
            acquirers=self.acquirers,
            card_fees=_card_fees(settings),
            risk=self.risk,
        )
        self.card_notifications = CardNotificationInbox(
            _card_notification_sources(settings, self.acquirers),
            receipts=SqlWebhookReceipts(self.engine),
            recorder=self.payments,
            clock=self.clock,
            metrics=self.metrics,
            tolerance_seconds=settings.webhook_tolerance_seconds,
        )
        self.events = self._build_events(settings)
        # Service-to-service identity (ADR 0023): who may call /v1/service, with which scopes.
        self.service_auth = build_service_authenticator(settings, self.clock)
        self.service_metrics = ServiceMetrics(self.registry, services=self.service_auth.services)
        self.webhooks = WebhookInbox(
            _webhook_sources(settings, self.providers),
            receipts=SqlWebhookReceipts(self.engine),
            answers=self.payments,
            payments=self._payment_at_provider,
            clock=self.clock,
            metrics=self.metrics,
            tolerance_seconds=settings.webhook_tolerance_seconds,
        )

    def _build_events(self, settings: Settings) -> EventsRuntime:
        # No SMS/push gateway is integrated yet: the simulated one records what would be sent
        # (user ids and templates; the real gateway would look the number up at send time).
        self.notification_sender = SimulatedSender()
        runtime = EventsRuntime(
            settings,
            engine=self.engine,
            clock=self.clock,
            verifier=self.event_verifier,
            metrics=self.event_metrics,
            handlers=[*build_consumers(sender=self.notification_sender, clock=self.clock), self._settlement_consumer()],
            audit=self._audit_operation,
        )
        notifications = runtime.handlers["notifications"]
        if not isinstance(notifications, NotificationsConsumer):
            raise ConfigurationError("the `notifications` consumer must be the NotificationsConsumer")
        self.notifications = notifications.dispatcher(self.engine)
        runtime.worker_jobs.setdefault("notifications", []).append(self._deliver_notifications)
        return runtime

    def _settlement_consumer(self) -> SettlementConsumer:
        """`settlement`: reconciliation's outcome events (a settlement confirmed, a mismatch confirmed)."""
        core = CoreReconOutcomes(
            settlements=self.payments.settlements, unit_of_work_on=lambda conn: self.unit_of_work(connection=conn)
        )
        return SettlementConsumer(core=core, clock=self.clock, metrics=self.event_metrics)

    async def _deliver_notifications(self, stop: asyncio.Event) -> None:
        """Beside the consumers: send the queued customer notifications that are due."""
        while not stop.is_set():
            counts: dict[str, int] = {}
            try:
                counts = await self.notifications.deliver_due(200)
            except Exception as exc:
                logger.opt(exception=exc).warning("notification delivery failed")
            for outcome, n in counts.items():
                if n:
                    self.event_metrics.notifications.labels(outcome).inc(n)
            if sum(counts.values()) < 200:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)

    async def _audit_operation(self, actor: str, action: str, subject: str, details: dict[str, Any]) -> None:
        """An operator's action outside any business use case (event replay, dead letters)."""
        async with self.unit_of_work() as uow:
            await uow.audit.record(
                actor=actor, action=action, subject=subject, correlation_id=get_correlation_id(), details=details
            )
            await uow.commit()

    def _configured_gateways(self, settings: Settings) -> list[ProviderGateway]:
        """A MoMo-style HTTP provider when KORA_PROVIDER_MOMO_URL is set; the sandbox (which
        confirms anything) only outside production, so no client can pick it there."""
        gateways: list[ProviderGateway] = [] if settings.is_production else [SandboxGateway()]
        if settings.provider_momo_url:
            policy = ProviderPolicy()
            # The client's own timeouts are the policy's, so a slow connect reads as "not sent".
            self._http_client = httpx.AsyncClient(timeout=policy.default_timeout.httpx_timeout())
            guard = ProviderGuard("momo", policy, metrics=self.metrics)
            # MoMo callbacks are only hints (webhooks.py); without a public URL it sends none.
            callback = f"{settings.public_base_url.rstrip('/')}/v1/webhooks/momo" if settings.public_base_url else None
            gateways.append(
                HttpMomoGateway(
                    "momo", settings.provider_momo_url, client=self._http_client, guard=guard, callback_url=callback
                )
            )
        if settings.provider_wave_url:
            policy = ProviderPolicy()
            if self._http_client is None:
                self._http_client = httpx.AsyncClient(timeout=policy.default_timeout.httpx_timeout())
            guard = ProviderGuard("wave", policy, metrics=self.metrics)
            gateways.append(HttpWaveGateway("wave", settings.provider_wave_url, client=self._http_client, guard=guard))
        return gateways

    def _card_acquirers(self, settings: Settings, given: list[CardAcquirer] | None) -> StaticCardAcquirers:
        """The card acquirer at KORA_PROVIDER_CARD_URL (registered as `card`), or the ones given."""
        if given is None:
            given = []
            if settings.provider_card_url:
                policy = ProviderPolicy()
                if self._http_client is None:
                    self._http_client = httpx.AsyncClient(timeout=policy.default_timeout.httpx_timeout())
                guard = ProviderGuard("card", policy, metrics=self.metrics)
                given.append(
                    HttpCardAcquirer("card", settings.provider_card_url, client=self._http_client, guard=guard)
                )
        return StaticCardAcquirers(given)

    async def _payment_at_provider(self, payment_id: uuid.UUID, provider: str) -> PaymentAtProvider | None:
        """What the webhook inbox needs to ask `provider` about one of our cash-ins/outs there:
        the payments module answers it (only it reads payment rows)."""
        query = await self.payments.status_query(payment_id, provider)
        return None if query is None else PaymentAtProvider(query.request, query.operation, query.unresolved)

    def unit_of_work(self, *, snapshot: bool = False, connection: AsyncConnection | None = None) -> KoraUnitOfWork:
        """A unit of work; on `connection`, a savepoint in its owner's transaction."""
        return KoraUnitOfWork(
            self.engine,
            clock=self.clock,
            audit_key=self._audit_key,
            audit_chains=self.settings.audit_chains,
            # Inside someone else's transaction an account another savepoint created may still roll
            # back with it: such units of work keep their own account cache, never the process's.
            accounts=self._accounts if connection is None else AccountCache(),
            signer=self.event_signer,
            snapshot=snapshot,
            connection=connection,
        )

    async def verify_ledger(self) -> InvariantReport:
        # One snapshot for accounts and entries, so postings made meanwhile are not half-seen.
        async with self.unit_of_work(snapshot=True) as uow:
            report = await uow.ledger.verify()
        by_check: dict[str, int] = {"EntriesBalance": 0, "BalanceMatchesEntries": 0, "NoNegativeWallet": 0}
        for violation in report.violations:
            by_check[violation.check] = by_check.get(violation.check, 0) + 1
        self.metrics.set_invariant_report(by_check, time.time())
        if not report.ok:
            logger.error("ledger invariants violated", violations=len(report.violations))
        return report

    async def verify_audit(self) -> AuditReport:
        async with self.engine.connect() as conn:
            return await verify_audit_chain(conn, key=self._audit_key, chains=self.settings.audit_chains)

    async def sweep_pending(self, stop: asyncio.Event | None = None) -> dict[str, int]:
        """One pass of the pending-payment sweeper (status queries for ambiguous outcomes)."""
        return await self.payments.sweep_pending(
            older_than=timedelta(seconds=self.settings.pending_min_age_seconds),
            give_up_after=timedelta(seconds=self.settings.pending_max_age_seconds),
            stop=stop,
        )

    async def run_sweeper(self, stop: asyncio.Event) -> None:
        """Sweep every `sweep_interval_seconds` until `stop` is set (run by the API process).
        Several processes may sweep at once: finishing a payment is idempotent under its row lock."""
        interval = self.settings.sweep_interval_seconds
        while interval > 0 and not stop.is_set():
            try:
                await self.sweep_pending(stop)
            except Exception as exc:
                logger.opt(exception=exc).error("pending-payment sweep failed")
            await self.sweep_card_payments(stop)
            await self.purge_request_nonces()
            await self.refresh_settlement_backlog()
            await self.refresh_outbox_gauges()
            await self.refresh_risk_gauges()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)

    async def sweep_card_payments(self, stop: asyncio.Event | None = None) -> dict[str, int]:
        """Piggybacked on the sweeper's loop: resolve card payments and refunds whose acquirer
        answer is unknown, and end authorizations past their expiry (asking the acquirer first)."""
        try:
            return await self.payments.sweep_card_payments(
                older_than=timedelta(seconds=self.settings.pending_min_age_seconds),
                give_up_after=timedelta(seconds=self.settings.pending_max_age_seconds),
                stop=stop,
            )
        except Exception as exc:
            logger.opt(exception=exc).error("card payment sweep failed")
            return {}

    async def refresh_risk_gauges(self) -> None:
        """Piggybacked on the sweeper's loop: the risk review queue's size and oldest age."""
        try:
            await self.risk.refresh_queue_gauges()
        except Exception as exc:
            logger.opt(exception=exc).error("risk gauge refresh failed")

    async def refresh_outbox_gauges(self) -> None:
        """Piggybacked on the sweeper's loop: the outbox backlog and age, exported by the API too."""
        try:
            await self.events.refresh_outbox_gauges()
        except Exception as exc:
            logger.opt(exception=exc).error("outbox gauge refresh failed")

    async def refresh_settlement_backlog(self) -> None:
        """Piggybacked on the sweeper's loop: refresh the overdue-settlement gauges (captured
        payments past their J+N due time), which the late-settlement alert reads."""
        try:
            await self.payments.settlement_backlog()
        except Exception as exc:
            logger.opt(exception=exc).error("settlement backlog refresh failed")

    async def purge_request_nonces(self) -> int:
        """Housekeeping, piggybacked on the sweeper's loop: drop anti-replay nonces whose
        timestamps would be refused anyway. A failure is logged and retried next pass."""
        try:
            purged = await self.identity.purge_request_nonces()
        except Exception as exc:
            logger.opt(exception=exc).error("request nonce purge failed")
            return 0
        self.metrics.request_nonces_purged(purged)
        return purged

    async def database_ready(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except Exception as exc:
            logger.warning("database not ready", error=type(exc).__name__)
            return False
        return True

    def render_metrics(self, accept: str | None) -> tuple[bytes, str]:
        return render_metrics(self.registry, accept)

    async def aclose(self) -> None:
        await self.events.aclose()
        if self._http_client is not None:
            await self._http_client.aclose()
        await self.engine.dispose()


def _routing_table(settings: Settings) -> RoutingTable | None:
    if not settings.provider_routing:
        return None
    try:
        return RoutingTable.from_json(settings.provider_routing)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError too
        raise ConfigurationError(f"KORA_PROVIDER_ROUTING: {exc}") from exc


def _settlement_days(settings: Settings) -> dict[str, int]:
    if not settings.provider_settlement_days:
        return {}
    try:
        data = json.loads(settings.provider_settlement_days)
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and 0 <= v <= 30 for k, v in data.items()
        ):
            raise ValueError("expected {provider: days (0..30)}")
    except ValueError as exc:
        raise ConfigurationError(f"KORA_PROVIDER_SETTLEMENT_DAYS: {exc}") from exc
    return data


def _merchant_fees(settings: Settings) -> FeeSchedule:
    try:
        return FeeSchedule(bps=settings.merchant_fee_bps, minimum=settings.merchant_fee_min)
    except ValueError as exc:
        raise ConfigurationError(f"KORA_MERCHANT_FEE_BPS / KORA_MERCHANT_FEE_MIN: {exc}") from exc


def _card_fees(settings: Settings) -> FeeSchedule:
    try:
        return FeeSchedule(bps=settings.card_fee_bps, minimum=settings.card_fee_min)
    except ValueError as exc:
        raise ConfigurationError(f"KORA_CARD_FEE_BPS / KORA_CARD_FEE_MIN: {exc}") from exc


def _card_notification_sources(settings: Settings, acquirers: StaticCardAcquirers) -> dict[str, CardNotificationSource]:
    """Each HTTP acquirer signs its notifications with KORA_PROVIDER_<NAME>_WEBHOOK_SECRET
    (required in production; without it every notification is refused as forged)."""
    sources: dict[str, CardNotificationSource] = {}
    for name in acquirers.names:
        if not isinstance(acquirers.get(name), HttpCardAcquirer):
            continue
        secret_name = webhook_secret_name(name)
        secrets = tuple(s.strip() for s in settings.secrets.get(secret_name, "").split(",") if s.strip())
        if not secrets:
            if settings.is_production:
                raise ConfigurationError(f"{secret_name} is required to verify {name}'s notifications")
            logger.warning("no webhook secret for {acquirer}: its notifications will be refused", acquirer=name)
        sources[name] = CardNotificationSource(secrets, parse_card_notification, CARD_SIGNATURE_HEADER)
    return sources


def _webhook_sources(settings: Settings, providers: StaticProviderRegistry) -> dict[str, WebhookSource]:
    """Wave-style providers send signed events (their secret is required in production);
    MoMo-style callbacks are hints that prompt a status query."""
    sources: dict[str, WebhookSource] = {}
    for name in providers.names:
        gateway = providers.get(name)
        if isinstance(gateway, HttpWaveGateway):
            secret_name = webhook_secret_name(name)
            secrets = tuple(s.strip() for s in settings.secrets.get(secret_name, "").split(",") if s.strip())
            if not secrets:
                if settings.is_production:
                    raise ConfigurationError(f"{secret_name} is required to verify {name}'s webhooks")
                logger.warning("no webhook secret for {provider}: its webhooks will be refused", provider=name)
            sources[name] = SignedEvents(secrets, parse_wave_event)
        elif isinstance(gateway, HttpMomoGateway):
            sources[name] = StatusHints(gateway, momo_callback_reference)
    return sources

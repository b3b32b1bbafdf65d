"""What the HTTP layer reaches through `request.app.state.kora`: the services built by the
composition root. Routes depend on this, never on adapters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, cast

from fastapi import Request

if TYPE_CHECKING:
    from kora.bootstrap_events import EventsRuntime
    from kora.bootstrap_risk import SqlPaymentRisk
    from kora.identity import IdentityService, ServiceAuthenticator
    from kora.ledger import InvariantReport
    from kora.observability import KoraMetrics
    from kora.observability.service_metrics import ServiceMetrics
    from kora.operations import OperationalControls
    from kora.payments import PaymentsService
    from kora.platform.settings import Settings
    from kora.providers import StaticProviderRegistry
    from kora.providers.card_notifications import CardNotificationInbox
    from kora.providers.webhooks import WebhookInbox


class Services(Protocol):
    settings: Settings
    identity: IdentityService
    payments: PaymentsService
    metrics: KoraMetrics
    webhooks: WebhookInbox
    card_notifications: CardNotificationInbox
    events: EventsRuntime
    service_auth: ServiceAuthenticator
    service_metrics: ServiceMetrics
    risk: SqlPaymentRisk  # `assessing` is False when KORA_RISK_ENABLED=false
    controls: OperationalControls
    providers: StaticProviderRegistry

    async def verify_ledger(self) -> InvariantReport: ...

    async def database_ready(self) -> bool: ...

    def render_metrics(self, accept: str | None) -> tuple[bytes, str]: ...


def services(request: Request) -> Services:
    return cast("Services", request.app.state.kora)

"""Card acquirer notifications (chargebacks): verified like Wave-style provider webhooks, applied
once.

The acquirer signs each delivery (`X-Acquirer-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,
f"{t}.{raw_body}")>`); the signature is checked with the provider webhooks' verifier (constant
time, any of the acquirer's secrets, bounded age both ways) before the body is even parsed.
Each event id is applied once: a receipt per (acquirer, event id) is kept in the same store as
the provider webhooks', and a later copy is acknowledged without effect (`duplicate`, or
`replayed` when byte-identical). Correctness does not rest on the receipts: a chargeback moves
its payment to CHARGED_BACK once, under the payment's row lock, and the ledger's unique
(payment, step) index refuses a second chargeback posting.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping

from loguru import logger

from kora.kernel import Clock
from kora.observability import get_correlation_id, get_tracer
from kora.providers.card import CardNotification, CardNotificationSource, ChargebackRecorder
from kora.providers.webhooks import (
    DEFAULT_TOLERANCE_SECONDS,
    MAX_EVENT_ID_LENGTH,
    NoopWebhookMetrics,
    Rejection,
    UnknownWebhookSource,
    WebhookMetrics,
    WebhookReceipt,
    WebhookReceipts,
    WebhookRejected,
    verify_signature,
)

_tracer = get_tracer("kora.providers.card")


class CardNotificationInbox:
    """Receives every card acquirer's notifications. Outcomes (a metric label, and the answer's
    `status`): `applied`, `duplicate`, `replayed`, `unknown_payment`, `conflict`, `ignored`."""

    def __init__(
        self,
        sources: Mapping[str, CardNotificationSource],
        *,
        receipts: WebhookReceipts,
        recorder: ChargebackRecorder,
        clock: Clock,
        metrics: WebhookMetrics | None = None,
        tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    ) -> None:
        if tolerance_seconds <= 0:
            raise ValueError("tolerance_seconds must be > 0")
        self._sources = dict(sources)
        self._receipts = receipts
        self._recorder = recorder
        self._clock = clock
        self._metrics = metrics or NoopWebhookMetrics()
        self._tolerance = tolerance_seconds

    @property
    def acquirers(self) -> tuple[str, ...]:
        return tuple(self._sources)

    async def receive(self, acquirer: str, headers: Mapping[str, str], raw_body: bytes) -> str:
        """Handle one delivery; returns its outcome. Raises UnknownWebhookSource, and
        WebhookRejected before anything is looked up or changed."""
        source = self._sources.get(acquirer)
        if source is None:
            raise UnknownWebhookSource(acquirer)
        with _tracer.start_as_current_span("card.notification.receive", attributes={"kora.acquirer": acquirer}) as span:
            try:
                outcome, kind = await self._receive(acquirer, source, headers, raw_body)
            except WebhookRejected as exc:
                self._metrics.webhook_rejected(acquirer, exc.reason.value)
                span.set_attribute("kora.webhook.rejected", exc.reason.value)
                logger.warning("card notification rejected", acquirer=acquirer, reason=exc.reason.value)
                raise
            span.set_attribute("kora.webhook.outcome", outcome)
        self._metrics.webhook_received(acquirer, outcome)
        logger.info("card notification received", acquirer=acquirer, outcome=outcome, event_type=kind)
        return outcome

    async def _receive(
        self, acquirer: str, source: CardNotificationSource, headers: Mapping[str, str], raw: bytes
    ) -> tuple[str, str]:
        now = self._clock.now()
        verified = verify_signature(
            headers.get(source.header),
            raw,
            secrets=source.secrets,
            now=int(now.timestamp()),
            tolerance_seconds=self._tolerance,
        )
        event = _read(source, raw)
        if not event.event_id or len(event.event_id) > MAX_EVENT_ID_LENGTH:
            raise WebhookRejected(Rejection.MALFORMED_EVENT)
        seen = await self._receipts.find(acquirer, event.event_id)
        if seen is not None:
            return ("replayed" if hmac.compare_digest(seen.signature, verified.signature) else "duplicate"), event.kind
        if event.chargeback is None:
            outcome = "ignored"
        else:
            outcome = await self._recorder.record_chargeback(
                event.chargeback, acquirer=acquirer, correlation_id=get_correlation_id()
            )
        payment_id = event.chargeback.payment_id if event.chargeback else None
        receipt = WebhookReceipt(acquirer, event.event_id, verified.signature, now, outcome, payment_id)
        if not await self._receipts.add(receipt):
            outcome = "duplicate"  # a concurrent copy got its receipt in first; the chargeback applies once anyway
        return outcome, event.kind


def _read(source: CardNotificationSource, raw: bytes) -> CardNotification:
    try:
        return source.parse(json.loads(raw))
    except (ValueError, UnicodeDecodeError, TypeError, KeyError):
        raise WebhookRejected(Rejection.MALFORMED_EVENT) from None

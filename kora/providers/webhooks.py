"""Provider webhooks: what a provider tells Kora on its own, and how much of it Kora believes.

Two styles, per provider:

- **Signed events** (Wave style): ``Wave-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,
  f"{t}.{raw_body}")>``. The signature pins the body to one of our secrets and the timestamp
  bounds its age (``tolerance_seconds`` both ways: stale and future-dated are refused), so the
  body is believed. Each event id is applied once: a receipt per (provider, event id) is kept
  in the database (so several Kora processes agree), and a later copy is acknowledged without
  effect — a *duplicate* (the provider re-sent it, freshly signed) or a *replay* (a byte-identical
  delivery, same signature, seen again). Both answer 200: a 4xx would only make an honest
  provider retry (the simulator's duplicate copies are signed in the same second, so they are
  byte-identical), and nothing is gained by it — what disarms a replay is that it can change
  nothing. Replays are counted and logged apart so an attack stands out.
- **Status hints** (MoMo style): the callback is unsigned in the real API, so its body is never
  believed. It only names a payment; Kora asks the provider's status API about it
  (``gateway.status``) and records *that* answer.

Correctness never rests on the receipts: recording a provider's answer is idempotent and a
contradiction is flagged by the payments module, so a duplicate arriving after its receipt was
purged changes nothing either. Receipts make duplicates cheap, make replays visible, and say
which events a payment got.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from loguru import logger

from kora.kernel import Clock
from kora.observability import get_correlation_id, get_tracer
from kora.providers.ports import (
    STATUS_UNREACHABLE,
    ProviderGateway,
    ProviderOperation,
    ProviderOutcome,
    ProviderRequest,
    ProviderResult,
)

DEFAULT_TOLERANCE_SECONDS = 300
WAVE_SIGNATURE_HEADER = "Wave-Signature"
MAX_EVENT_ID_LENGTH = 128

T = TypeVar("T")

_tracer = get_tracer("kora.providers.webhooks")
# ASCII only: str.isdigit() also takes "²" (which int() then refuses) and other scripts' digits.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_MAX_HEADER_LENGTH = 1024


class Rejection(enum.StrEnum):
    """Why a delivery was refused (a metric label)."""

    MISSING_SIGNATURE = "missing_signature"
    MALFORMED_SIGNATURE = "malformed_signature"
    FORGED = "forged"  # no signature matches any of our secrets
    STALE = "stale"  # authentic, but older than the tolerance window
    FUTURE = "future"  # authentic, but dated beyond the tolerance window
    MALFORMED_EVENT = "malformed_event"


class WebhookRejected(Exception):
    """The delivery was refused before anything was looked up or changed."""

    def __init__(self, reason: Rejection) -> None:
        super().__init__(reason.value)
        self.reason = reason

    @property
    def out_of_window(self) -> bool:
        return self.reason in (Rejection.STALE, Rejection.FUTURE)


class MalformedEvent(ValueError):
    """The body is not an event of the provider's format (or names no payment)."""


class UnknownWebhookSource(LookupError):
    """No provider of that name sends Kora webhooks."""


# ------------------------------------------------------------------------------ signatures
@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    timestamp: int
    signature: str  # the v1 value that matched: what identifies this very delivery


def compute_signature(secret: str, timestamp: int, raw_body: bytes) -> str:
    message = str(timestamp).encode("ascii") + b"." + raw_body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, raw_body: bytes) -> str:
    """The header a provider would send (tests and tools sign with it)."""
    return f"t={timestamp},v1={compute_signature(secret, timestamp, raw_body)}"


def parse_signature_header(header: str) -> tuple[int, list[str]]:
    """(timestamp, v1 signatures). Unknown schemes (``v0=``...) are ignored, as senders add
    them during upgrades. Raises WebhookRejected(MALFORMED_SIGNATURE)."""
    if len(header) > _MAX_HEADER_LENGTH:
        raise WebhookRejected(Rejection.MALFORMED_SIGNATURE)
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise WebhookRejected(Rejection.MALFORMED_SIGNATURE)
        if key == "t":
            if timestamp is not None or _TIMESTAMP.fullmatch(value) is None:
                raise WebhookRejected(Rejection.MALFORMED_SIGNATURE)
            timestamp = int(value)
        elif key == "v1":
            if _HEX_SIGNATURE.fullmatch(value) is None:
                raise WebhookRejected(Rejection.MALFORMED_SIGNATURE)
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookRejected(Rejection.MALFORMED_SIGNATURE)
    return timestamp, signatures


def verify_signature(
    header: str | None,
    raw_body: bytes,
    *,
    secrets: Sequence[str],
    now: int,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> VerifiedSignature:
    """Check a ``t=<unix>,v1=<hex>`` header against ``raw_body`` (the exact bytes received).

    Any of ``secrets`` may match (rotation: the new one first, the old one until the provider
    has switched). The signature is checked before the age, so STALE and FUTURE are only ever
    said of authentic deliveries (clock skew, or an old copy re-sent). Comparisons are
    constant-time. Raises :class:`WebhookRejected`."""
    if not header:
        raise WebhookRejected(Rejection.MISSING_SIGNATURE)
    timestamp, candidates = parse_signature_header(header)
    matched: str | None = None
    for secret in secrets:
        expected = compute_signature(secret, timestamp, raw_body)
        for candidate in candidates:
            if hmac.compare_digest(expected, candidate):
                matched = candidate
    if matched is None:
        raise WebhookRejected(Rejection.FORGED)
    if now - timestamp > tolerance_seconds:
        raise WebhookRejected(Rejection.STALE)
    if timestamp - now > tolerance_seconds:
        raise WebhookRejected(Rejection.FUTURE)
    return VerifiedSignature(timestamp, matched)


# ------------------------------------------------------------------------------ receipts
@dataclass(frozen=True, slots=True)
class WebhookReceipt:
    provider: str
    event_id: str
    signature: str
    received_at: datetime
    outcome: str
    payment_id: uuid.UUID | None = None


class WebhookReceipts(Protocol):
    """Which events were received, shared by every Kora process."""

    async def find(self, provider: str, event_id: str) -> WebhookReceipt | None: ...

    async def add(self, receipt: WebhookReceipt) -> bool:
        """Store it; False when (provider, event id) is already there (a concurrent copy)."""
        ...

    async def purge(self, *, received_before: datetime) -> int:
        """Forget receipts older than ``received_before``; returns how many."""
        ...


# ------------------------------------------------------------------------------ sources
@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """A signed event, read by the provider's adapter. ``payment_id`` None: not about one of our
    payments; ``result`` None: not an outcome (an event type Kora does not act on)."""

    event_id: str
    kind: str
    payment_id: uuid.UUID | None
    result: ProviderResult | None


EventParser = Callable[[Any], ProviderEvent]  # the decoded JSON body → event; MalformedEvent


@dataclass(frozen=True, slots=True)
class SignedEvents:
    secrets: tuple[str, ...]
    parse: EventParser
    header: str = WAVE_SIGNATURE_HEADER


@dataclass(frozen=True, slots=True)
class StatusHints:
    gateway: ProviderGateway
    reference: Callable[[Any], uuid.UUID]  # which payment the callback names; MalformedEvent


WebhookSource = SignedEvents | StatusHints


# ------------------------------------------------------------------------------ ports
class ProviderAnswers(Protocol):
    """Served by `PaymentsService`."""

    async def record_provider_answer(
        self,
        payment_id: uuid.UUID,
        result: ProviderResult,
        *,
        provider: str,
        correlation_id: str | None = None,
    ) -> bool: ...


@dataclass(frozen=True, slots=True)
class PaymentAtProvider:
    """What a status query needs about one of our payments at a provider."""

    request: ProviderRequest
    operation: ProviderOperation
    unresolved: bool  # still waiting on the provider (INITIATED / AUTHORIZED)


PaymentLookup = Callable[[uuid.UUID, str], Awaitable[PaymentAtProvider | None]]


class WebhookMetrics(Protocol):
    def webhook_received(self, provider: str, outcome: str) -> None: ...

    def webhook_rejected(self, provider: str, reason: str) -> None: ...


class NoopWebhookMetrics:
    def webhook_received(self, provider: str, outcome: str) -> None:
        pass

    def webhook_rejected(self, provider: str, reason: str) -> None:
        pass


# ------------------------------------------------------------------------------ the inbox
class WebhookInbox:
    """Receives every provider's webhooks: verify (signed style) or ask (hint style), apply
    once, keep a receipt. Outcomes (a metric label, and the answer's ``status``): ``applied``,
    ``pending``, ``duplicate``, ``replayed``, ``unknown_payment``, ``ignored``,
    ``already_final``, ``unreachable``."""

    def __init__(
        self,
        sources: Mapping[str, WebhookSource],
        *,
        receipts: WebhookReceipts,
        answers: ProviderAnswers,
        payments: PaymentLookup,
        clock: Clock,
        metrics: WebhookMetrics | None = None,
        tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
        retention: timedelta = timedelta(days=7),
        purge_every: timedelta = timedelta(hours=1),
    ) -> None:
        if tolerance_seconds <= 0:
            raise ValueError("tolerance_seconds must be > 0")
        if retention < timedelta(seconds=2 * tolerance_seconds):
            # A receipt must outlive every copy that could still pass the age check.
            raise ValueError("receipts must be kept at least twice the tolerance window")
        self._sources = dict(sources)
        self._receipts = receipts
        self._answers = answers
        self._payments = payments
        self._clock = clock
        self._metrics = metrics or NoopWebhookMetrics()
        self._tolerance = tolerance_seconds
        self._retention = retention
        self._purge_every = purge_every
        self._next_purge: datetime | None = None

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(self._sources)

    def is_signed(self, provider: str) -> bool:
        return isinstance(self._sources.get(provider), SignedEvents)

    async def receive(self, provider: str, headers: Mapping[str, str], raw_body: bytes) -> str:
        """Handle one delivery; returns its outcome. Raises UnknownWebhookSource,
        WebhookRejected (nothing looked up, nothing changed)."""
        source = self._sources.get(provider)
        if source is None:
            raise UnknownWebhookSource(provider)
        with _tracer.start_as_current_span("webhook.receive", attributes={"kora.provider": provider}) as span:
            try:
                if isinstance(source, SignedEvents):
                    outcome = await self._signed(provider, source, headers, raw_body)
                else:
                    outcome = await self._hint(provider, source, raw_body)
            except WebhookRejected as exc:
                self._metrics.webhook_rejected(provider, exc.reason.value)
                span.set_attribute("kora.webhook.rejected", exc.reason.value)
                logger.warning("webhook rejected", provider=provider, reason=exc.reason.value)
                raise
            span.set_attribute("kora.webhook.outcome", outcome)
        self._metrics.webhook_received(provider, outcome)
        await self._purge_if_due()
        return outcome

    async def _signed(self, provider: str, source: SignedEvents, headers: Mapping[str, str], raw: bytes) -> str:
        now = self._clock.now()
        verified = verify_signature(
            headers.get(source.header),
            raw,
            secrets=source.secrets,
            now=int(now.timestamp()),
            tolerance_seconds=self._tolerance,
        )
        event = _read(source.parse, raw)
        if not event.event_id or len(event.event_id) > MAX_EVENT_ID_LENGTH:
            raise WebhookRejected(Rejection.MALFORMED_EVENT)
        seen = await self._receipts.find(provider, event.event_id)
        if seen is not None:
            outcome = "replayed" if hmac.compare_digest(seen.signature, verified.signature) else "duplicate"
            log = logger.warning if outcome == "replayed" else logger.info
            log("webhook already received", provider=provider, outcome=outcome, event_type=event.kind)
            return outcome
        outcome = await self._apply(provider, event)
        receipt = WebhookReceipt(provider, event.event_id, verified.signature, now, outcome, event.payment_id)
        if not await self._receipts.add(receipt):
            outcome = "duplicate"  # a concurrent copy got its receipt in first; applying twice is a no-op
        logger.info(
            "webhook received",
            provider=provider,
            outcome=outcome,
            event_type=event.kind,
            payment_id=str(event.payment_id) if event.payment_id else None,
        )
        return outcome

    async def _apply(self, provider: str, event: ProviderEvent) -> str:
        if event.payment_id is None or event.result is None:
            return "ignored"
        if event.result.outcome is ProviderOutcome.PENDING:
            return "pending"
        recorded = await self._answers.record_provider_answer(
            event.payment_id, event.result, provider=provider, correlation_id=get_correlation_id()
        )
        return "applied" if recorded else "unknown_payment"

    async def _hint(self, provider: str, source: StatusHints, raw: bytes) -> str:
        """The callback names a payment; only the provider's status API is believed."""
        payment_id = _read(source.reference, raw)
        found = await self._payments(payment_id, provider)
        if found is None:
            outcome = "unknown_payment"
        elif not found.unresolved:
            outcome = "already_final"  # nothing to learn; no status query for every copy
        else:
            result = await source.gateway.status(found.request, found.operation)
            if result.outcome is ProviderOutcome.PENDING:
                outcome = "unreachable" if result.failure_code == STATUS_UNREACHABLE else "pending"
            else:
                recorded = await self._answers.record_provider_answer(
                    payment_id, result, provider=provider, correlation_id=get_correlation_id()
                )
                outcome = "applied" if recorded else "unknown_payment"
        logger.info("provider callback handled as a hint", provider=provider, outcome=outcome)
        return outcome

    async def purge_receipts(self) -> int:
        """Forget receipts older than the retention (any process may run it; it is idempotent)."""
        purged = await self._receipts.purge(received_before=self._clock.now() - self._retention)
        if purged:
            logger.info("webhook receipts purged", count=purged)
        return purged

    async def _purge_if_due(self) -> None:
        now = self._clock.now()
        if self._next_purge is not None and now < self._next_purge:
            return
        self._next_purge = now + self._purge_every
        try:
            await self.purge_receipts()
        except Exception as exc:  # housekeeping must never fail a delivery already applied
            logger.opt(exception=exc).warning("purging webhook receipts failed")


def _read(reader: Callable[[Any], T], raw: bytes) -> T:
    """``reader`` applied to the JSON body; any failure (MalformedEvent is a ValueError) is a
    MALFORMED_EVENT rejection."""
    try:
        return reader(json.loads(raw))
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected(Rejection.MALFORMED_EVENT) from None

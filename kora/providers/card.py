"""The card acquirer port: how Kora asks a card acquirer to authorize, capture, void and refund
a card payment, and how it receives the acquirer's signed notifications (chargebacks).

Results are in our words. An answer that does not say what happened (a timeout, a 5xx, a body
we cannot read) is PENDING, never guessed: the caller resolves it with `status`. A FAILED result
with `not_accepted` means the acquirer certainly did not take the request (connection refused,
breaker open): nothing happened there.

The card token is sensitive: it goes to the acquirer and nowhere else (not logged, not stored,
not in an event); `CardAuthorizationRequest` keeps it out of its repr.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from kora.kernel import Money

# Failure codes the adapters report (our words; the acquirer's own decline codes pass through
# when they are in DECLINE_CODES, anything else is `card_declined`).
AUTHORIZATION_EXPIRED = "authorization_expired"
AUTHORIZATION_VOIDED = "authorization_voided"
AUTHORIZATION_CAPTURED = "authorization_captured"
AUTHORIZATION_DECLINED = "authorization_declined"
AUTHORIZATION_NOT_FOUND = "authorization_not_found"
NOT_CAPTURED = "not_captured"
AMOUNT_TOO_LARGE = "amount_too_large"
CARD_DECLINED = "card_declined"
ACQUIRER_UNAVAILABLE = "acquirer_unavailable"
DECLINE_CODES = frozenset(
    {
        "do_not_honor",
        "insufficient_funds",
        "invalid_card",
        "expired_card",
        "exceeds_limit",
        "processing_error",
        "invalid_currency",
    }
)


class CardOutcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PENDING = "pending"


class AuthorizationState(enum.StrEnum):
    """What the acquirer says of an authorization. UNKNOWN: it has no such authorization;
    UNREACHABLE: it could not be asked (nothing was learnt)."""

    AUTHORIZED = "authorized"
    DECLINED = "declined"
    CAPTURED = "captured"
    VOIDED = "voided"
    EXPIRED = "expired"
    UNKNOWN = "unknown"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class CardAuthorizationRequest:
    """Our payment id is the reference the acquirer deduplicates authorizations on."""

    payment_id: uuid.UUID
    money: Money
    card_token: str = field(repr=False)
    correlation_id: str | None = None


@dataclass(frozen=True, slots=True)
class CardResult:
    """An acquirer's answer to authorize, capture, void or refund. `amount` is what the acquirer
    recorded (the captured or refunded amount); `reference` its id of the capture/void/refund;
    `expires_at` when an authorization lapses."""

    outcome: CardOutcome
    authorization_id: str | None = None
    reference: str | None = None
    amount: int | None = None
    failure_code: str | None = None
    expires_at: datetime | None = None
    not_accepted: bool = False


@dataclass(frozen=True, slots=True)
class AuthorizationStatus:
    """An authorization as the acquirer has it now (amounts in minor units)."""

    state: AuthorizationState
    authorization_id: str | None = None
    amount: int = 0
    captured_amount: int = 0
    refunded_amount: int = 0
    chargeback_amount: int = 0
    expires_at: datetime | None = None
    decline_code: str | None = None

    @property
    def known(self) -> bool:
        return self.state not in (AuthorizationState.UNKNOWN, AuthorizationState.UNREACHABLE)


class CardAcquirer(Protocol):
    """One card acquirer. Each call reports what happened there; none raises for an acquirer's
    refusal or an ambiguous outcome (PENDING). `reference` is our id of the payment (capture,
    void) or of the refund: the acquirer's idempotency key for that operation."""

    name: str

    async def authorize(self, request: CardAuthorizationRequest) -> CardResult:
        """Hold the amount on the shopper's card. SUCCEEDED with the authorization id and its
        expiry; FAILED with the decline reason."""
        ...

    async def capture(
        self, authorization_id: str, money: Money, *, reference: uuid.UUID, correlation_id: str | None
    ) -> CardResult:
        """Capture `money` (at most the authorized amount, once). An authorization already
        captured answers SUCCEEDED with the amount the acquirer captured."""
        ...

    async def void(self, authorization_id: str, *, reference: uuid.UUID, correlation_id: str | None) -> CardResult:
        """Release the hold. An authorization already voided answers SUCCEEDED."""
        ...

    async def refund(
        self, authorization_id: str, money: Money, *, reference: uuid.UUID, correlation_id: str | None
    ) -> CardResult:
        """Give `money` back to the card (partial, repeated up to what was captured). Never
        retried blindly: an ambiguous refund is PENDING and resolved from `status`."""
        ...

    async def status(self, authorization_id: str, *, correlation_id: str | None) -> AuthorizationStatus:
        """What the acquirer knows of the authorization now; UNREACHABLE when it cannot be asked."""
        ...


class StaticCardAcquirers:
    """The configured acquirers by name (the payments module's `CardAcquirerRegistry`)."""

    def __init__(self, acquirers: Iterable[CardAcquirer], *, default: str | None = None) -> None:
        self._acquirers = {a.name: a for a in acquirers}
        if default is None and self._acquirers:
            default = next(iter(self._acquirers))
        if default is not None and default not in self._acquirers:
            raise ValueError(f"default card acquirer {default!r} is not configured")
        self._default = default

    def get(self, name: str) -> CardAcquirer | None:
        return self._acquirers.get(name)

    @property
    def default(self) -> str | None:
        return self._default

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._acquirers)


# ------------------------------------------------------------------------------ notifications
@dataclass(frozen=True, slots=True)
class Chargeback:
    """A chargeback the acquirer notified: the issuer took `amount` back from the merchant.
    `payment_id` is our reference as the acquirer echoes it (None when it is not one of ours);
    `reason` a short code (`fraud`, `not_received`...), never free text."""

    event_id: str
    authorization_id: str
    payment_id: uuid.UUID | None
    amount: int
    currency: str
    reason: str


@dataclass(frozen=True, slots=True)
class CardNotification:
    """A signed acquirer event, read by the adapter; `chargeback` None: an event Kora does not
    act on."""

    event_id: str
    kind: str
    chargeback: Chargeback | None


NotificationParser = Callable[[Any], CardNotification]  # decoded JSON → event; ValueError if malformed


@dataclass(frozen=True, slots=True)
class CardNotificationSource:
    """How one acquirer signs its notifications: `header` carries `t=<unix>,v1=<hex HMAC>`
    over `t.body` with one of `secrets` (several while rotating)."""

    secrets: tuple[str, ...]
    parse: NotificationParser
    header: str


class ChargebackRecorder(Protocol):
    """Served by `PaymentsService`: applies a chargeback once; returns what it did (`applied`,
    `duplicate`, `unknown_payment`, `conflict`)."""

    async def record_chargeback(self, chargeback: Chargeback, *, acquirer: str, correlation_id: str | None) -> str: ...


SourceMap = Mapping[str, CardNotificationSource]

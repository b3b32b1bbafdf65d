"""The provider port: how Kora asks a mobile-money (or card) provider to move money.

The payments domain never knows which provider it talks to. Adapters translate one provider's
API into these calls; an ambiguous outcome is reported as PENDING, never guessed.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from typing import Protocol

from kora.kernel import Money

# `ProviderResult.failure_code` of a PENDING status answer when the provider could not be asked
# at all (down, timed out): nothing was learnt, so nobody may conclude from it.
STATUS_UNREACHABLE = "status_unreachable"


class ProviderOperation(enum.StrEnum):
    COLLECT = "collect"
    DISBURSE = "disburse"


class ProviderOutcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    """Our payment id is the reference the provider deduplicates on."""

    payment_id: uuid.UUID
    money: Money
    account_ref: str  # the customer's wallet reference at the provider (opaque, never logged)
    correlation_id: str | None


@dataclass(frozen=True, slots=True)
class ProviderResult:
    """A provider's answer. `not_accepted` marks a FAILED result where the provider certainly
    did not take the request (connection refused, breaker open, bulkhead full, or a decline
    that policy marks as retryable elsewhere): only then may routing try the next provider."""

    outcome: ProviderOutcome
    provider_ref: str | None = None
    failure_code: str | None = None
    not_accepted: bool = False


class ProviderGateway(Protocol):
    name: str

    async def collect(self, request: ProviderRequest) -> ProviderResult:
        """Pull money from the customer's mobile-money account into ours (cash-in)."""
        ...

    async def disburse(self, request: ProviderRequest) -> ProviderResult:
        """Push money from ours to the customer's mobile-money account (cash-out)."""
        ...

    async def status(self, request: ProviderRequest, operation: ProviderOperation) -> ProviderResult:
        """What the provider knows of an earlier request with this payment id: how an ambiguous
        outcome (a timeout, a lost answer) is resolved. PENDING when it is still undecided; FAILED
        with `failure_code="not_found"` when the provider never received it."""
        ...

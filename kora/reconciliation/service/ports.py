"""The ports the reconciliation use cases sit on: where reports are stored, how they are encrypted."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from kora.reconciliation.domain.report import QuarantineReason, ReportLine


@dataclass(frozen=True, slots=True)
class NewReport:
    """A report ready to store: its content and quarantined lines already encrypted."""

    id: uuid.UUID
    provider: str
    report_day: date | None
    digest: str
    filename: str
    size: int
    content: bytes
    key_id: str
    imported_at: datetime
    imported_by: str
    lines: list[ReportLine]
    quarantined: list[tuple[int, QuarantineReason, bytes]]  # line number, reason, encrypted raw


@dataclass(frozen=True, slots=True)
class StoredReport:
    """A stored report's header; ``content`` is still encrypted under ``key_id``."""

    id: uuid.UUID
    provider: str
    report_day: date | None
    digest: str
    filename: str
    size: int
    content: bytes
    key_id: str
    imported_at: datetime
    imported_by: str
    line_count: int
    quarantined_count: int


class ReportStore(Protocol):
    async def find_by_digest(self, provider: str, digest: str) -> StoredReport | None:
        """The report of ``provider`` whose bytes hash to ``digest``, if already imported."""

    async def add(self, report: NewReport) -> bool:
        """Store the report, its lines and its quarantined lines in one transaction. False (and
        nothing written) when the same (provider, digest) is already stored."""

    async def get(self, report_id: uuid.UUID) -> StoredReport | None: ...

    async def quarantined(self, report_id: uuid.UUID) -> list[tuple[int, str, bytes]]:
        """(line number, reason, encrypted raw) of a report's quarantined lines, in order."""


class ReportCipher(Protocol):
    @property
    def current_key_id(self) -> str: ...

    def encrypt(self, plaintext: bytes, *, context: str) -> bytes: ...

    def decrypt(self, blob: bytes, *, key_id: str, context: str) -> bytes: ...


@dataclass(frozen=True, slots=True)
class CorePayment:
    """A payment as the core's service API shows it to the reconciliation service."""

    id: str
    type: str
    status: str
    amount: int  # minor units
    currency: str
    provider: str | None
    provider_ref: str | None


@dataclass(frozen=True, slots=True)
class Correction:
    """A money-moving correction approved by two different people (maker-checker), posted by
    the core as a compensating journal transaction. ``kind``: ``write_off`` (the payment's
    provider-clearing gap to suspense), ``manual_credit`` (suspense to the payment's wallet) or
    ``manual_debit`` (the payment's wallet to suspense)."""

    case_id: uuid.UUID
    payment_id: str
    kind: str
    amount: int  # minor units, > 0
    currency: str
    reason: str
    proposed_by: str
    approved_by: str


@dataclass(frozen=True, slots=True)
class PostedCorrection:
    case_id: uuid.UUID
    transaction_id: str
    replayed: bool


class CorrectionRefused(Exception):
    """The core refused a correction for good (a 4xx): sending it again gets the same answer.
    ``code`` is the core's problem code. Any other exception from ``post_correction`` is taken
    as passing (unreachable, 5xx, timeout) and retried."""

    code: str


class CorePayments(Protocol):
    """The core, as the reconciliation service reaches it: its service API, under the service's
    own identity (a signed JWT with audience and scopes). The adapter raises on refusal."""

    async def payment(self, payment_id: str) -> CorePayment | None:
        """The payment as the core knows it now, or None when the core has no such payment."""

    async def query_provider(self, payment_id: str) -> CorePayment | None:
        """Ask the core to query the provider about the payment now (a late confirmation),
        and return the payment as it stands after the query."""

    async def post_correction(self, correction: Correction) -> PostedCorrection:
        """Post an approved correction; idempotent by ``case_id`` (a retry replays). Raises
        `CorrectionRefused` when the core refuses it for good."""

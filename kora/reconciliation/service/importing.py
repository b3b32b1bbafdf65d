"""Importing a provider's settlement report, and reading a stored one back.

A report is stored once per (provider, sha256 of its bytes): importing the same file again
changes nothing and says so. The file's bytes and the raw text of quarantined lines are
encrypted at rest (a provider file can carry phone numbers); the parsed lines are stored in
clear for matching. Logs carry counts, the provider and a digest prefix — never line content.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

from loguru import logger

from kora.kernel import Clock, new_id
from kora.reconciliation.dialects import load_dialect
from kora.reconciliation.domain.parsing import parse_report, report_digest
from kora.reconciliation.service.ports import NewReport, ReportCipher, ReportStore

READER_ROLES = frozenset({"recon_reviewer", "recon_approver", "admin"})
# A nightly report of 1,000,000 MoMo lines is about 120 MB.
MAX_REPORT_BYTES = 256 * 1024 * 1024


class Forbidden(PermissionError):
    """The caller has none of the roles allowed to read a stored report."""


class ReportNotFound(LookupError):
    pass


class ReportTooLarge(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ImportResult:
    report_id: uuid.UUID
    provider: str
    digest: str
    lines: int
    quarantined: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class QuarantinedLine:
    line_number: int
    reason: str
    raw: str


@dataclass(frozen=True, slots=True)
class ReportContent:
    report_id: uuid.UUID
    provider: str
    filename: str
    data: bytes
    quarantined: list[QuarantinedLine]


def content_context(report_id: uuid.UUID) -> str:
    return f"recon_reports.content:{report_id}"


def raw_context(report_id: uuid.UUID, line_number: int) -> str:
    return f"recon_quarantine.raw:{report_id}:{line_number}"


class ReportImports:
    """The use cases of stored settlement reports, on a store, a cipher and a clock."""

    def __init__(self, store: ReportStore, cipher: ReportCipher, clock: Clock) -> None:
        self._store = store
        self._cipher = cipher
        self._clock = clock

    async def import_report(
        self, provider: str, data: bytes, *, filename: str, actor: str, report_day: date | None = None
    ) -> ImportResult:
        """Parse ``data`` with ``provider``'s dialect and store it with its lines and quarantined
        lines in one transaction. Raises DialectError for an unknown provider, ReportError when
        the file is not in the provider's format, ReportTooLarge beyond MAX_REPORT_BYTES."""
        if len(data) > MAX_REPORT_BYTES:
            raise ReportTooLarge(f"a report is at most {MAX_REPORT_BYTES} bytes")
        dialect = load_dialect(provider)
        digest = report_digest(data)
        existing = await self._store.find_by_digest(provider, digest)
        if existing is not None:
            return self._duplicate(existing.id, provider, digest, existing.line_count, existing.quarantined_count)
        parsed = parse_report(dialect, data)
        report_id = new_id()
        report = NewReport(
            id=report_id,
            provider=provider,
            report_day=report_day,
            digest=digest,
            filename=filename[:255],
            size=len(data),
            content=self._cipher.encrypt(data, context=content_context(report_id)),
            key_id=self._cipher.current_key_id,
            imported_at=self._clock.now(),
            imported_by=actor[:128],
            lines=parsed.lines,
            quarantined=[
                (
                    q.line_number,
                    q.reason,
                    self._cipher.encrypt(q.raw.encode(), context=raw_context(report_id, q.line_number)),
                )
                for q in parsed.quarantined
            ],
        )
        if not await self._store.add(report):  # imported concurrently by someone else
            existing = await self._store.find_by_digest(provider, digest)
            assert existing is not None
            return self._duplicate(existing.id, provider, digest, existing.line_count, existing.quarantined_count)
        logger.info(
            "recon report imported",
            provider=provider,
            digest_prefix=digest[:12],
            lines=len(parsed.lines),
            quarantined=len(parsed.quarantined),
        )
        return ImportResult(report_id, provider, digest, len(parsed.lines), len(parsed.quarantined), duplicate=False)

    def _duplicate(
        self, report_id: uuid.UUID, provider: str, digest: str, lines: int, quarantined: int
    ) -> ImportResult:
        logger.info("recon report already imported", provider=provider, digest_prefix=digest[:12])
        return ImportResult(report_id, provider, digest, lines, quarantined, duplicate=True)

    async def read_report(self, report_id: uuid.UUID, *, roles: frozenset[str] | set[str]) -> ReportContent:
        """The stored report's original bytes and quarantined raw lines, decrypted. Raises
        Forbidden unless ``roles`` holds recon_reviewer, recon_approver or admin (checked before
        the store is read), ReportNotFound for an unknown id."""
        if not READER_ROLES & set(roles):
            raise Forbidden("reading a stored report needs recon_reviewer, recon_approver or admin")
        stored = await self._store.get(report_id)
        if stored is None:
            raise ReportNotFound(str(report_id))
        data = self._cipher.decrypt(stored.content, key_id=stored.key_id, context=content_context(report_id))
        quarantined = [
            QuarantinedLine(
                number,
                reason,
                self._cipher.decrypt(raw, key_id=stored.key_id, context=raw_context(report_id, number)).decode(),
            )
            for number, reason, raw in await self._store.quarantined(report_id)
        ]
        logger.info("recon report read", provider=stored.provider, digest_prefix=stored.digest[:12])
        return ReportContent(report_id, stored.provider, stored.filename, data, quarantined)

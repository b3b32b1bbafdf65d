"""The review's audit trail as a keyed hash chain (pure: standard library only).

Each record's hash is HMAC-SHA256, under the service's audit key, of the canonical JSON of the
record together with the previous record's hash (the first record follows ``GENESIS``). Editing,
inserting or deleting a record breaks every later link; someone who can write to the database
but does not hold the key cannot re-forge the chain after an edit. A head row (position, hash)
kept beside the records catches a truncated tail; the head that ``verify`` prints can be kept
elsewhere to catch a rewritten head too.

The service's own small chain rather than the core's audit module: the reconciliation service
imports no core module (its import contract), and one chain is enough for a review queue.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

GENESIS = "0" * 64
MIN_KEY_BYTES = 16

Detail = str | int | bool | None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One action on a case: who (and in which role), when, what, the status before and after."""

    position: int
    occurred_at: datetime
    actor: str
    role: str
    action: str
    case_id: str
    before: str | None
    after: str | None
    correlation_id: str | None
    details: str  # canonical JSON text
    prev_hash: str
    hash: str = ""


def canonical_details(details: Mapping[str, Detail] | None) -> str:
    return json.dumps(dict(details or {}), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _message(record: AuditRecord) -> bytes:
    if record.occurred_at.tzinfo is None:
        raise ValueError("audit times are timezone-aware")
    fields = [
        record.position,
        record.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        record.actor,
        record.role,
        record.action,
        record.case_id,
        record.before,
        record.after,
        record.correlation_id,
        record.details,
        record.prev_hash,
    ]
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def seal(key: bytes, record: AuditRecord) -> AuditRecord:
    """The record with its hash set."""
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the audit key must be at least {MIN_KEY_BYTES} bytes")
    digest = hmac.new(key, _message(record), hashlib.sha256).hexdigest()
    return replace(record, hash=digest)


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The verification of a whole chain: ``ok`` when every link holds and the head agrees."""

    records: int
    head_position: int
    head_hash: str
    broken: tuple[tuple[int, str], ...]  # (position, what is wrong), in order

    @property
    def ok(self) -> bool:
        return not self.broken


def verify(key: bytes, records: Iterable[AuditRecord], *, head: tuple[int, str] | None) -> ChainReport:
    """Recompute the chain of ``records`` (in position order) and compare it with ``head``
    (the stored last position and hash; None when nothing was ever written)."""
    broken: list[tuple[int, str]] = []
    expected_prev, expected_position, count = GENESIS, 1, 0
    last = (0, GENESIS)
    for record in records:
        count += 1
        if record.position != expected_position:
            broken.append((record.position, f"position gap: expected {expected_position}"))
        if record.prev_hash != expected_prev:
            broken.append((record.position, "previous hash does not match the record before"))
        if not hmac.compare_digest(seal(key, record).hash, record.hash):
            broken.append((record.position, "hash does not match the record"))
        expected_prev, expected_position = record.hash, record.position + 1
        last = (record.position, record.hash)
    stored = head or (0, GENESIS)
    if stored[0] != last[0] or stored[1] != last[1]:
        broken.append((stored[0], f"head says {stored[0]} records, the chain ends at {last[0]}"))
    return ChainReport(count, last[0], last[1], tuple(broken))

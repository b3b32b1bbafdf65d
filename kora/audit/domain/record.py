"""The audit record and its keyed hash chain (pure: standard library only).

Records are sharded into N chains by a stable hash of their subject, so one payment's records
stay in one chain, in order, while unrelated transactions append to different chain heads.
Each record's `hash` is HMAC-SHA256 over a canonical serialization of its fields and the
previous record's hash: someone who can write to the database but does not hold the key can
neither edit a record nor re-forge the chain after it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from uuid import UUID

from kora.audit.domain.validation import AuditDetail, validate_details, validate_fields

GENESIS_HASH = "0" * 64
"""The `prev_hash` of the first record of every chain."""

DEFAULT_CHAINS = 16
MAX_CHAINS = 4096
MIN_KEY_BYTES = 16


def audit_key_from_secret(secret: str) -> bytes:
    """The HMAC key from the `KORA_AUDIT_KEY` secret: urlsafe-base64 decoded, or the raw bytes
    of the secret when it is not valid base64. Refuses keys shorter than 16 bytes."""
    text = secret.strip()
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        key = text.encode("utf-8")
    check_key(key)
    return key


def check_key(key: bytes) -> None:
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the audit HMAC key must be at least {MIN_KEY_BYTES} bytes")


def check_chain_count(chains: int) -> int:
    if type(chains) is not int or not 1 <= chains <= MAX_CHAINS:
        raise ValueError(f"the number of audit chains must be an integer in 1..{MAX_CHAINS}")
    return chains


def chain_for(subject: str, chains: int) -> int:
    """The chain a subject's records go to: CRC-32 of the subject modulo the chain count.

    Stable across processes and releases (unlike `hash()`), so one subject stays in one chain.
    """
    return zlib.crc32(subject.encode("utf-8")) % check_chain_count(chains)


def canonical_details(details: Mapping[str, AuditDetail] | None) -> str:
    """Details as canonical JSON text: sorted keys, no spaces, ASCII only."""
    return json.dumps(dict(details or {}), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def canonical_time(occurred_at: datetime) -> str:
    """The isoformat hashed for `occurred_at`: UTC, always with microseconds."""
    if occurred_at.tzinfo is None:
        raise ValueError("naive datetime refused: use timezone-aware UTC")
    return occurred_at.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One sealed record of the audit trail. `details` is the canonical JSON text."""

    id: UUID
    chain: int
    position: int
    occurred_at: datetime
    actor: str
    action: str
    subject: str
    outcome: str
    correlation_id: str | None
    details: str
    prev_hash: str
    hash: str

    def details_dict(self) -> dict[str, AuditDetail]:
        parsed: dict[str, AuditDetail] = json.loads(self.details)
        return parsed


def hash_message(
    *,
    chain: int,
    position: int,
    occurred_at: datetime,
    actor: str,
    action: str,
    subject: str,
    outcome: str,
    correlation_id: str | None,
    details: str,
    prev_hash: str,
) -> bytes:
    """The bytes the HMAC covers: a JSON array (so fields cannot run into each other) of chain,
    position, occurred_at isoformat, actor, action, subject, outcome, correlation_id, details
    text and prev_hash, with no spaces and ASCII only."""
    fields = [
        chain,
        position,
        canonical_time(occurred_at),
        actor,
        action,
        subject,
        outcome,
        correlation_id,
        details,
        prev_hash,
    ]
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def compute_hash(key: bytes, entry: AuditEntry) -> str:
    """HMAC-SHA256 (hex) of an entry's fields; `entry.hash` and `entry.id` are not covered."""
    message = hash_message(
        chain=entry.chain,
        position=entry.position,
        occurred_at=entry.occurred_at,
        actor=entry.actor,
        action=entry.action,
        subject=entry.subject,
        outcome=entry.outcome,
        correlation_id=entry.correlation_id,
        details=entry.details,
        prev_hash=entry.prev_hash,
    )
    return hmac.new(key, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditDraft:
    """The validated who/what of a record, before it is placed in a chain and sealed."""

    actor: str
    action: str
    subject: str
    outcome: str
    correlation_id: str | None
    details: str

    @classmethod
    def create(
        cls,
        *,
        actor: str,
        action: str,
        subject: str,
        outcome: str,
        correlation_id: str | None,
        details: Mapping[str, AuditDetail] | None,
    ) -> AuditDraft:
        """Validates every field (see `kora.audit.domain.validation`); raises InvalidAuditRecordError."""
        validate_fields(actor=actor, action=action, subject=subject, outcome=outcome, correlation_id=correlation_id)
        validate_details(details)
        return cls(actor, action, subject, outcome, correlation_id, canonical_details(details))

    def seal(
        self,
        *,
        key: bytes,
        id: UUID,
        chain: int,
        position: int,
        prev_hash: str,
        occurred_at: datetime,
    ) -> AuditEntry:
        unsealed = AuditEntry(
            id=id,
            chain=chain,
            position=position,
            occurred_at=occurred_at.astimezone(UTC),
            actor=self.actor,
            action=self.action,
            subject=self.subject,
            outcome=self.outcome,
            correlation_id=self.correlation_id,
            details=self.details,
            prev_hash=prev_hash,
            hash="",
        )
        return replace(unsealed, hash=compute_hash(key, unsealed))

"""The audit trail's pure core: records, the keyed hash chain, PII refusal, verification."""

from kora.audit.domain.record import (
    DEFAULT_CHAINS,
    GENESIS_HASH,
    AuditDraft,
    AuditEntry,
    audit_key_from_secret,
    canonical_details,
    chain_for,
    compute_hash,
    hash_message,
)
from kora.audit.domain.validation import AuditDetail, InvalidAuditRecordError, looks_like_phone_number
from kora.audit.domain.verification import (
    ANCHOR_MISMATCH,
    CHAIN_OUT_OF_RANGE,
    HASH_MISMATCH,
    POSITION_GAP,
    PREV_HASH_MISMATCH,
    TRUNCATED,
    AuditReport,
    BrokenLink,
    ChainHeads,
    ChainVerifier,
)

__all__ = [
    "ANCHOR_MISMATCH",
    "CHAIN_OUT_OF_RANGE",
    "DEFAULT_CHAINS",
    "GENESIS_HASH",
    "HASH_MISMATCH",
    "POSITION_GAP",
    "PREV_HASH_MISMATCH",
    "TRUNCATED",
    "AuditDetail",
    "AuditDraft",
    "AuditEntry",
    "AuditReport",
    "BrokenLink",
    "ChainHeads",
    "ChainVerifier",
    "InvalidAuditRecordError",
    "audit_key_from_secret",
    "canonical_details",
    "chain_for",
    "compute_hash",
    "hash_message",
    "looks_like_phone_number",
]

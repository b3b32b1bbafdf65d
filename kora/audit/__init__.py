"""Audit: the append-only, hash-chained, tamper-evident trail of who did what, when — every
money movement, auth event and admin action — without PII.

Other modules record through the `AuditRecorder` port (`SqlAuditTrail` in production,
`InMemoryAuditTrail` in unit tests); operators verify with `verify_audit_chain`.

Guarantees, and their limits:
- The database refuses UPDATE, DELETE and TRUNCATE on `audit_log` (triggers in `ddl.py`).
- Each record carries HMAC-SHA256 over its fields and its predecessor's hash, under a key the
  database never sees: editing a record, or removing one from the middle of a chain, is
  reported by `verify_audit_chain` even after the table owner disabled the triggers.
- Removing a chain's last records leaves a valid shorter chain. The mitigation is external
  anchoring: a scheduled job exports `chain_heads()` to an append-only store outside the
  database (log pipeline, WORM bucket); `verify_audit_chain(anchors=<last export>)` then
  reports a truncated (or rewritten) chain.
"""

from kora.audit.adapters.ddl import (
    POSTGRES_DDL,
    POSTGRES_DROP_DDL,
    POSTGRES_DROP_FORBID_MUTATION_FUNCTION,
    POSTGRES_FORBID_MUTATION_FUNCTION,
    SQLITE_DDL,
    SQLITE_DROP_DDL,
    postgres_drop_forbid_mutation_ddl,
    postgres_forbid_mutation_ddl,
    sqlite_drop_forbid_mutation_ddl,
    sqlite_forbid_mutation_ddl,
)
from kora.audit.adapters.memory import InMemoryAuditTrail
from kora.audit.adapters.queries import chain_heads, list_audit, verify_audit_chain
from kora.audit.adapters.sql import AUDIT_LOCK_NAMESPACE, AuditChainConflictError, SqlAuditTrail
from kora.audit.adapters.tables import audit_log
from kora.audit.domain import (
    DEFAULT_CHAINS,
    AuditEntry,
    AuditReport,
    BrokenLink,
    InvalidAuditRecordError,
    audit_key_from_secret,
)
from kora.audit.ports import AuditDetail, AuditEvent, AuditRecorder

__all__ = [
    "AUDIT_LOCK_NAMESPACE",
    "DEFAULT_CHAINS",
    "POSTGRES_DDL",
    "POSTGRES_DROP_DDL",
    "POSTGRES_DROP_FORBID_MUTATION_FUNCTION",
    "POSTGRES_FORBID_MUTATION_FUNCTION",
    "SQLITE_DDL",
    "SQLITE_DROP_DDL",
    "AuditChainConflictError",
    "AuditDetail",
    "AuditEntry",
    "AuditEvent",
    "AuditRecorder",
    "AuditReport",
    "BrokenLink",
    "InMemoryAuditTrail",
    "InvalidAuditRecordError",
    "SqlAuditTrail",
    "audit_key_from_secret",
    "audit_log",
    "chain_heads",
    "list_audit",
    "postgres_drop_forbid_mutation_ddl",
    "postgres_forbid_mutation_ddl",
    "sqlite_drop_forbid_mutation_ddl",
    "sqlite_forbid_mutation_ddl",
    "verify_audit_chain",
]

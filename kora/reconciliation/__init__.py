"""Reconciliation of providers' settlement reports with Kora's payments (issue #5).

Its own service: it knows the core only through events and an API, never its modules.
The public interface is re-exported here.
"""

from kora.reconciliation.dialects import available_dialects, load_dialect
from kora.reconciliation.domain.dialect import Dialect, DialectError, dialect_from_mapping
from kora.reconciliation.domain.matching import InternalTxn, MatchKey, MatchResult, Outcome, Reason, Resolution, match
from kora.reconciliation.domain.parsing import ReportError, parse_report, report_digest
from kora.reconciliation.domain.report import (
    Direction,
    LineStatus,
    LineType,
    ParsedReport,
    Quarantined,
    QuarantineReason,
    ReportLine,
)
from kora.reconciliation.domain.rules import FeeRule, MatchRules
from kora.reconciliation.domain.view import InternalView, internal_txn

__all__ = [
    "Dialect",
    "DialectError",
    "Direction",
    "FeeRule",
    "InternalTxn",
    "InternalView",
    "LineStatus",
    "LineType",
    "MatchKey",
    "MatchResult",
    "MatchRules",
    "Outcome",
    "ParsedReport",
    "QuarantineReason",
    "Quarantined",
    "Reason",
    "ReportError",
    "ReportLine",
    "Resolution",
    "available_dialects",
    "dialect_from_mapping",
    "internal_txn",
    "load_dialect",
    "match",
    "parse_report",
    "report_digest",
]

"""Leadership KPIs (issue #7): a read-only reporting module over the core's database.

Public interface: `KpiService` (one exact report for a time range), `KpiRange`, `parse_range`,
`InvalidRange`, `failure_cause` and `FailureCause`. Only entrypoints (the HTTP app) import it; it
reads other modules' tables and the events KPI projection, and writes nothing (import contracts).
"""

from kora.kpis.domain import MAX_RANGE, FailureCause, InvalidRange, KpiRange, failure_cause, parse_range
from kora.kpis.service import SOURCES, KpiService

__all__ = [
    "MAX_RANGE",
    "SOURCES",
    "FailureCause",
    "InvalidRange",
    "KpiRange",
    "KpiService",
    "failure_cause",
    "parse_range",
]

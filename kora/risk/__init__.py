"""The risk module (issue #6): limits, velocity, anomaly flags and decisions.

Reached only through this interface (an import contract): `assess` is the pure decision,
`RiskEngine` the use case, `FilePolicySource` the reloadable policy file and
`InMemoryRiskActivity` the reference context store, `SqlRiskActivity` the SQL store with
atomic check-and-reserve per payer, `SqlRiskReviews` the review queue, analysts' decisions and
explanations, `RiskMetrics` its Prometheus metrics. The payment path reaches it through the
payments module's `PaymentRisk` port, adapted in `kora.bootstrap_risk`.
"""

from kora.risk.adapters.memory import InMemoryRiskActivity
from kora.risk.adapters.policy_file import FilePolicySource, load_policy
from kora.risk.adapters.reviews import QueueStats, SqlRiskReviews
from kora.risk.adapters.sql import SqlRiskActivity
from kora.risk.domain.assessment import assess
from kora.risk.domain.model import (
    Decision,
    Outcome,
    PaymentType,
    Reason,
    RiskContext,
    RiskRequest,
    RiskRequestError,
    Usage,
    Window,
)
from kora.risk.domain.policy import Policy, PolicyError, Threshold, parse_policy
from kora.risk.domain.reservation import Reservation, ReservationError, ReservationStatus
from kora.risk.metrics import RiskMetrics
from kora.risk.policies import BENCH_POLICY_PATH, DEFAULT_POLICY_PATH
from kora.risk.ports import FixedPolicy, PolicySource, RiskContextSource, RiskReservations
from kora.risk.service import RiskEngine

__all__ = [
    "BENCH_POLICY_PATH",
    "DEFAULT_POLICY_PATH",
    "Decision",
    "FilePolicySource",
    "FixedPolicy",
    "InMemoryRiskActivity",
    "Outcome",
    "PaymentType",
    "Policy",
    "PolicyError",
    "PolicySource",
    "QueueStats",
    "Reason",
    "Reservation",
    "ReservationError",
    "ReservationStatus",
    "RiskContext",
    "RiskContextSource",
    "RiskEngine",
    "RiskMetrics",
    "RiskRequest",
    "RiskRequestError",
    "RiskReservations",
    "SqlRiskActivity",
    "SqlRiskReviews",
    "Threshold",
    "Usage",
    "Window",
    "assess",
    "load_policy",
    "parse_policy",
]

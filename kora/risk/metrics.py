"""The risk engine's Prometheus metrics (names fixed for the alerts and dashboards of issue #7).
Labels are outcomes, payment types and rule ids: bounded sets, never an id or a person."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Sub-millisecond to a few tens of milliseconds: the assessment's budget is 2 ms at p95.
_LATENCY_BUCKETS = (
    0.0002,
    0.0005,
    0.00075,
    0.001,
    0.00125,
    0.0015,
    0.00175,
    0.002,
    0.0025,
    0.003,
    0.004,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
)


class RiskMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._decisions = Counter(
            "kora_risk_decisions",
            "Risk decisions on payments, by outcome (allow, review, deny) and payment type.",
            ("outcome", "payment_type"),
            registry=registry,
        )
        self._rule_hits = Counter(
            "kora_risk_rule_hits",
            "Rules that fired in a risk decision (limits and anomaly flags), by rule and the decision's outcome.",
            ("rule", "outcome"),
            registry=registry,
        )
        self._duration = Histogram(
            "kora_risk_assessment_duration_seconds",
            "Time to assess a payment and reserve its usage (inside the payment's transaction), by payment type.",
            ("payment_type",),
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self._queue_size = Gauge(
            "kora_risk_review_queue_size",
            "Payments held for a risk analyst's review now (funds held).",
            registry=registry,
        )
        self._oldest_age = Gauge(
            "kora_risk_review_oldest_age_seconds",
            "Age of the oldest payment waiting for a risk review (0 when none waits).",
            registry=registry,
        )
        self._review_decisions = Counter(
            "kora_risk_review_decisions",
            "Risk analysts' decisions on held payments, per rule that fired (approve = the rule was a false positive).",
            ("decision", "rule"),
            registry=registry,
        )

    def assessed(self, outcome: str, payment_type: str, rules: Iterable[str], seconds: float) -> None:
        self._decisions.labels(outcome, payment_type).inc()
        for rule in rules:
            self._rule_hits.labels(rule, outcome).inc()
        self._duration.labels(payment_type).observe(seconds)

    def reviewed(self, decision: str, rules: Iterable[str]) -> None:
        for rule in list(rules) or ["score"]:
            self._review_decisions.labels(decision, rule).inc()

    def queue(self, size: int, oldest: datetime | None, now: datetime) -> None:
        self._queue_size.set(size)
        self._oldest_age.set(0 if oldest is None else max(0.0, (now - oldest).total_seconds()))

"""Prometheus metrics: HTTP RED per route template and the business signals the SLOs and
alerts are built on. Everything lives on a :class:`CollectorRegistry` passed in, never the
global one, so an app (or a test) owns its metrics.

Label values are low-cardinality by construction: callers pass enum-like words, and any
value that does not look like one (too long, digit runs, spaces...) is recorded as
``"other"`` instead of opening a new series per user, phone number or raw path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Protocol

from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

# The latency SLO thresholds (0.15 ... 0.5 s) are bucket bounds, so burn-rate rules can
# count "requests faster than X" exactly instead of interpolating.
HTTP_DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.35,
    0.4,
    0.45,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
)
LEDGER_POSTING_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Settlement is J+1 by default: hours to a couple of weeks, with bounds at 1, 2 and 3 days so
# "settled later than J+N" alerts can count exactly.
SETTLEMENT_DELAY_BUCKETS = tuple(h * 3600.0 for h in (1, 6, 12, 24, 36, 48, 60, 72, 96, 120, 168, 336))

# The payment success SLO counts provider and internal failures against Kora, not the customer's.
PAYMENT_FAILURE_CAUSES = frozenset({"customer", "provider", "internal", "risk"})

UNMATCHED_ROUTE = "unmatched"
OTHER = "other"
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})
# Enum-like words and route templates; no digit run long enough to be an id or a number.
_SAFE_LABEL = re.compile(r"[A-Za-z_/][A-Za-z0-9_.:/{}-]{0,79}")
_DIGIT_RUN = re.compile(r"\d{5}")


@lru_cache(maxsize=4096)
def safe_label(value: str) -> str:
    """``value`` when it is fit to be a label value, else ``"other"``."""
    if _SAFE_LABEL.fullmatch(value) is None or _DIGIT_RUN.search(value) is not None:
        return OTHER
    return value


def _exemplar() -> dict[str, str] | None:
    """The exemplar linking an observation to its trace, when a *sampled* trace is active: with
    KORA_OTEL_SAMPLE_RATIO below 1, an exemplar of an unsampled request would link to a trace
    Tempo never received."""
    span_context = trace.get_current_span().get_span_context()
    if not (span_context.is_valid and span_context.trace_flags.sampled):
        return None
    return {"trace_id": format(span_context.trace_id, "032x")}


class HttpMetrics(Protocol):
    """What ObservabilityMiddleware records per request: KoraMetrics for the core, another
    service's own metrics (e.g. the reconciliation service's) on its own registry."""

    def http_request_started(self) -> None: ...

    def http_request_finished(self) -> None: ...

    def observe_http(
        self, method: str, route: str, status: int | str, seconds: float, trace_id: str | None = None
    ) -> None: ...


class HttpRedMetrics:
    """HTTP RED (rate, errors, duration) under the names every Kora service shares (one dashboard;
    the scrape job tells the services apart). Implements `HttpMetrics`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests = Counter(
            "kora_http_requests",
            "HTTP requests handled, by method, route template and status code.",
            ("method", "route", "status"),
            registry=registry,
        )
        self._duration = Histogram(
            "kora_http_request_duration_seconds",
            "HTTP request duration (first byte in to last byte out), by method and route template.",
            ("method", "route"),
            buckets=HTTP_DURATION_BUCKETS,
            registry=registry,
        )
        self._in_flight = Gauge(
            "kora_http_requests_in_flight", "HTTP requests being handled right now.", registry=registry
        )

    def http_request_started(self) -> None:
        self._in_flight.inc()

    def http_request_finished(self) -> None:
        self._in_flight.dec()

    def observe_http(
        self, method: str, route: str, status: int | str, seconds: float, trace_id: str | None = None
    ) -> None:
        """One handled request. ``route`` is the route template (``/items/{item_id}``) or
        ``"unmatched"``; ``trace_id`` becomes the exemplar of both series."""
        method = method if method in _HTTP_METHODS else OTHER
        route = safe_label(route)
        exemplar = {"trace_id": trace_id} if trace_id else None
        self._requests.labels(method, route, str(status)).inc(exemplar=exemplar)
        self._duration.labels(method, route).observe(seconds, exemplar=exemplar)


class KoraMetrics(HttpRedMetrics):
    """Every Kora metric, registered on ``registry``; methods are named after what happened."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        super().__init__(registry)
        # Business
        self._payments = Counter(
            "kora_payments",
            "Payments that reached a final outcome, by type and status.",
            ("type", "status"),
            registry=registry,
        )
        self._payment_failures = Counter(
            "kora_payment_failures",
            "Payments that ended FAILED, by type and cause: customer (declined for the payer's or payee's "
            "reasons), provider (the provider failed or never answered), internal (Kora's own fault) or risk.",
            ("type", "cause"),
            registry=registry,
        )
        self._amount_moved = Counter(
            "kora_payment_amount_minor",
            "Money moved by payments, in minor units of the currency.",
            ("type", "currency"),
            registry=registry,
        )
        self._fee_revenue = Counter(
            "kora_merchant_fee_revenue_minor",
            "Fees kept on merchant payments (credited to fee revenue), in minor units of the currency.",
            ("currency",),
            registry=registry,
        )
        self._card_operations = Counter(
            "kora_card_operations",
            "Operations on card payments through an acquirer, by operation (authorize, capture, void, refund, "
            "chargeback, expiry, resolve) and outcome (succeeded, declined, pending, unavailable, refused...).",
            ("operation", "outcome"),
            registry=registry,
        )
        self._chargeback_shortfall = Counter(
            "kora_card_chargeback_shortfall_minor",
            "Chargebacks a merchant's account could not cover, debited to suspense for a person to recover, "
            "in minor units of the currency.",
            ("currency",),
            registry=registry,
        )
        self._idempotent_replays = Counter(
            "kora_idempotent_replays",
            "Requests answered from a stored response (same Idempotency-Key, same request).",
            ("route",),
            registry=registry,
        )
        self._idempotency_conflicts = Counter(
            "kora_idempotency_conflicts",
            "Requests refused because their Idempotency-Key was reused or is in flight.",
            ("reason",),
            registry=registry,
        )
        self._auth_failures = Counter(
            "kora_auth_failures", "Failed authentication attempts, by reason.", ("reason",), registry=registry
        )
        self._lockouts = Counter(
            "kora_auth_lockouts",
            "Lockouts triggered by repeated authentication failures, by scope.",
            ("scope",),
            registry=registry,
        )
        self._ledger_postings = Counter(
            "kora_ledger_postings", "Journal transactions posted, by kind.", ("kind",), registry=registry
        )
        self._ledger_posting_duration = Histogram(
            "kora_ledger_posting_duration_seconds",
            "Time to post one journal transaction.",
            buckets=LEDGER_POSTING_BUCKETS,
            registry=registry,
        )
        self._group_commit_batch = Histogram(
            "kora_group_commit_batch_size",
            "Transfers written together in one group-commit transaction.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=registry,
        )
        self._group_commit_fallbacks = Counter(
            "kora_group_commit_fallbacks",
            "Group-commit transactions that failed and were retried one transfer at a time.",
            registry=registry,
        )
        self._provider_requests = Counter(
            "kora_provider_requests",
            "Provider call attempts, by provider, operation and outcome.",
            ("provider", "operation", "outcome"),
            registry=registry,
        )
        self._provider_duration = Histogram(
            "kora_provider_request_duration_seconds",
            "Time of one provider call attempt.",
            ("provider", "operation"),
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10),
            registry=registry,
        )
        self._provider_retries = Counter(
            "kora_provider_retries", "Provider call retries.", ("provider", "operation", "reason"), registry=registry
        )
        self._breaker_state = Gauge(
            "kora_provider_breaker_state",
            "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.",
            ("provider",),
            registry=registry,
        )
        self._breaker_transitions = Counter(
            "kora_provider_breaker_transitions",
            "Circuit breaker state changes.",
            ("provider", "from_state", "to_state"),
            registry=registry,
        )
        self._bulkhead_rejections = Counter(
            "kora_provider_bulkhead_rejections", "Calls refused by a full bulkhead.", ("provider",), registry=registry
        )
        self._provider_in_flight = Gauge(
            "kora_provider_in_flight", "Provider calls in flight.", ("provider",), registry=registry
        )
        self._provider_fallbacks = Counter(
            "kora_provider_fallbacks",
            "Requests routed past a provider that certainly did not accept them.",
            ("operation", "from_provider", "reason"),
            registry=registry,
        )
        self._late_confirmations = Counter(
            "kora_provider_late_confirmations",
            "Provider payments confirmed by a status query after their request had ended.",
            ("type",),
            registry=registry,
        )
        self._invariant_violations = Gauge(
            "kora_ledger_invariant_violations",
            "Violations found by the last ledger verification run, by check.",
            ("check",),
            registry=registry,
        )
        self._verify_last_run = Gauge(
            "kora_ledger_verify_last_run_timestamp_seconds",
            "Unix time of the last completed ledger verification run.",
            registry=registry,
        )
        self._audit_records = Counter(
            "kora_audit_records", "Audit records written, by action.", ("action",), registry=registry
        )
        self._settled = Counter(
            "kora_settlement_payments_settled",
            "Captured provider payments moved to SETTLED (clearing to settlement bank), by provider and type.",
            ("provider", "type"),
            registry=registry,
        )
        self._settlement_delay = Histogram(
            "kora_settlement_delay_seconds",
            "Time from a provider payment's capture to its settlement, by provider.",
            ("provider",),
            buckets=SETTLEMENT_DELAY_BUCKETS,
            registry=registry,
        )
        self._settlement_rejections = Counter(
            "kora_settlement_rejections",
            "Payments a settlement run was asked to settle and could not, by provider and reason.",
            ("provider", "reason"),
            registry=registry,
        )
        self._settlement_overdue = Gauge(
            "kora_settlement_overdue_payments",
            "Captured provider payments past their settlement due time (J+N), at the last check.",
            ("provider", "currency"),
            registry=registry,
        )
        self._settlement_overdue_amount = Gauge(
            "kora_settlement_overdue_amount_minor",
            "Amount of the captured provider payments past their settlement due time, in minor units.",
            ("provider", "currency"),
            registry=registry,
        )
        self._webhooks_received = Counter(
            "kora_webhooks_received",
            "Provider webhooks accepted (authentic, or a hint that was checked), by provider and what they did.",
            ("provider", "outcome"),
            registry=registry,
        )
        self._webhooks_rejected = Counter(
            "kora_webhooks_rejected",
            "Provider webhooks refused (signature missing, malformed or forged; stale; future; bad body).",
            ("provider", "reason"),
            registry=registry,
        )
        self._replay_refusals = Counter(
            "kora_request_replay_refusals",
            "Sensitive requests refused by the anti-replay check (timestamp and nonce), by reason.",
            ("reason",),
            registry=registry,
        )
        self._request_nonces_purged = Counter(
            "kora_request_nonces_purged", "Expired request nonces deleted by housekeeping.", registry=registry
        )

    # Business -------------------------------------------------------------------------
    def payment_finished(self, type: str, status: str) -> None:
        """A payment reached a final outcome (``status``: captured, settled, failed...)."""
        self._payments.labels(safe_label(type), safe_label(status)).inc(exemplar=_exemplar())

    def payment_failed(self, type: str, cause: str) -> None:
        """A payment ended FAILED because of ``cause`` (customer, provider, internal or risk);
        any other word counts as internal: an unclassified failure is ours until shown otherwise."""
        cause = cause if cause in PAYMENT_FAILURE_CAUSES else "internal"
        self._payment_failures.labels(safe_label(type), cause).inc(exemplar=_exemplar())

    def amount_moved(self, type: str, currency: str, amount: int) -> None:
        """``amount`` minor units of ``currency`` moved by a payment of ``type``."""
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise ValueError("amount must be a non-negative int of minor units")
        self._amount_moved.labels(safe_label(type), safe_label(currency)).inc(amount, exemplar=_exemplar())

    def fee_collected(self, currency: str, amount: int) -> None:
        """``amount`` minor units of ``currency`` credited to fee revenue by a merchant payment."""
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise ValueError("amount must be a non-negative int of minor units")
        self._fee_revenue.labels(safe_label(currency)).inc(amount, exemplar=_exemplar())

    def card_operation(self, operation: str, outcome: str) -> None:
        """An operation on a card payment ended with ``outcome`` (see the counter's help)."""
        self._card_operations.labels(safe_label(operation), safe_label(outcome)).inc(exemplar=_exemplar())

    def chargeback_shortfall(self, currency: str, amount: int) -> None:
        """``amount`` minor units of a chargeback the merchant's account could not cover."""
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise ValueError("amount must be a non-negative int of minor units")
        self._chargeback_shortfall.labels(safe_label(currency)).inc(amount, exemplar=_exemplar())

    def idempotent_replay(self, route: str) -> None:
        self._idempotent_replays.labels(safe_label(route)).inc(exemplar=_exemplar())

    def idempotency_conflict(self, reason: str) -> None:
        self._idempotency_conflicts.labels(safe_label(reason)).inc(exemplar=_exemplar())

    def auth_failure(self, reason: str) -> None:
        self._auth_failures.labels(safe_label(reason)).inc(exemplar=_exemplar())

    def lockout(self, scope: str) -> None:
        self._lockouts.labels(safe_label(scope)).inc(exemplar=_exemplar())

    def ledger_posted(self, kind: str, seconds: float) -> None:
        """One journal transaction of ``kind`` posted in ``seconds``."""
        exemplar = _exemplar()
        self._ledger_postings.labels(safe_label(kind)).inc(exemplar=exemplar)
        self._ledger_posting_duration.observe(seconds, exemplar=exemplar)

    def group_commit(self, size: int) -> None:
        """One group-commit transaction written with ``size`` transfers."""
        self._group_commit_batch.observe(size)

    # -- providers (the resilience toolkit's ProviderMetrics) --------------------------------
    def provider_request(self, provider: str, operation: str, outcome: str, seconds: float) -> None:
        exemplar = _exemplar()
        self._provider_requests.labels(safe_label(provider), safe_label(operation), safe_label(outcome)).inc(
            exemplar=exemplar
        )
        self._provider_duration.labels(safe_label(provider), safe_label(operation)).observe(seconds, exemplar=exemplar)

    def provider_retry(self, provider: str, operation: str, reason: str) -> None:
        self._provider_retries.labels(safe_label(provider), safe_label(operation), safe_label(reason)).inc()

    def provider_breaker_state(self, provider: str, state: str) -> None:
        value = {"closed": 0, "half-open": 1, "open": 2}.get(state, 2)
        self._breaker_state.labels(safe_label(provider)).set(value)

    def provider_breaker_transition(self, provider: str, from_state: str, to_state: str) -> None:
        self._breaker_transitions.labels(safe_label(provider), safe_label(from_state), safe_label(to_state)).inc()

    def provider_bulkhead_rejected(self, provider: str) -> None:
        self._bulkhead_rejections.labels(safe_label(provider)).inc()

    def provider_in_flight(self, provider: str, in_flight: int) -> None:
        self._provider_in_flight.labels(safe_label(provider)).set(in_flight)

    def provider_fallback(self, operation: str, from_provider: str, reason: str) -> None:
        self._provider_fallbacks.labels(safe_label(operation), safe_label(from_provider), safe_label(reason)).inc()

    def late_confirmation(self, payment_type: str) -> None:
        """A pending provider payment confirmed late (by the sweeper's status query)."""
        self._late_confirmations.labels(safe_label(payment_type)).inc()

    def group_commit_fallback(self) -> None:
        """A group-commit transaction failed; its transfers were retried one by one."""
        self._group_commit_fallbacks.inc()

    def set_invariant_report(self, violations_by_check: Mapping[str, int], at: float) -> None:
        """Publish a ledger verification run: violations per check (0 when clean) and the
        Unix time it completed. Pass every check, including the clean ones."""
        for check, violations in violations_by_check.items():
            self._invariant_violations.labels(safe_label(check)).set(violations)
        self._verify_last_run.set(at)

    def audit_recorded(self, action: str) -> None:
        self._audit_records.labels(safe_label(action)).inc()

    def payment_settled(self, provider: str, payment_type: str, delay_seconds: float) -> None:
        """A captured provider payment settled, ``delay_seconds`` after its capture."""
        provider = safe_label(provider)
        self._settled.labels(provider, safe_label(payment_type)).inc()
        self._settlement_delay.labels(provider).observe(max(delay_seconds, 0.0), exemplar=_exemplar())

    def settlement_rejected(self, provider: str, reason: str) -> None:
        self._settlement_rejections.labels(safe_label(provider), safe_label(reason)).inc()

    def settlement_overdue(self, provider: str, currency: str, payments: int, amount: int) -> None:
        """The captured payments of ``provider`` in ``currency`` past their settlement due time."""
        labels = (safe_label(provider), safe_label(currency))
        self._settlement_overdue.labels(*labels).set(payments)
        self._settlement_overdue_amount.labels(*labels).set(amount)

    def webhook_received(self, provider: str, outcome: str) -> None:
        """A provider webhook handled (``outcome``: applied, pending, duplicate, replayed...)."""
        self._webhooks_received.labels(safe_label(provider), safe_label(outcome)).inc(exemplar=_exemplar())

    def webhook_rejected(self, provider: str, reason: str) -> None:
        """A provider webhook refused before anything changed (``reason``: forged, stale...)."""
        self._webhooks_rejected.labels(safe_label(provider), safe_label(reason)).inc(exemplar=_exemplar())

    def replay_refused(self, reason: str) -> None:
        """A sensitive request refused by the anti-replay check (``reason``: stale, replayed,
        nonce_missing, nonce_invalid, timestamp_missing, timestamp_invalid)."""
        self._replay_refusals.labels(safe_label(reason)).inc(exemplar=_exemplar())

    def request_nonces_purged(self, count: int) -> None:
        self._request_nonces_purged.inc(count)


def render_metrics(registry: CollectorRegistry, accept_header: str | None) -> tuple[bytes, str]:
    """(body, content type) for a scrape: OpenMetrics, with exemplars, when the scraper's
    Accept header asks for ``application/openmetrics-text``; the classic text format else."""
    encoder, content_type = choose_encoder(accept_header or "")
    return encoder(registry), content_type

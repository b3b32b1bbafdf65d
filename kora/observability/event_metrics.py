"""Metrics of the event pipeline (ADR 0019): outbox backlog and lag, publishing, and per
consumer its lag, processing time, outcomes, retries and dead letters. Labels are consumer
names, event types and outcome words: never an id."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kora.observability.metrics import safe_label

_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
_PROCESS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class EventMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.outbox_backlog = Gauge(
            "kora_outbox_backlog_events", "Events written to the outbox and not yet published.", registry=registry
        )
        self.outbox_oldest_age = Gauge(
            "kora_outbox_oldest_unpublished_age_seconds",
            "Age of the oldest unpublished outbox event (0 when none): the relay's lag.",
            registry=registry,
        )
        self.published = Counter(
            "kora_events_published_total",
            "Events the relay published, by type and outcome (ok | failed).",
            ["type", "outcome"],
            registry=registry,
        )
        self.relay_batch = Histogram(
            "kora_relay_batch_duration_seconds",
            "Time to claim, publish and mark one relay batch.",
            buckets=_PROCESS_BUCKETS,
            registry=registry,
        )
        self.consumed = Counter(
            "kora_consumer_events_total",
            "Deliveries handled by each consumer, by outcome "
            "(applied | duplicate | skipped | retried | dead_lettered).",
            ["consumer", "outcome"],
            registry=registry,
        )
        self.processing = Histogram(
            "kora_consumer_processing_seconds",
            "Time a consumer took to handle one delivery (verify, validate, effect, commit).",
            ["consumer"],
            buckets=_PROCESS_BUCKETS,
            registry=registry,
        )
        self.end_to_end = Histogram(
            "kora_event_end_to_end_seconds",
            "From the event's commit (occurred_at) to the consumer's effect committed.",
            ["consumer"],
            buckets=_LAG_BUCKETS,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "kora_consumer_lag_events",
            "Messages in the stream the consumer has not acknowledged yet.",
            ["consumer"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "kora_dead_letters_total",
            "Deliveries parked in the dead-letter queue, by consumer and reason.",
            ["consumer", "reason"],
            registry=registry,
        )
        self.dead_letters_open = Gauge(
            "kora_dead_letters_open",
            "Dead letters waiting for a person (open), by consumer.",
            ["consumer"],
            registry=registry,
        )

        self.notifications = Counter(
            "kora_notifications_total",
            "Customer notifications handed to the gateway, by outcome (sent | retried | failed).",
            ["outcome"],
            registry=registry,
        )

        # The core's `settlement` consumer: what reconciliation's outcome events did.
        self.recon_settlements = Counter(
            "kora_recon_settlement_payments_total",
            "Payments reconciliation confirmed settled, by what the core did (settled | already_settled | rejected).",
            ["outcome"],
            registry=registry,
        )
        self.payment_flags = Counter(
            "kora_payment_flags_total",
            "Payments flagged by reconciliation's confirmed mismatches, by source and outcome.",
            ["source", "outcome"],
            registry=registry,
        )

    def relay_published(self, event_type: str, ok: int, failed: int) -> None:
        label = safe_label(event_type)
        if ok:
            self.published.labels(label, "ok").inc(ok)
        if failed:
            self.published.labels(label, "failed").inc(failed)

    def set_outbox(self, backlog: int, oldest_age_seconds: float) -> None:
        self.outbox_backlog.set(backlog)
        self.outbox_oldest_age.set(max(oldest_age_seconds, 0.0))

    def consumer_outcome(self, consumer: str, outcome: str, seconds: float) -> None:
        self.consumed.labels(safe_label(consumer), outcome).inc()
        self.processing.labels(safe_label(consumer)).observe(seconds)

    def effect_lag(self, consumer: str, seconds: float) -> None:
        self.end_to_end.labels(safe_label(consumer)).observe(max(seconds, 0.0))

    def dead_letter(self, consumer: str, reason: str) -> None:
        self.dead_lettered.labels(safe_label(consumer), safe_label(reason)).inc()

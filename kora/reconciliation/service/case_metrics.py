"""The review queue's Prometheus metrics, on a registry passed in (the service's own).

Labels are low-cardinality words only (provider, outcome, action, reason, result); never a
case id, a payment id, a person or an amount."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge

from kora.observability import safe_label


class CaseMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._queue = Gauge(
            "kora_recon_review_queue_size",
            "Cases waiting for people (open, investigating, proposed, rejected, approved not posted), by provider.",
            ("provider",),
            registry=registry,
        )
        self._oldest = Gauge(
            "kora_recon_review_oldest_open_age_seconds",
            "Age of the oldest case waiting for people, by provider (0 when none).",
            ("provider",),
            registry=registry,
        )
        self._opened = Counter(
            "kora_recon_cases_opened",
            "Cases opened (or reopened) by match runs, by provider, outcome and handling (automatic or manual).",
            ("provider", "outcome", "handling"),
            registry=registry,
        )
        self._auto_closed = Counter(
            "kora_recon_cases_closed_by_rematch",
            "Cases closed because a later match run no longer found a discrepancy, by provider.",
            ("provider",),
            registry=registry,
        )
        self._actions = Counter(
            "kora_recon_case_actions",
            "Actions on cases, by kind (case.take, case.approve...).",
            ("action",),
            registry=registry,
        )
        self._refusals = Counter(
            "kora_recon_maker_checker_refusals",
            "Case actions refused, by reason (maker_checker: the approver proposed it; role_not_allowed).",
            ("reason",),
            registry=registry,
        )
        self._postings = Counter(
            "kora_recon_correction_postings",
            "Approved corrections sent to the core, by result (posted, replayed, failed: retried, "
            "refused: the core refused it for good and the case went back to people).",
            ("result",),
            registry=registry,
        )
        self._queries = Counter(
            "kora_recon_late_success_queries",
            "The automatic rule asking the core about a late success, by result "
            "(pending, confirmed, escalated, error).",
            ("result",),
            registry=registry,
        )
        self._withdrawn = Counter(
            "kora_recon_proposals_withdrawn",
            "Proposals withdrawn because a later match run changed the facts they were made for "
            "(payment, outcome, amount or currency), by provider.",
            ("provider",),
            registry=registry,
        )
        self._providers: set[str] = set()

    def queue(self, by_provider: Mapping[str, tuple[int, datetime]], *, now: datetime) -> None:
        seen = set()
        for provider, (count, oldest) in by_provider.items():
            label = safe_label(provider)
            seen.add(label)
            self._queue.labels(label).set(count)
            self._oldest.labels(label).set(max(0.0, (now - oldest).total_seconds()))
        for label in self._providers - seen:
            self._queue.labels(label).set(0)
            self._oldest.labels(label).set(0)
        self._providers |= seen

    def opened(self, provider: str, outcome: str, *, automatic: bool) -> None:
        self._opened.labels(safe_label(provider), safe_label(outcome), "automatic" if automatic else "manual").inc()

    def closed_by_rematch(self, provider: str) -> None:
        self._auto_closed.labels(safe_label(provider)).inc()

    def withdrawn(self, provider: str) -> None:
        self._withdrawn.labels(safe_label(provider)).inc()

    def action(self, action: str) -> None:
        self._actions.labels(safe_label(action)).inc()

    def refused(self, reason: str) -> None:
        self._refusals.labels(safe_label(reason)).inc()

    def posting(self, result: str) -> None:
        self._postings.labels(result).inc()

    def query(self, result: str) -> None:
        self._queries.labels(result).inc()

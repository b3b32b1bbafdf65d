"""The reconciliation service's Prometheus metrics, on a registry passed in (the service's own,
never the core's nor the global one). Shared by the API (`kora recon serve`) and the worker.

Labels are low-cardinality words only: provider (a dialect name), outcome, reason and
currency; never a report id, a line, a payment id or an amount. Anything that does not look
like such a word is recorded as ``"other"`` (kora.observability.safe_label).
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kora.observability import HttpRedMetrics, current_trace_ids, safe_label

# An import parses and encrypts a whole file (up to tens of MB); a match run reads a provider's
# payments: both run from milliseconds to minutes.
RECON_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def _exemplar() -> dict[str, str] | None:
    trace_id = current_trace_ids()[0]
    return {"trace_id": trace_id} if trace_id else None


class ReconMetrics(HttpRedMetrics):
    """Every metric of the reconciliation service; methods are named after what happened."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._risk_currencies: dict[str, set[str]] = {}
        # HTTP RED, with the core's names and labels (one dashboard; the scrape job tells them apart).
        super().__init__(registry)
        self._auth_failures = Counter(
            "kora_recon_auth_failures",
            "Requests refused for want of a valid access token or of a role, by reason.",
            ("reason",),
            registry=registry,
        )
        self._lines = Counter(
            "kora_recon_lines",
            "Results of match runs (a report line, or a payment the report does not list), by provider, "
            "outcome and reason (empty when none); each run counts all its results.",
            ("provider", "outcome", "reason"),
            registry=registry,
        )
        self._match_runs = Counter(
            "kora_recon_match_runs", "Match runs completed, by provider.", ("provider",), registry=registry
        )
        self._match_failures = Counter(
            "kora_recon_match_failures",
            "Match runs that failed (rolled back, nothing stored), whoever ran them (API, worker, CLI).",
            registry=registry,
        )
        self._outcome_events = Counter(
            "kora_recon_outcome_events",
            "Outcome events the reconciliation service wrote to its outbox, by type.",
            ("type",),
            registry=registry,
        )
        self._mismatch_rate = Gauge(
            "kora_recon_mismatch_rate",
            "Share of the latest results that are discrepancies (MISMATCH, MISSING_INTERNAL, MISSING_PROVIDER) "
            "among those that are not PENDING, over every stored report of the provider.",
            ("provider",),
            registry=registry,
        )
        self._amount_at_risk = Gauge(
            "kora_recon_amount_at_risk_minor",
            "Sum of the amounts of the latest results that are neither MATCHED nor PENDING, in minor units, "
            "over every stored report of the provider.",
            ("provider", "currency"),
            registry=registry,
        )
        self._imports = Counter(
            "kora_recon_report_imports",
            "Report uploads, by provider and result (imported, duplicate, rejected).",
            ("provider", "result"),
            registry=registry,
        )
        self._quarantined = Counter(
            "kora_recon_quarantined_lines",
            "Report lines set aside at import because they could not be parsed, by provider and reason.",
            ("provider", "reason"),
            registry=registry,
        )
        self._import_duration = Histogram(
            "kora_recon_import_duration_seconds",
            "Time to import one report (parse, encrypt, store), by provider.",
            ("provider",),
            buckets=RECON_DURATION_BUCKETS,
            registry=registry,
        )
        self._match_duration = Histogram(
            "kora_recon_match_duration_seconds",
            "Time of one match run (read, match, store the results), by provider.",
            ("provider",),
            buckets=RECON_DURATION_BUCKETS,
            registry=registry,
        )

    # HTTP RED comes from HttpRedMetrics; refused requests here ----------------------------
    def auth_failure(self, reason: str) -> None:
        self._auth_failures.labels(safe_label(reason)).inc()

    # Reconciliation -------------------------------------------------------------------
    def report_imported(self, provider: str, *, result: str, seconds: float | None = None) -> None:
        """One upload: ``result`` is imported, duplicate or rejected."""
        provider = safe_label(provider)
        self._imports.labels(provider, safe_label(result)).inc()
        if seconds is not None:
            self._import_duration.labels(provider).observe(seconds, exemplar=_exemplar())

    def lines_quarantined(self, provider: str, by_reason: Mapping[str, int]) -> None:
        for reason, count in by_reason.items():
            if count:
                self._quarantined.labels(safe_label(provider), safe_label(reason)).inc(count)

    def match_run(self, provider: str, by_outcome_reason: Mapping[tuple[str, str], int], seconds: float) -> None:
        """One completed match run: the count of its results by (outcome, reason or "")."""
        provider = safe_label(provider)
        self._match_runs.labels(provider).inc()
        for (outcome, reason), count in by_outcome_reason.items():
            if count:
                self._lines.labels(provider, safe_label(outcome), safe_label(reason) if reason else "").inc(count)
        self._match_duration.labels(provider).observe(seconds, exemplar=_exemplar())

    def match_failed(self) -> None:
        self._match_failures.inc()

    def recorded(self, event_type: str, count: int) -> None:
        """Outcome events written to the outbox (counted in the transaction that wrote them: a
        run rolled back and retried counts them again)."""
        self._outcome_events.labels(safe_label(event_type)).inc(count)

    def set_risk(self, provider: str, *, mismatch_rate: float | None, amount_at_risk: Mapping[str, int]) -> None:
        """The provider's standing: the gauges are replaced (a currency no longer at risk reads 0)."""
        provider = safe_label(provider)
        self._mismatch_rate.labels(provider).set(mismatch_rate or 0.0)
        current = {safe_label(currency): amount for currency, amount in amount_at_risk.items()}
        seen = self._risk_currencies.setdefault(provider, set())
        for currency in seen - current.keys():
            self._amount_at_risk.labels(provider, currency).set(0)
        for currency, amount in current.items():
            self._amount_at_risk.labels(provider, currency).set(amount)
        seen.update(current)

"""The reconciliation worker's metrics. Labels are outcome words and event types: never an id."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram

_RUN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class ReconMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.match_runs = Counter(
            "kora_recon_match_runs_total",
            "Scheduled match runs of the reconciliation worker, by result (ok | failed).",
            ["result"],
            registry=registry,
        )
        self.match_results = Counter(
            "kora_recon_match_results_total",
            "Results of the scheduled match runs, by outcome (MATCHED, MISMATCH, MISSING_*, PENDING).",
            ["outcome"],
            registry=registry,
        )
        self.match_seconds = Histogram(
            "kora_recon_match_run_seconds",
            "Time one match run took (read, match, store, outcome events, commit).",
            buckets=_RUN_BUCKETS,
            registry=registry,
        )
        self.outcome_events = Counter(
            "kora_recon_outcome_events_total",
            "Outcome events the reconciliation service wrote to its outbox, by type.",
            ["type"],
            registry=registry,
        )

    def recorded(self, event_type: str, count: int) -> None:
        self.outcome_events.labels(event_type).inc(count)

    def run(self, counts: Mapping[str, int] | None, seconds: float) -> None:
        self.match_runs.labels("ok" if counts is not None else "failed").inc()
        self.match_seconds.observe(seconds)
        for outcome, n in (counts or {}).items():
            if n:
                self.match_results.labels(outcome).inc(n)

#!/usr/bin/env python3
"""Kora's Grafana dashboards as code: this file writes grafana/dashboards/<uid>.json.

    python scripts/grafana_dashboards.py          # (re)write the JSON files
    python scripts/grafana_dashboards.py --check  # exit 1 if a JSON file differs from this source

Edit the panels here, not in the JSON (tests/integration/test_grafana_dashboards.py fails when the
two disagree). Every query reads the Prometheus datasource of grafana/provisioning (uid
`prometheus`); metric and label names are the ones kora/ registers (kora/observability/*.py,
kora/reconciliation/metrics.py, kora/reconciliation/service/case_metrics.py,
kora/simulator/metrics.py), the risk metrics of kora/risk, and Sloth's SLO recording rules.

Conventions:
- Counters that only move on a rare event (a retry, a dead letter, a bulkhead rejection) are
  "zero-filled" with `or <a series that always exists> * 0`, so the panel reads 0 per provider
  or consumer instead of "No data" (which on-call cannot tell apart from a broken scrape).
- Ratios whose numerator may not exist yet use `(numerator or denominator * 0) / denominator`.
- Money is in minor units of its currency (XOF and XAF have none): unit `short`, never a float
  currency unit.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "grafana" / "dashboards"
PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
RATE = "$__rate_interval"
RANGE = "$__range"


@dataclass
class Target:
    expr: str
    legend: str = ""
    exemplar: bool = False
    instant: bool = False


@dataclass
class Panel:
    title: str
    description: str
    unit: str
    targets: list[Target]
    kind: str = "timeseries"  # timeseries | stat | table | bargauge
    width: int = 12
    height: int = 8
    mappings: list[dict[str, Any]] = field(default_factory=list)
    thresholds: list[tuple[float | None, str]] = field(default_factory=list)
    stack: bool = False


@dataclass
class Variable:
    name: str
    label: str
    query: str  # label_values(<metric selector>, <label>)
    include_all: bool = True
    default: str | None = None  # when include_all is False


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    panels: list[Panel]
    variables: list[Variable] = field(default_factory=list)
    tags: tuple[str, ...] = ()


def t(expr: str, legend: str = "", *, exemplar: bool = False, instant: bool = False) -> Target:
    return Target(" ".join(expr.split()), legend, exemplar, instant)


def quantiles(metric: str, selector: str, by: str = "", *, exemplar: bool = True) -> list[Target]:
    """p50, p95 and p99 of a histogram, with exemplars (trace ids) on the latency graphs."""
    group = f"le, {by}" if by else "le"
    prefix = f"{{{{{by}}}}} " if by else ""
    return [
        t(
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{selector}}}[{RATE}])))",
            f"{prefix}p{round(q * 100)}",
            exemplar=exemplar,
        )
        for q in (0.5, 0.95, 0.99)
    ]


BREAKER_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "closed", "color": "green", "index": 0},
            "1": {"text": "half-open", "color": "yellow", "index": 1},
            "2": {"text": "open", "color": "red", "index": 2},
        },
    }
]

# Series that always exist once the process has started: the zero-fill baselines.
PROVIDERS_ZERO = 'sum by (provider) (kora_provider_breaker_state{job="kora-api", provider=~"$provider"}) * 0'
CONSUMERS_ZERO = 'sum by (consumer) (kora_consumer_events_total{consumer=~"$consumer"}) * 0'
RECON_ZERO = 'max by (provider) (kora_recon_mismatch_rate{provider=~"$provider"}) * 0'


# --- kora-overview -------------------------------------------------------------------------
HTTP = 'job=~"$job", route=~"$route"'
OVERVIEW = Dashboard(
    uid="kora-overview",
    title="Kora / Service overview",
    description="RED of Kora's HTTP services (the payment API by default): is the API up, fast and "
    "answering without errors, and which route hurts.",
    variables=[
        Variable(
            "job", "Service", "label_values(kora_http_requests_total, job)", include_all=False, default="kora-api"
        ),
        Variable("route", "Route", 'label_values(kora_http_requests_total{job=~"$job"}, route)'),
    ],
    panels=[
        Panel(
            "Request rate",
            "Requests per second handled by the selected service, every route and status.",
            "reqps",
            [t(f"sum(rate(kora_http_requests_total{{{HTTP}}}[{RATE}]))", "requests/s")],
            kind="stat",
            width=6,
            height=5,
        ),
        Panel(
            "Server error ratio (5xx)",
            "Share of requests answered with a 5xx: the API's own failures (4xx are the client's). "
            "The availability SLO counts these.",
            "percentunit",
            [
                t(
                    f'(sum(rate(kora_http_requests_total{{{HTTP}, status=~"5.."}}[{RATE}])) '
                    f"or sum(rate(kora_http_requests_total{{{HTTP}}}[{RATE}])) * 0) "
                    f"/ sum(rate(kora_http_requests_total{{{HTTP}}}[{RATE}]))",
                    "5xx share",
                )
            ],
            kind="stat",
            width=6,
            height=5,
            thresholds=[(None, "green"), (0.001, "yellow"), (0.01, "red")],
        ),
        Panel(
            "Requests in flight",
            "Requests being handled right now, per service: a rising line with a flat request rate "
            "means requests are stuck (database locks, a slow provider).",
            "short",
            [t('sum by (job) (kora_http_requests_in_flight{job=~"$job"})', "{{job}}")],
            kind="stat",
            width=6,
            height=5,
        ),
        Panel(
            "p99 latency",
            "99th percentile of request duration over every route of the selected service.",
            "s",
            [
                t(
                    f"histogram_quantile(0.99, sum by (le) "
                    f"(rate(kora_http_request_duration_seconds_bucket{{{HTTP}}}[{RATE}])))",
                    "p99",
                )
            ],
            kind="stat",
            width=6,
            height=5,
            thresholds=[(None, "green"), (0.3, "yellow"), (0.5, "red")],
        ),
        Panel(
            "Requests by route and status",
            "Request rate per route template and HTTP status code.",
            "reqps",
            [t(f"sum by (route, status) (rate(kora_http_requests_total{{{HTTP}}}[{RATE}]))", "{{route}} {{status}}")],
        ),
        Panel(
            "Errors by route (4xx and 5xx)",
            "Requests answered with an error, per route and status: 5xx are Kora's failures, 4xx the "
            "client's (validation, authentication, insufficient funds, idempotency conflicts).",
            "reqps",
            [
                t(
                    f'sum by (route, status) (rate(kora_http_requests_total{{{HTTP}, status=~"[45].."}}[{RATE}]))',
                    "{{route}} {{status}}",
                )
            ],
        ),
        Panel(
            "Latency p50 / p95 / p99 (with exemplars)",
            "Request duration quantiles over the selected routes. The dots are exemplars: click one to "
            "open the trace of a request in that latency bucket (Tempo).",
            "s",
            quantiles("kora_http_request_duration_seconds", HTTP),
        ),
        Panel(
            "p95 latency by route",
            "95th percentile of request duration per route template: which route is slow.",
            "s",
            [
                t(
                    f"histogram_quantile(0.95, sum by (le, route) "
                    f"(rate(kora_http_request_duration_seconds_bucket{{{HTTP}}}[{RATE}])))",
                    "{{route}}",
                    exemplar=True,
                )
            ],
        ),
        Panel(
            "Login failures",
            "Logins the core refused, by HTTP status (401 bad credentials, 423 locked out, 429 throttled), "
            "and requests the reconciliation API refused for want of a valid token or role. A spike is "
            "credential stuffing or a broken client (KoraLoginFailureSpike).",
            "reqps",
            [
                t(
                    f'sum by (status) (rate(kora_http_requests_total{{job="kora-api", route="/v1/auth/login", '
                    f'status=~"4.."}}[{RATE}]))',
                    "login {{status}}",
                ),
                t(
                    f"sum by (reason) (rate(kora_recon_auth_failures_total[{RATE}])) or on () vector(0)",
                    "reconciliation API {{reason}}",
                ),
            ],
        ),
        Panel(
            "Idempotent replays and key conflicts",
            "Requests answered from a stored response (a client retried safely), and requests refused "
            "because their Idempotency-Key was reused with another body or is still in flight.",
            "ops",
            [
                t(f"sum by (route) (rate(kora_idempotent_replays_total[{RATE}]))", "replayed {{route}}"),
                t(f"sum by (reason) (rate(kora_idempotency_conflicts_total[{RATE}]))", "conflict {{reason}}"),
            ],
        ),
        Panel(
            "Kora processes up",
            "Whether Prometheus scrapes each Kora process (1 up, 0 down), by job. A missing or 0 job "
            "means its metrics, and so its alerts, are blind (KoraApiMetricsAbsent...).",
            "short",
            [t('sum by (job) (up{job=~"kora-.*"})', "{{job}}")],
            kind="bargauge",
            width=24,
            height=6,
        ),
    ],
)

# --- kora-money-flow -----------------------------------------------------------------------
PAY = 'type=~"$type"'
MONEY_FLOW = Dashboard(
    uid="kora-money-flow",
    title="Kora / Money flow",
    description="Is money flowing correctly? Payments by type and outcome, amounts moved per currency, "
    "fees, failures, settlement and the ledger's integrity.",
    variables=[
        Variable("type", "Payment type", "label_values(kora_payments_total, type)"),
        Variable("currency", "Currency", "label_values(kora_payment_amount_minor_total, currency)"),
    ],
    panels=[
        Panel(
            "Payments by type and outcome",
            "Payments reaching an outcome per second, by type (p2p, cash_in, cash_out, merchant, refund, "
            "card) and status (CAPTURED, SETTLED, FAILED, REFUSED...).",
            "ops",
            [t(f"sum by (type, status) (rate(kora_payments_total{{{PAY}}}[{RATE}]))", "{{type}} {{status}}")],
            stack=True,
        ),
        Panel(
            "Outcome share by status",
            "Share of payment outcomes per status over the rate window: a growing FAILED or REFUSED "
            "share is customers not getting their money through.",
            "percentunit",
            [
                t(
                    f"sum by (status) (rate(kora_payments_total{{{PAY}}}[{RATE}])) / ignoring(status) group_left "
                    f"sum(rate(kora_payments_total{{{PAY}}}[{RATE}]))",
                    "{{status}}",
                )
            ],
        ),
        Panel(
            "Failures by cause",
            "Payments that ended FAILED per second, by cause: customer (declined, voided), provider "
            "(errors, unresolved), risk (denied or rejected by the risk engine) and internal (ours). Only "
            "provider and internal failures burn the payment-success SLO.",
            "ops",
            [
                t(
                    f"sum by (cause) (rate(kora_payment_failures_total{{{PAY}}}[{RATE}])) or on () vector(0)",
                    "{{cause}}",
                )
            ],
            stack=True,
        ),
        Panel(
            "Payments in the time range",
            "Payments per type and status over the dashboard's time range.",
            "short",
            [
                t(
                    f"sum by (type, status) (increase(kora_payments_total{{{PAY}}}[{RANGE}]))",
                    "{{type}} {{status}}",
                    instant=True,
                )
            ],
            kind="bargauge",
        ),
        Panel(
            "Amount moved per currency",
            "Money moved by captured and settled payments, in minor units of each currency per second "
            "(XOF has no decimals), by payment type.",
            "short",
            [
                t(
                    f'sum by (currency, type) (rate(kora_payment_amount_minor_total{{{PAY}, currency=~"$currency"}}'
                    f"[{RATE}]))",
                    "{{currency}} {{type}}",
                )
            ],
            stack=True,
        ),
        Panel(
            "Amount moved in the time range",
            "Total minor units moved per currency and payment type over the dashboard's time range.",
            "short",
            [
                t(
                    f'sum by (currency, type) (increase(kora_payment_amount_minor_total{{{PAY}, currency=~"$currency"}}'
                    f"[{RANGE}]))",
                    "{{currency}} {{type}}",
                    instant=True,
                )
            ],
            kind="bargauge",
        ),
        Panel(
            "Merchant fees collected",
            "Fees credited to fee revenue by merchant payments over the time range, in minor units.",
            "short",
            [
                t(
                    f'sum by (currency) (increase(kora_merchant_fee_revenue_minor_total{{currency=~"$currency"}}'
                    f"[{RANGE}])) "
                    f'or sum by (currency) (kora_payment_amount_minor_total{{currency=~"$currency"}}) * 0',
                    "{{currency}}",
                    instant=True,
                )
            ],
            kind="stat",
        ),
        Panel(
            "Failed and refused payments by type",
            "Payments that ended FAILED (the provider declined, or the outcome never resolved), REFUSED "
            "(a business refusal: insufficient funds, limits), REVERSED or CHARGED_BACK, per second.",
            "ops",
            [
                t(
                    f'sum by (type, status) (rate(kora_payments_total{{{PAY}, status=~"FAILED|REFUSED|REVERSED|'
                    f'CHARGED_BACK"}}[{RATE}])) or sum by (type) (rate(kora_payments_total{{{PAY}}}[{RATE}])) * 0',
                    "{{type}} {{status}}",
                )
            ],
        ),
        Panel(
            "Provider attempts by outcome",
            "What providers answered to cash-in and cash-out calls (succeeded, declined, timeout, "
            "unavailable, error): the causes behind provider payment failures.",
            "ops",
            [
                t(
                    f"sum by (provider, outcome) (rate(kora_provider_requests_total[{RATE}]))",
                    "{{provider}} {{outcome}}",
                )
            ],
        ),
        Panel(
            "Settled provider payments",
            "Captured provider payments moved to SETTLED (clearing to settlement bank), per provider "
            "and type, over the time range.",
            "short",
            [
                t(
                    f"sum by (provider, type) (increase(kora_settlement_payments_settled_total[{RANGE}])) "
                    f'or sum by (provider) (kora_provider_breaker_state{{job="kora-api"}}) * 0',
                    "{{provider}} {{type}}",
                    instant=True,
                )
            ],
            kind="bargauge",
        ),
        Panel(
            "Settlement overdue (J+N passed)",
            "Captured provider payments past their settlement due time, and their amount in minor "
            "units, per provider and currency (KoraSettlementOverdue).",
            "short",
            [
                t(
                    'max by (provider, currency) (kora_settlement_overdue_payments{job="kora-api"})',
                    "{{provider}} {{currency}} payments",
                ),
                t(
                    'max by (provider, currency) (kora_settlement_overdue_amount_minor{job="kora-api"})',
                    "{{provider}} {{currency}} amount",
                ),
            ],
        ),
        Panel(
            "Ledger invariant violations",
            "Violations found by the last ledger verification, per check (0 when the books balance). "
            "Anything above 0 pages (KoraLedgerInvariantViolation).",
            "short",
            [t("max by (check) (kora_ledger_invariant_violations)", "{{check}}")],
            kind="stat",
            thresholds=[(None, "green"), (1, "red")],
        ),
        Panel(
            "Time since the last ledger verification",
            "Seconds since a ledger verification run last completed in each process that ran one.",
            "s",
            [t("time() - max by (job) (kora_ledger_verify_last_run_timestamp_seconds > 0)", "{{job}}")],
            kind="stat",
            thresholds=[(None, "green"), (86400, "yellow"), (172800, "red")],
        ),
        Panel(
            "Ledger postings by kind",
            "Journal transactions posted per second by kind (p2p, cash_in.capture, cash_out.capture, "
            "merchant, refund, settlements, reversals, corrections).",
            "ops",
            [t(f"sum by (kind) (rate(kora_ledger_postings_total[{RATE}]))", "{{kind}}")],
            stack=True,
        ),
        Panel(
            "Ledger posting latency",
            "Time to post one journal transaction (locks, entries, chain trigger).",
            "s",
            quantiles("kora_ledger_posting_duration_seconds", ""),
        ),
    ],
)

# --- kora-slos -----------------------------------------------------------------------------
SLO = 'sloth_service=~"$service", sloth_slo=~"$slo"'
SLOS = Dashboard(
    uid="kora-slos",
    title="Kora / SLOs and error budgets",
    description="Every SLO of slo/*.yml from Sloth's recording rules (alerts/slo/): objective, error budget "
    "left over the SLO period, and how fast it burns over the alert windows.",
    variables=[
        Variable("service", "SLO service", "label_values(slo:objective:ratio, sloth_service)"),
        Variable("slo", "SLO", 'label_values(slo:objective:ratio{sloth_service=~"$service"}, sloth_slo)'),
    ],
    panels=[
        Panel(
            "Objective",
            "The SLO's target ratio of good events over its period.",
            "percentunit",
            [t(f"max by (sloth_service, sloth_slo) (slo:objective:ratio{{{SLO}}})", "{{sloth_slo}}", instant=True)],
            kind="bargauge",
            width=8,
        ),
        Panel(
            "Error budget remaining (SLO period)",
            "Share of the period's error budget not spent yet (1 = untouched, 0 = spent, below 0 = the "
            "SLO is breached over the period).",
            "percentunit",
            [
                t(
                    f"max by (sloth_service, sloth_slo) (slo:period_error_budget_remaining:ratio{{{SLO}}})",
                    "{{sloth_slo}}",
                    instant=True,
                )
            ],
            kind="bargauge",
            width=8,
            thresholds=[(None, "red"), (0.25, "yellow"), (0.5, "green")],
        ),
        Panel(
            "SLI over the SLO period",
            "Share of good events over the SLO period (1 - error ratio), next to the objective.",
            "percentunit",
            [
                t(
                    f"1 - max by (sloth_service, sloth_slo) (slo:period_burn_rate:ratio{{{SLO}}} "
                    f"* on (sloth_id) group_left () slo:error_budget:ratio{{{SLO}}})",
                    "{{sloth_slo}}",
                    instant=True,
                )
            ],
            kind="bargauge",
            width=8,
        ),
        Panel(
            "Current burn rate (5m)",
            "How many times faster than allowed the error budget burns right now (1 = exactly spends the "
            "budget over the period). Page alerts fire above 14.4 (1h) and 6 (6h).",
            "none",
            [t(f"max by (sloth_service, sloth_slo) (slo:current_burn_rate:ratio{{{SLO}}})", "{{sloth_slo}}")],
            thresholds=[(None, "green"), (1, "yellow"), (6, "orange"), (14.4, "red")],
        ),
        Panel(
            "Period burn rate",
            "Burn rate averaged over the whole SLO period: above 1 means the SLO will be missed.",
            "none",
            [t(f"max by (sloth_service, sloth_slo) (slo:period_burn_rate:ratio{{{SLO}}})", "{{sloth_slo}}")],
            thresholds=[(None, "green"), (1, "red")],
        ),
        Panel(
            "Error ratio by alert window",
            "The SLI's error ratio over each multi-window alert window (5m, 30m, 1h, 2h, 6h, 1d, 3d).",
            "percentunit",
            [
                t(
                    f'max by (sloth_slo, sloth_window) ({{__name__=~"slo:sli_error:ratio_rate(5m|30m|1h|2h|6h|1d|3d)", '
                    f"{SLO}}})",
                    "{{sloth_slo}} {{sloth_window}}",
                )
            ],
        ),
        Panel(
            "Burn rate by alert window",
            "Error ratio of each window divided by the error budget: the quantity the burn-rate alerts "
            "compare with 14.4 (1h/5m), 6 (6h/30m), 3 (1d/2h) and 1 (3d/6h).",
            "none",
            [
                t(
                    f'max by (sloth_slo, sloth_window) ({{__name__=~"slo:sli_error:ratio_rate(5m|1h|6h|3d)", {SLO}}} '
                    f"/ on (sloth_id) group_left () slo:error_budget:ratio{{{SLO}}})",
                    "{{sloth_slo}} {{sloth_window}}",
                )
            ],
        ),
        Panel(
            "SLO burn alerts firing",
            "Error-budget burn alerts firing now (page and ticket).",
            "short",
            [
                t(
                    'count by (alertname, severity) (ALERTS{alertstate="firing", alertname=~"Kora.+BudgetBurn"}) '
                    "or on () vector(0)",
                    "{{alertname}} {{severity}}",
                    instant=True,
                )
            ],
            kind="stat",
            thresholds=[(None, "green"), (1, "red")],
        ),
    ],
)

# --- kora-providers ------------------------------------------------------------------------
PROV = 'provider=~"$provider"'
PROVIDERS = Dashboard(
    uid="kora-providers",
    title="Kora / Providers",
    description="Mobile-money and card providers as Kora sees them: calls, errors, latency, and the "
    "resilience toolkit (circuit breakers, bulkheads, retries, fallbacks).",
    variables=[Variable("provider", "Provider", "label_values(kora_provider_breaker_state, provider)")],
    panels=[
        Panel(
            "Circuit breaker state",
            "Per provider: closed (calls flow), half-open (probing) or open (calls refused at once; "
            "KoraProviderBreakerOpen pages).",
            "none",
            [t(f'max by (provider) (kora_provider_breaker_state{{job="kora-api", {PROV}}})', "{{provider}}")],
            kind="stat",
            width=24,
            height=5,
            mappings=BREAKER_MAPPINGS,
            thresholds=[(None, "green"), (1, "yellow"), (2, "red")],
        ),
        Panel(
            "Provider calls by outcome",
            "Call attempts per second by provider, operation's outcome (succeeded, declined, timeout, "
            "unavailable, error, cancelled).",
            "ops",
            [
                t(
                    f"sum by (provider, outcome) (rate(kora_provider_requests_total{{{PROV}}}[{RATE}]))",
                    "{{provider}} {{outcome}}",
                )
            ],
        ),
        Panel(
            "Provider error ratio",
            "Share of attempts that failed for a technical reason (timeout, unavailable, error, "
            "cancelled); a decline is the provider's answer, not an error (KoraProviderErrorRateHigh).",
            "percentunit",
            [
                t(
                    f'(sum by (provider) (rate(kora_provider_requests_total{{{PROV}, outcome!~"succeeded|declined"}}'
                    f"[{RATE}])) or sum by (provider) (rate(kora_provider_requests_total{{{PROV}}}[{RATE}])) * 0) "
                    f"/ sum by (provider) (rate(kora_provider_requests_total{{{PROV}}}[{RATE}]))",
                    "{{provider}}",
                )
            ],
            thresholds=[(None, "green"), (0.05, "yellow"), (0.2, "red")],
        ),
        Panel(
            "Provider latency p50 / p95 / p99",
            "Time of one provider call attempt, by provider; exemplars open the trace of the call.",
            "s",
            quantiles("kora_provider_request_duration_seconds", PROV, "provider"),
        ),
        Panel(
            "Calls in flight (bulkhead occupancy)",
            "Provider calls in flight per provider: at the bulkhead's limit, new calls are refused.",
            "short",
            [t(f'max by (provider) (kora_provider_in_flight{{job="kora-api", {PROV}}})', "{{provider}}")],
        ),
        Panel(
            "Bulkhead rejections",
            "Calls refused by a full bulkhead, per second (0 when none).",
            "ops",
            [
                t(
                    f"sum by (provider) (rate(kora_provider_bulkhead_rejections_total{{{PROV}}}[{RATE}])) "
                    f"or {PROVIDERS_ZERO}",
                    "{{provider}}",
                )
            ],
        ),
        Panel(
            "Retries by reason",
            "Provider calls retried (only operations safe to repeat), per provider and reason.",
            "ops",
            [
                t(
                    f"sum by (provider, reason) (rate(kora_provider_retries_total{{{PROV}}}[{RATE}])) "
                    f"or {PROVIDERS_ZERO}",
                    "{{provider}} {{reason}}",
                )
            ],
        ),
        Panel(
            "Fallbacks to the next provider",
            "Requests routed past a provider that certainly did not take them (breaker open, refused), "
            "by the provider left and reason.",
            "ops",
            [
                t(
                    f"sum by (provider, reason) (label_replace(rate(kora_provider_fallbacks_total[{RATE}]), "
                    f'"provider", "$1", "from_provider", "(.*)")) or {PROVIDERS_ZERO}',
                    "{{provider}} {{reason}}",
                )
            ],
        ),
        Panel(
            "Breaker transitions",
            "Circuit breaker state changes over the time range, per provider and new state.",
            "short",
            [
                t(
                    f"sum by (provider, to_state) (increase(kora_provider_breaker_transitions_total{{{PROV}}}"
                    f"[{RANGE}])) or {PROVIDERS_ZERO}",
                    "{{provider}} {{to_state}}",
                    instant=True,
                )
            ],
            kind="bargauge",
        ),
        Panel(
            "Late confirmations",
            "Provider payments whose outcome was only known later, by a status query (normal after a "
            "timeout; a rise means providers answer slowly).",
            "short",
            [
                t(
                    f"sum by (type) (increase(kora_provider_late_confirmations_total[{RANGE}])) or on () vector(0)",
                    "{{type}}",
                    instant=True,
                )
            ],
            kind="stat",
        ),
        Panel(
            "Webhooks received and rejected",
            "Provider webhooks accepted by what they did, and refused by reason (forged, stale...).",
            "ops",
            [
                t(
                    f"sum by (provider, outcome) (rate(kora_webhooks_received_total{{{PROV}}}[{RATE}])) "
                    f"or {PROVIDERS_ZERO}",
                    "{{provider}} {{outcome}}",
                ),
                t(
                    f"sum by (provider, reason) (rate(kora_webhooks_rejected_total{{{PROV}}}[{RATE}])) "
                    f"or {PROVIDERS_ZERO}",
                    "rejected {{provider}} {{reason}}",
                ),
            ],
        ),
        Panel(
            "Simulator: operations by status",
            "What the provider simulator (development and staging only) finished, by provider, kind "
            "and status: the provider side of the calls above.",
            "ops",
            [
                t(
                    f'sum by (provider, kind, status) (rate(kora_sim_operations_finished_total{{job="kora-simulator"}}'
                    f"[{RATE}]))",
                    "{{provider}} {{kind}} {{status}}",
                )
            ],
        ),
    ],
)

# --- kora-reconciliation -------------------------------------------------------------------
RPROV = 'provider=~"$provider"'
RECONCILIATION = Dashboard(
    uid="kora-reconciliation",
    title="Kora / Reconciliation",
    description="Providers' settlement reports against Kora's payments: how many lines match, what does "
    "not, the money at risk, and the review queue people work through.",
    variables=[Variable("provider", "Provider", "label_values(kora_recon_report_imports_total, provider)")],
    panels=[
        Panel(
            "Mismatch rate",
            "Share of the latest results that are discrepancies (MISMATCH, MISSING_INTERNAL, "
            "MISSING_PROVIDER) among those not PENDING, per provider (KoraReconMismatchRateHigh).",
            "percentunit",
            [t(f"max by (provider) (kora_recon_mismatch_rate{{{RPROV}}})", "{{provider}}")],
            thresholds=[(None, "green"), (0.005, "yellow"), (0.02, "red")],
        ),
        Panel(
            "Amount at risk",
            "Sum of the amounts of the latest results neither MATCHED nor PENDING, in minor units, per "
            "provider and currency (KoraReconAmountAtRiskHigh).",
            "short",
            [
                t(
                    f"max by (provider, currency) (kora_recon_amount_at_risk_minor{{{RPROV}}}) or {RECON_ZERO}",
                    "{{provider}} {{currency}}",
                )
            ],
        ),
        Panel(
            "Lines by outcome",
            "Results of the match runs over the time range, per provider and outcome.",
            "short",
            [
                t(
                    f"sum by (provider, outcome) (increase(kora_recon_lines_total{{{RPROV}}}[{RANGE}]))",
                    "{{provider}} {{outcome}}",
                    instant=True,
                )
            ],
            kind="bargauge",
        ),
        Panel(
            "Discrepancies by reason",
            "Results that are not MATCHED nor PENDING over the time range, by outcome and reason "
            "(amount, currency, status, missing...).",
            "short",
            [
                t(
                    f'sum by (provider, outcome, reason) (increase(kora_recon_lines_total{{{RPROV}, outcome!~"MATCHED|'
                    f'PENDING"}}[{RANGE}])) or {RECON_ZERO}',
                    "{{provider}} {{outcome}} {{reason}}",
                    instant=True,
                )
            ],
            kind="bargauge",
        ),
        Panel(
            "Review queue size",
            "Cases waiting for people (open, investigating, proposed, rejected, approved not posted), per provider.",
            "short",
            [t(f"max by (provider) (kora_recon_review_queue_size{{{RPROV}}}) or {RECON_ZERO}", "{{provider}}")],
        ),
        Panel(
            "Oldest waiting case",
            "Age of the oldest case waiting for people, per provider (0 when none).",
            "s",
            [
                t(
                    f"max by (provider) (kora_recon_review_oldest_open_age_seconds{{{RPROV}}}) or {RECON_ZERO}",
                    "{{provider}}",
                )
            ],
            thresholds=[(None, "green"), (86400, "yellow"), (259200, "red")],
        ),
        Panel(
            "Match run duration",
            "Time of one match run (read, match, store), per provider; exemplars open its trace.",
            "s",
            quantiles("kora_recon_match_duration_seconds", RPROV, "provider", exemplar=True)[1:2],
        ),
        Panel(
            "Report import duration",
            "Time to import one report (parse, encrypt, store), per provider.",
            "s",
            quantiles("kora_recon_import_duration_seconds", RPROV, "provider", exemplar=True)[1:2],
        ),
        Panel(
            "Report uploads by result",
            "Report uploads over the time range: imported, duplicate (the same file again), rejected.",
            "short",
            [
                t(
                    f"sum by (provider, result) (increase(kora_recon_report_imports_total{{{RPROV}}}[{RANGE}]))",
                    "{{provider}} {{result}}",
                    instant=True,
                )
            ],
            kind="bargauge",
        ),
        Panel(
            "Match runs and failures",
            "Match runs completed per provider, and runs that failed (rolled back) over the time range.",
            "short",
            [
                t(
                    f"sum by (provider) (increase(kora_recon_match_runs_total{{{RPROV}}}[{RANGE}]))",
                    "{{provider}} runs",
                    instant=True,
                ),
                t(f"sum(increase(kora_recon_match_failures_total[{RANGE}]))", "failed runs", instant=True),
            ],
            kind="stat",
        ),
        Panel(
            "Quarantined report lines",
            "Report lines set aside at import because they could not be read, by provider and reason.",
            "short",
            [
                t(
                    f"sum by (provider, reason) (increase(kora_recon_quarantined_lines_total{{{RPROV}}}[{RANGE}])) "
                    f"or {RECON_ZERO}",
                    "{{provider}} {{reason}}",
                    instant=True,
                )
            ],
            kind="bargauge",
        ),
        Panel(
            "Cases opened and corrections posted",
            "Cases opened by match runs (automatic or manual handling), and approved corrections sent "
            "to the core, by result.",
            "short",
            [
                t(
                    f"sum by (provider, handling) (increase(kora_recon_cases_opened_total{{{RPROV}}}[{RANGE}])) "
                    f"or {RECON_ZERO}",
                    "opened {{provider}} {{handling}}",
                    instant=True,
                ),
                t(
                    f"sum by (result) (increase(kora_recon_correction_postings_total[{RANGE}])) or on () vector(0)",
                    "corrections {{result}}",
                    instant=True,
                ),
            ],
            kind="bargauge",
        ),
        Panel(
            "Settlements confirmed to the core",
            "What the core's settlement consumer did with reconciliation's settlement_confirmed events "
            "(settled, already_settled, rejected) over the time range.",
            "short",
            [
                t(
                    f"sum by (outcome) (increase(kora_recon_settlement_payments_total[{RANGE}])) or on () vector(0)",
                    "{{outcome}}",
                    instant=True,
                )
            ],
            kind="stat",
        ),
    ],
)

# --- kora-events ---------------------------------------------------------------------------
CONS = 'consumer=~"$consumer"'
EVENTS = Dashboard(
    uid="kora-events",
    title="Kora / Events",
    description="The event pipeline (ADR 0019): outbox backlog and relay lag, publishing, and per consumer "
    "its lag, processing time, outcomes and dead letters.",
    variables=[Variable("consumer", "Consumer", "label_values(kora_consumer_events_total, consumer)")],
    panels=[
        Panel(
            "Outbox backlog",
            "Events written to an outbox and not yet published, per service's outbox (the core's, reconciliation's).",
            "short",
            [t("max by (job) (kora_outbox_backlog_events)", "{{job}}")],
        ),
        Panel(
            "Oldest unpublished event",
            "Age of the oldest unpublished outbox event: the relay's lag (KoraOutboxLagHigh).",
            "s",
            [t("max by (job) (kora_outbox_oldest_unpublished_age_seconds)", "{{job}}")],
            thresholds=[(None, "green"), (30, "yellow"), (120, "red")],
        ),
        Panel(
            "Events published",
            "Events the relays published per second, by outcome (ok, failed) and event type.",
            "ops",
            [t(f"sum by (outcome, type) (rate(kora_events_published_total[{RATE}]))", "{{outcome}} {{type}}")],
        ),
        Panel(
            "Relay batch duration",
            "Time to claim, publish and mark one relay batch.",
            "s",
            quantiles("kora_relay_batch_duration_seconds", "", exemplar=False),
        ),
        Panel(
            "Consumer lag",
            "Messages in the stream each consumer has not acknowledged yet (KoraConsumerLagHigh).",
            "short",
            [t(f"max by (consumer) (kora_consumer_lag_events{{{CONS}}})", "{{consumer}}")],
        ),
        Panel(
            "Deliveries by outcome",
            "Deliveries handled per second, by consumer and outcome (applied, duplicate, skipped, "
            "retried, dead_lettered).",
            "ops",
            [
                t(
                    f"sum by (consumer, outcome) (rate(kora_consumer_events_total{{{CONS}}}[{RATE}]))",
                    "{{consumer}} {{outcome}}",
                )
            ],
        ),
        Panel(
            "Processing time p95",
            "Time a consumer took to handle one delivery (verify, validate, effect, commit).",
            "s",
            [
                t(
                    f"histogram_quantile(0.95, sum by (le, consumer) "
                    f"(rate(kora_consumer_processing_seconds_bucket{{{CONS}}}[{RATE}])))",
                    "{{consumer}}",
                )
            ],
        ),
        Panel(
            "End-to-end freshness p95",
            "From an event's commit to its consumer's effect committed: how stale what each consumer "
            "shows is (the event freshness SLO).",
            "s",
            [
                t(
                    f"histogram_quantile(0.95, sum by (le, consumer) "
                    f"(rate(kora_event_end_to_end_seconds_bucket{{{CONS}}}[{RATE}])))",
                    "{{consumer}}",
                )
            ],
        ),
        Panel(
            "Dead letters parked",
            "Deliveries parked in the dead-letter queue per second, by consumer and reason (KoraDeadLettersGrowing).",
            "ops",
            [
                t(
                    f"sum by (consumer, reason) (rate(kora_dead_letters_total{{{CONS}}}[{RATE}])) or {CONSUMERS_ZERO}",
                    "{{consumer}} {{reason}}",
                )
            ],
        ),
        Panel(
            "Open dead letters",
            "Dead letters waiting for a person, by consumer: replay or drop them (kora events dlq ...).",
            "short",
            [t(f"max by (consumer) (kora_dead_letters_open{{{CONS}}})", "{{consumer}}")],
            thresholds=[(None, "green"), (1, "red")],
        ),
        Panel(
            "Notifications by outcome",
            "Customer notifications handed to the gateway, by outcome (sent, retried, failed).",
            "ops",
            [t(f"sum by (outcome) (rate(kora_notifications_total[{RATE}]))", "{{outcome}}")],
        ),
    ],
)

# --- kora-risk -----------------------------------------------------------------------------
RISK_TYPE = 'payment_type=~"$payment_type"'
RISK_ZERO = f"sum by (outcome) (kora_risk_decisions_total{{{RISK_TYPE}}}) * 0"
RISK = Dashboard(
    uid="kora-risk",
    title="Kora / Risk",
    description="Risk decisions on payments (allow, review, deny), which rules fire, how fast the engine "
    "answers, the review queue risk analysts work through, and the abuse signals around them.",
    variables=[Variable("payment_type", "Payment type", "label_values(kora_risk_decisions_total, payment_type)")],
    panels=[
        Panel(
            "Decisions by outcome",
            "Risk decisions per second, by outcome (allow, review, deny) and payment type.",
            "ops",
            [
                t(
                    f"sum by (outcome, payment_type) (rate(kora_risk_decisions_total{{{RISK_TYPE}}}[{RATE}]))",
                    "{{outcome}} {{payment_type}}",
                )
            ],
            stack=True,
        ),
        Panel(
            "Review and deny share",
            "Share of decisions that held a payment for review or denied it. A jump is a fraud wave or a "
            "policy change gone wrong (KoraFraudPatternSpike).",
            "percentunit",
            [
                t(
                    f"sum by (outcome) (rate(kora_risk_decisions_total{{{RISK_TYPE}}}[{RATE}])) / ignoring(outcome) "
                    f"group_left sum(rate(kora_risk_decisions_total{{{RISK_TYPE}}}[{RATE}]))",
                    "{{outcome}}",
                )
            ],
        ),
        Panel(
            "Rule hits",
            "Rules that contributed to a decision over the time range, by rule and the decision's outcome.",
            "short",
            [
                t(
                    f"sum by (rule, outcome) (increase(kora_risk_rule_hits_total[{RANGE}])) or {RISK_ZERO}",
                    "{{rule}} {{outcome}}",
                    instant=True,
                )
            ],
            kind="bargauge",
        ),
        Panel(
            "Assessment latency p50 / p95 / p99",
            "Time the risk engine takes to assess one payment (it sits on the payment path).",
            "s",
            quantiles("kora_risk_assessment_duration_seconds", ""),
        ),
        Panel(
            "Review queue size",
            "Payments held for a risk analyst's decision.",
            "short",
            [t("max(kora_risk_review_queue_size)", "waiting")],
            kind="stat",
            width=6,
        ),
        Panel(
            "Oldest payment in review",
            "Age of the oldest payment waiting for a risk analyst (KoraRiskReviewQueueStale).",
            "s",
            [t("max(kora_risk_review_oldest_age_seconds)", "oldest")],
            kind="stat",
            width=6,
            thresholds=[(None, "green"), (900, "yellow"), (3600, "red")],
        ),
        Panel(
            "Review decisions",
            "Analysts' decisions on held payments over the time range, by decision and rule.",
            "short",
            [
                t(
                    f"sum by (decision, rule) (increase(kora_risk_review_decisions_total[{RANGE}]))",
                    "{{decision}} {{rule}}",
                    instant=True,
                )
            ],
            kind="bargauge",
        ),
        Panel(
            "Abuse signals",
            "Logins refused (bad credentials, lockouts, throttling) and sensitive requests refused by the "
            "anti-replay check (stale timestamp, reused nonce) at the core, per second.",
            "ops",
            [
                t(
                    f'sum by (status) (rate(kora_http_requests_total{{job="kora-api", route="/v1/auth/login", '
                    f'status=~"4.."}}[{RATE}]))',
                    "login refused {{status}}",
                ),
                t(
                    f"sum by (reason) (rate(kora_request_replay_refusals_total[{RATE}])) or on () vector(0)",
                    "replay refused {{reason}}",
                ),
            ],
        ),
    ],
)

DASHBOARDS = [OVERVIEW, MONEY_FLOW, SLOS, PROVIDERS, RECONCILIATION, EVENTS, RISK]


# --- rendering ----------------------------------------------------------------------------
def _thresholds(steps: list[tuple[float | None, str]]) -> dict[str, Any]:
    steps = steps or [(None, "green")]
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for value, color in steps]}


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": panel.unit,
        "thresholds": _thresholds(panel.thresholds),
        "mappings": panel.mappings,
    }
    options: dict[str, Any]
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10 if panel.stack else 0,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"},
        }
        defaults["color"] = {"mode": "palette-classic"}
        options = {
            "legend": {
                "displayMode": "table",
                "placement": "bottom",
                "showLegend": True,
                "calcs": ["lastNotNull", "max"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    else:
        defaults["color"] = {"mode": "thresholds"}
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "horizontal" if panel.kind == "bargauge" else "auto",
        }
        if panel.kind == "stat":
            options.update({"colorMode": "value", "graphMode": "area", "textMode": "auto", "justifyMode": "auto"})
        else:
            options.update({"displayMode": "gradient", "showUnfilled": True})
    targets = []
    for index, target in enumerate(panel.targets):
        entry: dict[str, Any] = {
            "refId": chr(ord("A") + index),
            "datasource": PROMETHEUS,
            "editorMode": "code",
            "expr": target.expr,
            "legendFormat": target.legend or "__auto",
            "range": not target.instant,
            "instant": target.instant,
        }
        if target.exemplar:
            entry["exemplar"] = True
        targets.append(entry)
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": PROMETHEUS,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": targets,
    }


def _variable(variable: Variable) -> dict[str, Any]:
    if variable.include_all:
        current = {"selected": True, "text": ["All"], "value": ["$__all"]}
    else:
        current = {"selected": True, "text": variable.default, "value": variable.default}
    return {
        "name": variable.name,
        "label": variable.label,
        "type": "query",
        "datasource": PROMETHEUS,
        "definition": variable.query,
        "query": {"query": variable.query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "sort": 1,
        "multi": variable.include_all,
        "includeAll": variable.include_all,
        "allValue": ".*" if variable.include_all else None,
        "current": current,
        "options": [],
        "hide": 0,
    }


def render(dashboard: Dashboard) -> dict[str, Any]:
    panels = []
    x = y = row_height = 0
    for panel_id, panel in enumerate(dashboard.panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        panels.append(_panel(panel, panel_id, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["kora", *dashboard.tags],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "type": "dashboards",
                "tags": ["kora"],
                "asDropdown": True,
                "title": "Kora dashboards",
                "includeVars": False,
                "keepTime": True,
            }
        ],
        "templating": {"list": [_variable(v) for v in dashboard.variables]},
        "panels": panels,
    }


def rendered() -> dict[str, str]:
    """File name -> the JSON text this source produces."""
    return {f"{d.uid}.json": json.dumps(render(d), indent=2, ensure_ascii=False) + "\n" for d in DASHBOARDS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    args = parser.parse_args()
    stale = []
    for name, text in rendered().items():
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date (run python scripts/grafana_dashboards.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

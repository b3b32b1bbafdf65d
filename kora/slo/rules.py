"""Prometheus rules for a service's SLOs, the way Sloth generates them (same record names and
`sloth_*` labels, so Sloth's dashboards and queries work on them), with one change: every
SLI ratio is guarded so that a window without traffic records nothing (no NaN, no +Inf, no
alert) and a window with traffic but no error series records 0 instead of nothing.

Per SLO:
- SLI error ratios ``slo:sli_error:ratio_rate<w>`` over 5m, 30m, 1h, 2h, 6h, 1d, 3d, and over
  the 30 d period as the mean of the 5m ratios (as Sloth does);
- metadata: ``slo:objective:ratio``, ``slo:error_budget:ratio``, ``slo:time_period:days``,
  ``slo:current_burn_rate:ratio``, ``slo:period_burn_rate:ratio``,
  ``slo:period_error_budget_remaining:ratio`` and ``sloth_slo_info``;
- multi-window multi-burn-rate alerts (Google SRE workbook, ch. 5): the page alert fires at
  14.4x the budget over 1h and 5m, or 6x over 6h and 30m; the ticket alert at 3x over 1d and
  2h, or 1x over 3d and 6h. The short window makes an alert stop soon after the burn stops.

Everything here is pure: a `ServiceSlos` in, plain dicts out, in a stable order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kora.slo.spec import WINDOW_PLACEHOLDER, AlertKind, ServiceSlos, Slo

SLI_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
PERIOD_DAYS = 30
PERIOD_WINDOW = f"{PERIOD_DAYS}d"
GENERATOR = "kora-slo-generate"


@dataclass(frozen=True, slots=True)
class BurnCondition:
    """Burning ``factor`` times the budget over both ``long`` and ``short`` windows."""

    factor: Decimal
    long: str
    short: str


PAGE_CONDITIONS = (BurnCondition(Decimal("14.4"), "1h", "5m"), BurnCondition(Decimal(6), "6h", "30m"))
TICKET_CONDITIONS = (BurnCondition(Decimal(3), "1d", "2h"), BurnCondition(Decimal(1), "3d", "6h"))


def slo_id(service: str, slo: Slo) -> str:
    return f"{service}-{slo.name}"


def decimal_text(value: Decimal) -> str:
    """``value`` as PromQL reads it, without float noise or exponent (0.001, 14.4, 6)."""
    return format(value.normalize(), "f")


def sli_error_ratio(slo: Slo, window: str) -> str:
    """The PromQL error ratio of ``slo`` over ``window``: errors / total, where a total of 0
    (no traffic) is dropped (`> 0`), so the ratio is absent rather than NaN or +Inf, and
    errors with no series at all (nothing ever failed) count as 0. The spec's queries must
    aggregate to a single series without labels (``sum(rate(...))``), as Sloth requires."""
    if slo.error_ratio_query:
        return f"({slo.error_ratio_query.replace(WINDOW_PLACEHOLDER, window)})\n"
    errors = slo.error_query.replace(WINDOW_PLACEHOLDER, window)
    total = slo.total_query.replace(WINDOW_PLACEHOLDER, window)
    return f"(\n  ({errors})\n  or vector(0)\n)\n/\n(\n  ({total}) > 0\n)\n"


def _selector(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{key}="{value}"' for key, value in labels.items()) + "}"


def _sorted(labels: Mapping[str, str]) -> dict[str, str]:
    return {key: labels[key] for key in sorted(labels)}


def service_rule_groups(service: ServiceSlos) -> list[dict[str, Any]]:
    """The rule groups of every SLO of ``service``, in spec order: for each SLO its SLI
    recordings, its metadata recordings, then its alerts (when it has any)."""
    groups: list[dict[str, Any]] = []
    for slo in service.slos:
        groups.append(_sli_group(service, slo))
        groups.append(_meta_group(service, slo))
        alerts = _alert_rules(service, slo)
        if alerts:
            groups.append({"name": f"sloth-slo-alerts-{slo_id(service.service, slo)}", "rules": alerts})
    return groups


def _identity(service: ServiceSlos, slo: Slo) -> dict[str, str]:
    return {"sloth_id": slo_id(service.service, slo), "sloth_service": service.service, "sloth_slo": slo.name}


def _common_labels(service: ServiceSlos, slo: Slo) -> dict[str, str]:
    return {**service.labels, **slo.labels, **_identity(service, slo)}


def _sli_group(service: ServiceSlos, slo: Slo) -> dict[str, Any]:
    labels = _common_labels(service, slo)
    rules: list[dict[str, Any]] = [
        {
            "record": f"slo:sli_error:ratio_rate{window}",
            "expr": sli_error_ratio(slo, window),
            "labels": _sorted({**labels, "sloth_window": window}),
        }
        for window in SLI_WINDOWS
    ]
    five = f"slo:sli_error:ratio_rate5m{_selector(_identity(service, slo))}"
    rules.append(
        {
            "record": f"slo:sli_error:ratio_rate{PERIOD_WINDOW}",
            # The mean of the 5m ratios over the period: only windows with traffic count, and
            # a period without any records nothing (count_over_time is never 0 here).
            "expr": (
                f"sum_over_time({five}[{PERIOD_WINDOW}])\n"
                f"/ ignoring (sloth_window)\n"
                f"count_over_time({five}[{PERIOD_WINDOW}])\n"
            ),
            "labels": _sorted({**labels, "sloth_window": PERIOD_WINDOW}),
        }
    )
    return {"name": f"sloth-slo-sli-recordings-{slo_id(service.service, slo)}", "rules": rules}


def _meta_group(service: ServiceSlos, slo: Slo) -> dict[str, Any]:
    labels = _sorted(_common_labels(service, slo))
    identity = _selector(_identity(service, slo))
    objective = decimal_text(slo.objective / Decimal(100))
    budget = decimal_text(slo.error_budget)
    on = "on (sloth_id, sloth_slo, sloth_service) group_left"
    rules: list[dict[str, Any]] = [
        {"record": "slo:objective:ratio", "expr": f"vector({objective})", "labels": labels},
        {"record": "slo:error_budget:ratio", "expr": f"vector({budget})", "labels": labels},
        {"record": "slo:time_period:days", "expr": f"vector({PERIOD_DAYS})", "labels": labels},
        {
            "record": "slo:current_burn_rate:ratio",
            "expr": f"slo:sli_error:ratio_rate5m{identity}\n/ {on}\nslo:error_budget:ratio{identity}\n",
            "labels": labels,
        },
        {
            "record": "slo:period_burn_rate:ratio",
            "expr": f"slo:sli_error:ratio_rate{PERIOD_WINDOW}{identity}\n/ {on}\nslo:error_budget:ratio{identity}\n",
            "labels": labels,
        },
        {
            "record": "slo:period_error_budget_remaining:ratio",
            "expr": f"1 - slo:period_burn_rate:ratio{identity}",
            "labels": labels,
        },
        {
            "record": "sloth_slo_info",
            "expr": "vector(1)",
            "labels": _sorted(
                {
                    **labels,
                    "sloth_mode": GENERATOR,
                    "sloth_objective": decimal_text(slo.objective),
                    "sloth_spec": "prometheus/v1",
                }
            ),
        },
    ]
    return {"name": f"sloth-slo-meta-recordings-{slo_id(service.service, slo)}", "rules": rules}


def burn_expression(service: ServiceSlos, slo: Slo, conditions: tuple[BurnCondition, ...]) -> str:
    """Any of ``conditions``, each true when both its windows burn faster than its factor;
    the value is the short window's error ratio of the first condition that holds."""
    identity = _selector(_identity(service, slo))
    budget = decimal_text(slo.error_budget)

    def over(window: str, factor: Decimal) -> str:
        return (
            f"max without (sloth_window) "
            f"(slo:sli_error:ratio_rate{window}{identity} > ({decimal_text(factor)} * {budget}))"
        )

    parts = [
        f"(\n  {over(condition.short, condition.factor)}\n  and\n  {over(condition.long, condition.factor)}\n)"
        for condition in conditions
    ]
    return "\nor\n".join(parts) + "\n"


def _alert_rules(service: ServiceSlos, slo: Slo) -> list[dict[str, Any]]:
    alerting = slo.alerting
    if alerting is None:
        return []
    rules: list[dict[str, Any]] = []
    for severity, kind, conditions in (
        ("page", alerting.page, PAGE_CONDITIONS),
        ("ticket", alerting.ticket, TICKET_CONDITIONS),
    ):
        if kind.disabled:
            continue
        rules.append(_alert(service, slo, severity, kind, conditions))
    return rules


def _alert(
    service: ServiceSlos, slo: Slo, severity: str, kind: AlertKind, conditions: tuple[BurnCondition, ...]
) -> dict[str, Any]:
    assert slo.alerting is not None
    labels = {
        **service.labels,
        **slo.labels,
        **_identity(service, slo),
        **slo.alerting.labels,
        **kind.labels,
        "sloth_severity": severity,
    }
    labels.setdefault("severity", severity)
    annotations = {**slo.alerting.annotations, **kind.annotations}
    windows = " or ".join(f"{c.factor.normalize():f}x over {c.long} and {c.short}" for c in conditions)
    annotations.setdefault("burn_windows", windows)
    return {
        "alert": slo.alerting.name,
        "expr": burn_expression(service, slo, conditions),
        "labels": _sorted(labels),
        "annotations": _sorted(annotations),
    }

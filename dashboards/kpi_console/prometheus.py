"""SLO views from Prometheus, when the console is given one (KORA_CONSOLE_PROMETHEUS_URL).

The SLOs are Sloth-generated recording rules (`alerts/slo/*.rules.yml`): per SLO (labels
`sloth_service`, `sloth_slo`), `slo:sli_error:ratio_rate<window>` (the error ratio over a
window), `slo:objective:ratio` and `slo:error_budget:ratio`. Any of them may be missing (rules
not loaded yet, a Prometheus without Kora's rules): the console then says so and shows what it has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

WINDOWS = ("5m", "30m", "1h", "6h", "1d", "3d", "30d")


class PrometheusUnavailable(Exception):
    pass


@dataclass
class Slo:
    service: str
    name: str
    objective: float | None = None
    error_budget: float | None = None
    error_ratio: dict[str, float] = field(default_factory=dict)

    def burn_rate(self, window: str) -> float | None:
        """How fast the budget burns over `window`: 1 spends it exactly by the period's end."""
        ratio = self.error_ratio.get(window)
        if ratio is None or not self.error_budget:
            return None
        return ratio / self.error_budget

    @property
    def budget_remaining(self) -> float | None:
        """Share of the period's budget left, from the longest window available (30d)."""
        ratio = self.error_ratio.get("30d")
        if ratio is None or not self.error_budget:
            return None
        return 1 - ratio / self.error_budget


def _vector(client: httpx.Client, query: str) -> list[dict[str, Any]]:
    try:
        response = client.get("/api/v1/query", params={"query": query})
    except httpx.HTTPError as exc:
        raise PrometheusUnavailable(f"Prometheus does not answer ({type(exc).__name__})") from None
    if response.status_code != 200:
        raise PrometheusUnavailable(f"Prometheus answered {response.status_code}")
    body = response.json()
    if body.get("status") != "success":
        raise PrometheusUnavailable(str(body.get("error", "query failed")))
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def slos(base_url: str, *, timeout: float = 5.0) -> list[Slo]:
    """Every SLO Prometheus has recording rules for, with what it knows of each."""
    found: dict[tuple[str, str], Slo] = {}

    def slo_of(metric: dict[str, str]) -> Slo:
        key = (metric.get("sloth_service", "?"), metric.get("sloth_slo", "?"))
        return found.setdefault(key, Slo(*key))

    with httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout) as client:
        for sample in _vector(client, "slo:objective:ratio"):
            slo_of(sample["metric"]).objective = float(sample["value"][1])
        for sample in _vector(client, "slo:error_budget:ratio"):
            slo_of(sample["metric"]).error_budget = float(sample["value"][1])
        for window in WINDOWS:
            for sample in _vector(client, f"slo:sli_error:ratio_rate{window}"):
                value = float(sample["value"][1])
                if value == value:  # NaN when a window has no traffic
                    slo_of(sample["metric"]).error_ratio[window] = value
    for slo in found.values():
        if slo.error_budget is None and slo.objective is not None:
            slo.error_budget = 1 - slo.objective
    return sorted(found.values(), key=lambda s: (s.service, s.name))

"""Reading Kora's Grafana dashboards for tests: their panels, their PromQL with the template
variables substituted, the metric names a query reads, and the metric names Kora's code
registers. Shared by the static check (tests/integration/test_grafana_dashboards.py) and the
live one against a real Prometheus (tests/e2e/test_prometheus_live.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "grafana" / "dashboards"
PROVISIONING = ROOT / "grafana" / "provisioning"
ALERTS = ROOT / "alerts"

# Metrics the dashboards read that are not yet exported or recorded (none: every branch of
# issue #6/#7 is merged). A name here is skipped by the live check; the static test fails when
# one becomes exported, so the list cannot go stale.
AWAITING_MERGE: frozenset[str] = frozenset()
# The dashboards issue #7 asks for, by uid (one file grafana/dashboards/<uid>.json each); alert
# annotations, playbooks and tests name them.
DASHBOARD_UIDS = frozenset(
    {
        "kora-overview",
        "kora-money-flow",
        "kora-slos",
        "kora-providers",
        "kora-reconciliation",
        "kora-events",
        "kora-risk",
    }
)
# Series Prometheus makes itself.
PROMETHEUS_BUILTINS = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds"})

_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
    }
)


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    expr: str  # as written in the JSON (template variables in it)

    def where(self) -> str:
        return f"{self.dashboard} / {self.panel}"


def dashboards() -> dict[str, dict[str, Any]]:
    """File stem -> parsed dashboard JSON."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside (collapsed) rows included; rows themselves are not panels."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def queries(dashboard: dict[str, Any]) -> Iterator[Query]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield Query(dashboard["title"], panel["title"], target["expr"])


def variable_selectors(dashboard: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(variable name, series selector, label) of each `label_values(selector, label)` variable."""
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        found = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", text.strip())
        assert found is not None, f"{dashboard['uid']}: variable {variable['name']}: not label_values(): {text}"
        yield variable["name"], found.group(1), found.group(2)


def substitute(expr: str, dashboard: dict[str, Any], *, rate_interval: str, time_range: str) -> str:
    """The query Grafana would send with every variable at its default: "All" (its allValue,
    `.*`) or its current value, and the built-in intervals given."""
    values = {"__rate_interval": rate_interval, "__interval": rate_interval, "__range": time_range}
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("includeAll"):
            values[variable["name"]] = variable.get("allValue") or ".*"
        else:
            current = variable["current"]["value"]
            values[variable["name"]] = current[0] if isinstance(current, list) else current

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return values.get(name, match.group(0))

    return re.sub(r"\$\{(\w+)\}|\$(__\w+|[A-Za-z]\w*)", replace, expr)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (a `{__name__=~"a(x|y)"}` selector counts as
    `ax` and `ay`). A lexical reading, enough for Kora's dashboards and rules."""
    names: set[str] = set()
    for prefix, alternatives in re.findall(r'__name__=~"([^"(]*)\(([^")]*)\)"', expr):
        names.update(prefix + alternative for alternative in alternatives.split("|"))
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    for found in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, call = found.group(1), found.group(2)
        if call or word.lower() in _KEYWORDS or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


_REGISTRATION = re.compile(r"\b(Counter|Gauge|Histogram)\(\s*\"([a-zA-Z_:][\w:]*)\"")


def registered_metrics(package: Path = ROOT / "kora") -> set[str]:
    """Every series name Kora's code can export (prometheus-client's suffixes included)."""
    names: set[str] = set()
    for path in package.rglob("*.py"):
        for kind, name in _REGISTRATION.findall(path.read_text()):
            if kind == "Counter":
                base = name.removesuffix("_total")
                names.update({f"{base}_total", f"{base}_created"})
            elif kind == "Histogram":
                names.update({f"{name}_bucket", f"{name}_count", f"{name}_sum", f"{name}_created"})
            else:
                names.add(name)
    return names


def rule_files() -> list[Path]:
    """The rule files Prometheus loads (deploy/prometheus/prometheus.yml's rule_files)."""
    return sorted([*ALERTS.glob("*.rules.yml"), *(ALERTS / "slo").glob("*.rules.yml")])


def recorded_metrics() -> set[str]:
    """Names recorded by the recording rules of alerts/."""
    names: set[str] = set()
    for path in rule_files():
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            names.update(rule["record"] for rule in group.get("rules", []) if "record" in rule)
    return names

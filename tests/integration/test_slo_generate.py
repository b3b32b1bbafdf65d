"""`kora slo generate` against the repository's own specs: the committed alerts/slo files are
exactly what the specs generate (CI's diff check), `--check` says so and fails with a diff
when they drift, and every metric and label the rules query is one Kora really exports."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from kora.cli import main
from kora.observability import KoraMetrics
from kora.observability.event_metrics import EventMetrics
from kora.observability.service_metrics import ServiceMetrics
from kora.reconciliation.metrics import ReconMetrics
from kora.risk import RiskMetrics
from kora.slo import drift, load_specs, planned_files

ROOT = Path(__file__).resolve().parents[2]
SLO_DIR = ROOT / "slo"
OUT_DIR = ROOT / "alerts" / "slo"
RULE_FILES = sorted((ROOT / "alerts").glob("*.rules.yml")) + sorted(OUT_DIR.glob("*.rules.yml"))

# Labels Prometheus adds at scrape time, or that histograms carry.
SCRAPE_LABELS = {"job", "instance"}
_SELECTOR = re.compile(r"\b((?:kora_|up\b)[a-z0-9_]*)(\{[^}]*\})?")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"')


def test_committed_rules_are_what_the_specs_generate(tmp_path: Path) -> None:
    planned = planned_files(SLO_DIR)
    assert drift(planned, OUT_DIR).clean, drift(planned, OUT_DIR).diff
    # and generating twice, elsewhere, gives the same bytes
    runner = CliRunner()
    out = tmp_path / "slo-rules"
    result = runner.invoke(main, ["slo", "generate", "--slo-dir", str(SLO_DIR), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert {p.name: p.read_text(encoding="utf-8") for p in out.iterdir()} == {
        p.name: p.read_text(encoding="utf-8") for p in OUT_DIR.glob("*.rules.yml")
    }


def test_check_passes_on_the_repository_and_fails_with_a_diff_on_drift(tmp_path: Path) -> None:
    runner = CliRunner()
    clean = runner.invoke(main, ["slo", "generate", "--check", "--slo-dir", str(SLO_DIR), "--out", str(OUT_DIR)])
    assert clean.exit_code == 0, clean.output
    assert "up to date" in clean.output

    specs, out = tmp_path / "slo", tmp_path / "out"
    shutil.copytree(SLO_DIR, specs)
    shutil.copytree(OUT_DIR, out)
    spec = specs / "payments.yml"
    spec.write_text(spec.read_text(encoding="utf-8").replace("objective: 99.5", "objective: 99.9"), encoding="utf-8")
    (out / "forgotten.rules.yml").write_text("groups: []\n", encoding="utf-8")
    drifted = runner.invoke(main, ["slo", "generate", "--check", "--slo-dir", str(specs), "--out", str(out)])
    assert drifted.exit_code == 1
    assert "-    expr: vector(0.995)" in drifted.output
    assert "+    expr: vector(0.999)" in drifted.output
    assert "stale:" in drifted.output
    assert "forgotten.rules.yml" in drifted.output


def test_an_invalid_spec_exits_2_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.yml").write_text('version: "prometheus/v1"\nservice: x\nslos: []\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["slo", "generate", "--slo-dir", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "broken.yml" in result.output


def test_every_spec_names_its_alert_from_the_catalogue() -> None:
    names = {slo.alerting.name for service in load_specs(SLO_DIR) for slo in service.slos if slo.alerting}
    assert names == {
        "KoraPaymentApiAvailabilityBudgetBurn",
        "KoraPaymentApiLatencyBudgetBurn",
        "KoraPaymentSuccessBudgetBurn",
        "KoraSettlementTimelinessBudgetBurn",
        "KoraReconMatchRateBudgetBurn",
        "KoraEventFreshnessBudgetBurn",
    }


def _exported() -> dict[str, set[str]]:
    """Every series name Kora's services export, with the label names it may carry."""
    registry = CollectorRegistry()
    KoraMetrics(registry)
    EventMetrics(registry)
    ServiceMetrics(registry)
    RiskMetrics(registry)
    recon = CollectorRegistry()
    ReconMetrics(recon)
    series: dict[str, set[str]] = {"up": set()}
    for reg in (registry, recon):
        for collector in set(reg._collector_to_names):  # the registry's own index (test only)
            name: str = collector._name
            labels = set(collector._labelnames)
            kind: str = collector._type
            if kind == "counter":
                series[f"{name}_total"] = labels
            elif kind == "histogram":
                series[f"{name}_bucket"] = labels | {"le"}
                series[f"{name}_count"] = labels
                series[f"{name}_sum"] = labels
            else:
                series[name] = labels
    return series


def _exprs() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for path in RULE_FILES:
        document: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in document["groups"]:
            for rule in group["rules"]:
                out.append((rule.get("alert") or rule.get("record"), rule["expr"]))
    return out


@pytest.mark.parametrize(("name", "expr"), _exprs(), ids=lambda v: v if "\n" not in v and len(v) < 60 else "")
def test_rules_query_only_metrics_and_labels_kora_exports(name: str, expr: str) -> None:
    exported = _exported()
    for metric, selector in _SELECTOR.findall(expr):
        assert metric in exported, f"{name} queries {metric}, which no Kora service exports"
        for label in _MATCHER.findall(selector or ""):
            assert label in exported[metric] | SCRAPE_LABELS, f"{name}: {metric} has no label {label}"

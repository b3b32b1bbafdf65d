"""The SLO generator, pure: strict Sloth specs in, Sloth-shaped rules out, guarded against
zero traffic, in a stable order."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kora.slo import (
    PAGE_CONDITIONS,
    SLI_WINDOWS,
    TICKET_CONDITIONS,
    SpecError,
    drift,
    parse_spec,
    planned_files,
    render,
    service_rule_groups,
    write,
)

SPEC: dict[str, Any] = {
    "version": "prometheus/v1",
    "service": "shop",
    "labels": {"owner": "team"},
    "slos": [
        {
            "name": "availability",
            "objective": 99.9,
            "description": "served",
            "sli": {
                "events": {
                    "error_query": 'sum(rate(req_total{code=~"5.."}[{{.window}}]))',
                    "total_query": "sum(rate(req_total[{{.window}}]))",
                }
            },
            "alerting": {
                "name": "ShopAvailabilityBudgetBurn",
                "annotations": {"summary": "burning"},
                "page_alert": {"labels": {"severity": "page"}},
                "ticket_alert": {"labels": {"severity": "ticket"}},
            },
        }
    ],
}


def spec(**changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(SPEC)
    document["slos"][0].update(changes)
    return document


def rules_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    groups = service_rule_groups(parse_spec(document, source="shop.yml"))
    return [rule for group in groups for rule in group["rules"]]


def test_sli_ratios_cover_every_window_and_the_period_with_sloth_labels() -> None:
    rules = rules_of(SPEC)
    records = [rule["record"] for rule in rules if "record" in rule]
    assert records[: len(SLI_WINDOWS) + 1] == [f"slo:sli_error:ratio_rate{w}" for w in (*SLI_WINDOWS, "30d")]
    five = rules[0]
    assert five["labels"] == {
        "owner": "team",
        "sloth_id": "shop-availability",
        "sloth_service": "shop",
        "sloth_slo": "availability",
        "sloth_window": "5m",
    }
    assert 'req_total{code=~"5.."}[5m]' in five["expr"]
    assert "{{.window}}" not in five["expr"]
    assert {"slo:objective:ratio", "slo:error_budget:ratio", "slo:period_error_budget_remaining:ratio"} <= set(records)


def test_a_window_without_traffic_records_nothing_and_no_error_series_records_zero() -> None:
    expr = rules_of(SPEC)[0]["expr"]
    # errors default to 0 when no error series exists; a total of 0 is filtered out (no NaN, no +Inf).
    assert "or vector(0)" in expr
    assert "[5m]))) > 0" in expr


def test_objective_and_budget_are_exact_decimals() -> None:
    by_record = {rule["record"]: rule["expr"] for rule in rules_of(SPEC) if "record" in rule}
    assert by_record["slo:objective:ratio"] == "vector(0.999)"
    assert by_record["slo:error_budget:ratio"] == "vector(0.001)"


def test_page_and_ticket_alerts_burn_over_two_windows_each() -> None:
    alerts = [rule for rule in rules_of(SPEC) if "alert" in rule]
    assert [a["labels"]["severity"] for a in alerts] == ["page", "ticket"]
    page, ticket = alerts
    for condition in PAGE_CONDITIONS:
        assert f"ratio_rate{condition.long}" in page["expr"]
        assert f"ratio_rate{condition.short}" in page["expr"]
    assert "(14.4 * 0.001)" in page["expr"]
    assert "(6 * 0.001)" in page["expr"]
    for condition in TICKET_CONDITIONS:
        assert f"ratio_rate{condition.long}" in ticket["expr"]
        assert f"ratio_rate{condition.short}" in ticket["expr"]
    assert "(3 * 0.001)" in ticket["expr"]
    assert "(1 * 0.001)" in ticket["expr"]
    assert page["annotations"]["burn_windows"] == "14.4x over 1h and 5m or 6x over 6h and 30m"
    assert page["labels"]["sloth_severity"] == "page"


def test_a_disabled_page_alert_is_not_generated() -> None:
    document = spec()
    document["slos"][0]["alerting"]["page_alert"] = {"disable": True}
    alerts = [rule for rule in rules_of(document) if "alert" in rule]
    assert [a["labels"]["severity"] for a in alerts] == ["ticket"]


def test_a_raw_ratio_query_is_used_as_it_is() -> None:
    document = spec(sli={"raw": {"error_ratio_query": "max(errors:ratio_rate{{.window}})"}})
    assert rules_of(document)[1]["expr"] == "(max(errors:ratio_rate30m))\n"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({**SPEC, "version": "prometheus/v2"}, "version"),
        ({**SPEC, "service": "Shop Service"}, "service"),
        ({**SPEC, "extra": 1}, "unknown field(s): extra"),
        (spec(objective=100), "between 0 and 100"),
        (spec(objective="ninety"), "number"),
        (
            spec(sli={"events": {"error_query": "sum(rate(x[5m]))", "total_query": "sum(rate(x[{{.window}}]))"}}),
            "window",
        ),
        (spec(sli={}), "exactly one of events or raw"),
        (spec(labels={"sloth_id": "mine"}), "may not set sloth_id"),
        (spec(alerting={"name": "not an alert name"}), "alert name"),
        ({**SPEC, "slos": [SPEC["slos"][0], SPEC["slos"][0]]}, "unique"),
    ],
)
def test_invalid_specs_are_refused_with_the_field_named(document: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=r"shop\.yml") as caught:
        parse_spec(document, source="shop.yml")
    assert message in str(caught.value)


def test_output_is_deterministic_and_valid_yaml() -> None:
    first = render(parse_spec(SPEC, source="shop.yml"))
    reordered = copy.deepcopy(SPEC)
    reordered["labels"] = {"zone": "b", "owner": "team"}
    assert render(parse_spec(copy.deepcopy(SPEC), source="shop.yml")) == first
    assert yaml.safe_load(first)["groups"][0]["name"] == "sloth-slo-sli-recordings-shop-availability"
    labels = yaml.safe_load(render(parse_spec(reordered, source="shop.yml")))["groups"][0]["rules"][0]["labels"]
    assert list(labels) == sorted(labels)


def test_write_then_drift_reports_changes_and_stale_files(tmp_path: Path) -> None:
    specs, out = tmp_path / "slo", tmp_path / "out"
    specs.mkdir()
    (specs / "shop.yml").write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    planned = planned_files(specs)
    assert list(planned) == ["shop.rules.yml"]
    assert not drift(planned, out).clean
    assert write(planned, out) == ["shop.rules.yml"]
    assert drift(planned, out).clean
    assert write(planned, out) == []  # unchanged files are left alone
    (out / "shop.rules.yml").write_text("groups: []\n", encoding="utf-8")
    (out / "gone.rules.yml").write_text("groups: []\n", encoding="utf-8")
    found = drift(planned, out)
    assert "+- name: sloth-slo-sli-recordings-shop-availability" in found.diff
    assert found.stale == ("gone.rules.yml",)
    assert sorted(write(planned, out)) == ["gone.rules.yml", "shop.rules.yml"]
    assert drift(planned, out).clean


def test_two_specs_for_one_service_are_refused(tmp_path: Path) -> None:
    for name in ("a.yml", "b.yml"):
        (tmp_path / name).write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    with pytest.raises(SpecError, match=r"also defined in a\.yml"):
        planned_files(tmp_path)

"""Grafana as code, checked without Grafana: the dashboards are what scripts/grafana_dashboards.py
writes, each panel says what it shows and in which unit, every datasource a dashboard or a link
names is provisioned, every PromQL query parses (promtool) and reads only metrics Kora exports or
records; grafana.ini lets nobody in anonymously; deploy/prometheus/prometheus.yml is valid, scrapes
every Kora process of docker-compose.yml under the agreed job names and loads the alert rules.
The live counterpart (every panel returns data from real processes) is tests/e2e/test_prometheus_live.py."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import service_unavailable
from tests.support.grafana import (
    AWAITING_MERGE,
    DASHBOARD_UIDS,
    DASHBOARDS,
    PROMETHEUS_BUILTINS,
    PROVISIONING,
    ROOT,
    dashboards,
    metric_names,
    panels,
    queries,
    recorded_metrics,
    registered_metrics,
    substitute,
    variable_selectors,
)

EXPECTED_UIDS = DASHBOARD_UIDS
SCRAPE_JOBS = {"kora-api", "kora-worker", "kora-relay", "kora-recon-api", "kora-recon-worker", "kora-simulator"}
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        service_unavailable("promtool not installed (Debian package prometheus)")
        raise AssertionError("unreachable")
    return path


def _datasource_uids() -> dict[str, str]:
    """uid -> type of every provisioned datasource."""
    config = yaml.safe_load((PROVISIONING / "datasources" / "datasources.yml").read_text())
    return {source["uid"]: source["type"] for source in config["datasources"]}


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_the_dashboards_are_the_generator_output() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "grafana_dashboards.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_one_dashboard_per_agreed_uid_named_after_it() -> None:
    found = dashboards()
    assert set(found) == EXPECTED_UIDS
    for stem, dashboard in found.items():
        assert dashboard["uid"] == stem
        assert dashboard["title"]
        assert dashboard["description"]
        assert "kora" in dashboard["tags"]
    titles = [d["title"] for d in found.values()]
    assert len(titles) == len(set(titles))


def test_every_panel_has_a_title_a_description_a_unit_and_a_query() -> None:
    for uid, dashboard in dashboards().items():
        ids = [panel["id"] for panel in panels(dashboard)]
        assert len(ids) == len(set(ids)), f"{uid}: duplicate panel ids"
        titles = [panel["title"] for panel in panels(dashboard)]
        assert len(titles) == len(set(titles)), f"{uid}: duplicate panel titles"
        for panel in panels(dashboard):
            where = f"{uid} / {panel.get('title')!r}"
            assert panel.get("title"), where
            assert len(panel.get("description", "")) >= 20, f"{where}: no description"
            assert panel["fieldConfig"]["defaults"].get("unit"), f"{where}: no unit"
            assert panel.get("targets"), f"{where}: no query"
            for target in panel["targets"]:
                assert target["expr"].strip(), f"{where}: empty query"
                assert target["datasource"]["uid"] == "prometheus", where


def test_every_datasource_named_is_provisioned() -> None:
    provisioned = _datasource_uids()
    assert provisioned == {"prometheus": "prometheus", "tempo": "tempo", "loki": "loki"}
    for uid, dashboard in dashboards().items():
        for node in _walk(dashboard):
            source = node.get("datasource")
            if isinstance(source, dict) and source.get("type") != "grafana":
                assert source.get("uid") in provisioned, f"{uid}: unknown datasource {source}"
                assert provisioned[source["uid"]] == source["type"], f"{uid}: {source}"
    # The links between signals point at provisioned datasources too.
    config = yaml.safe_load((PROVISIONING / "datasources" / "datasources.yml").read_text())
    links = [node["datasourceUid"] for node in _walk(config) if "datasourceUid" in node]
    assert links
    assert set(links) <= set(provisioned)
    by_uid = {source["uid"]: source for source in config["datasources"]}
    exemplars = by_uid["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert {"name": "trace_id", "datasourceUid": "tempo"} in exemplars
    assert by_uid["tempo"]["jsonData"]["tracesToLogsV2"]["datasourceUid"] == "loki"
    assert {field["datasourceUid"] for field in by_uid["loki"]["jsonData"]["derivedFields"]} == {"tempo"}


def test_the_dashboard_provider_loads_the_dashboards_folder() -> None:
    config = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yml").read_text())
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/etc/grafana/dashboards"
    assert provider["allowUiUpdates"] is False
    assert DASHBOARDS.is_dir()


def test_grafana_ini_has_no_anonymous_access_no_sign_up_and_no_secret() -> None:
    text = (ROOT / "grafana" / "grafana.ini").read_text()
    ini = configparser.ConfigParser(comment_prefixes=(";", "#"), interpolation=None)
    ini.read_string(text)
    assert ini.getboolean("auth.anonymous", "enabled") is False
    assert ini.getboolean("users", "allow_sign_up") is False
    assert ini.getboolean("users", "allow_org_create") is False
    assert not ini.has_option("security", "admin_password")  # from GF_SECURITY_ADMIN_PASSWORD only
    assert not ini.has_option("security", "secret_key")


def test_every_query_parses(tmp_path: Path) -> None:
    """Each panel query and variable selector, variables substituted, as a recording rule that
    promtool checks (it parses the PromQL)."""
    rules = []
    for dashboard in dashboards().values():
        for query in queries(dashboard):
            expr = substitute(query.expr, dashboard, rate_interval="5m", time_range="1h")
            assert "$" not in expr.replace('"$1"', ""), f"{query.where()}: unsubstituted variable: {expr}"
            rules.append({"record": f"dashboard:check:{len(rules)}", "expr": expr})
        for name, selector, _label in variable_selectors(dashboard):
            expr = substitute(selector, dashboard, rate_interval="5m", time_range="1h")
            rules.append({"record": f"dashboard:variable_{name}:{len(rules)}", "expr": expr})
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [_promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


def test_every_metric_a_dashboard_reads_is_exported_or_recorded() -> None:
    known = registered_metrics() | recorded_metrics() | PROMETHEUS_BUILTINS
    arrived = AWAITING_MERGE & (registered_metrics() | recorded_metrics())
    assert not arrived, f"now exported or recorded, remove from tests/support/grafana.py AWAITING_MERGE: {arrived}"
    read: set[str] = set()
    for dashboard in dashboards().values():
        for query in queries(dashboard):
            names = metric_names(query.expr)
            assert names, f"{query.where()}: reads no metric"
            unknown = names - known - AWAITING_MERGE
            assert not unknown, f"{query.where()}: no such metric in kora/ or alerts/: {sorted(unknown)}"
            read |= names
        for _name, selector, _label in variable_selectors(dashboard):
            assert metric_names(selector) <= known | AWAITING_MERGE, selector
    unused = AWAITING_MERGE - read
    assert not unused, f"AWAITING_MERGE names no dashboard reads: {unused}"


def test_metric_names_are_read_lexically() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(kora_http_request_duration_seconds_bucket{job=~"$job"}'
        "[$__rate_interval]))) / on (sloth_id) group_left () slo:error_budget:ratio or on () vector(0) "
        '+ max({__name__=~"slo:sli_error:ratio_rate(5m|1h)", sloth_slo="x"}) * 14.4'
    )
    assert metric_names(expr) == {
        "kora_http_request_duration_seconds_bucket",
        "slo:error_budget:ratio",
        "slo:sli_error:ratio_rate5m",
        "slo:sli_error:ratio_rate1h",
    }


def test_prometheus_config_scrapes_every_kora_process_and_loads_the_alert_rules(tmp_path: Path) -> None:
    result = subprocess.run(
        [_promtool(), "check", "config", "--syntax-only", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) >= SCRAPE_JOBS
    assert config["rule_files"] == ["/etc/prometheus/alerts/*.rules.yml", "/etc/prometheus/alerts/slo/*.rules.yml"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert jobs["kora-simulator"]["metrics_path"] == "/_sim/metrics"
    # Every Kora process of the compose stack is scraped, on the port it serves /metrics on.
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    scraped = {
        target.split(":")[0]: int(target.split(":")[1])
        for name in SCRAPE_JOBS
        for static in jobs[name]["static_configs"]
        for target in static["targets"]
    }
    for service, definition in compose.items():
        command = definition.get("command") or []
        if not (command[:1] == ["kora"] and command[1:2] != ["db"]) or "setup" in service:
            continue
        assert service in scraped, f"compose service {service} is not scraped"
        if "--metrics-port" in command:
            assert scraped[service] == int(command[command.index("--metrics-port") + 1]), service
        elif "--port" in command:
            assert scraped[service] == int(command[command.index("--port") + 1]), service
    assert set(scraped) <= set(compose), f"targets that are not compose services: {set(scraped) - set(compose)}"


@pytest.mark.parametrize("uid", sorted(EXPECTED_UIDS))
def test_each_dashboard_has_variables_on_the_prometheus_datasource(uid: str) -> None:
    dashboard = dashboards()[uid]
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"] == {"type": "prometheus", "uid": "prometheus"}
        used = any(f"${variable['name']}" in query.expr for query in queries(dashboard)) or any(
            f"${variable['name']}" in other["definition"] for other in dashboard["templating"]["list"]
        )
        assert used, f"{uid}: variable {variable['name']} is used by no query"

"""The alert rules and Alertmanager's configuration, checked with the real tools: promtool lints
every rules file and runs the unit tests of alerts/tests; every alert of the catalogue exists,
carries the labels and links on-call needs, and has at least one firing and one silent test
case; amtool accepts the configuration and routes each kind of alert to the right receiver; a
real Alertmanager applies the inhibitions."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import service_unavailable
from tests.support.grafana import DASHBOARD_UIDS

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "alerts"
RULE_FILES = sorted(ALERTS.glob("*.rules.yml")) + sorted((ALERTS / "slo").glob("*.rules.yml"))
TEST_FILES = sorted((ALERTS / "tests").glob("*.test.yml"))
ALERTMANAGER_CONFIG = ALERTS / "alertmanager.yml"

# The alert catalogue shared by every helper of issue #7 (names are fixed: playbooks and
# dashboards refer to them).
CATALOGUE = {
    "KoraLedgerInvariantViolation": "page",
    "KoraReconMismatchRateHigh": "ticket",
    "KoraReconAmountAtRiskHigh": "page",
    "KoraSettlementOverdue": "ticket",
    "KoraProviderErrorRateHigh": "page",
    "KoraProviderBreakerOpen": "page",
    "KoraOutboxLagHigh": "page",
    "KoraConsumerLagHigh": "ticket",
    "KoraDeadLettersGrowing": "ticket",
    "KoraLoginFailureSpike": "ticket",
    "KoraFraudPatternSpike": "ticket",
    "KoraRiskReviewQueueStale": "ticket",
    "KoraApiMetricsAbsent": "page",
    "KoraWorkerMetricsAbsent": "page",
    "KoraReconMetricsAbsent": "ticket",
    "Watchdog": "ticket",
}
SLO_ALERTS = {
    "KoraPaymentApiAvailabilityBudgetBurn",
    "KoraPaymentApiLatencyBudgetBurn",
    "KoraPaymentSuccessBudgetBurn",
    "KoraSettlementTimelinessBudgetBurn",
    "KoraReconMatchRateBudgetBurn",
    "KoraEventFreshnessBudgetBurn",
}
DASHBOARDS = DASHBOARD_UIDS
RUNBOOK = "https://github.com/kora-wallet/kora/blob/main/playbooks/{}.md"
DASHBOARD = re.compile(r"http://localhost:3000/d/([a-z-]+)")
# Labels that would carry personal data if an annotation templated them.
PII_LABELS = re.compile(r"\$labels\.(phone|msisdn|user|user_id|name|email|account|wallet)\b")
# Always firing by design: it has no silent case.
ALWAYS_FIRING = {"Watchdog"}


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _alert_rules() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, rule)
        for path in RULE_FILES
        for group in _load(path)["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        service_unavailable(f"{name} is not installed (CI installs it from Debian's prometheus packages)")
    assert path is not None
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)


# ------------------------------------------------------------------ promtool
@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: str(p.relative_to(ALERTS)))
def test_rules_files_pass_promtool_lint(path: Path) -> None:
    result = _run(_tool("promtool"), "check", "rules", "--lint=all", "--lint-fatal", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(path: Path) -> None:
    result = _run(_tool("promtool"), "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# ------------------------------------------------------------------ the rules themselves
def test_the_rules_hold_the_whole_catalogue_and_nothing_else() -> None:
    names = {rule["alert"] for _, rule in _alert_rules()}
    assert names == set(CATALOGUE) | SLO_ALERTS


def test_hand_written_alerts_have_the_catalogue_severity() -> None:
    for _, rule in _alert_rules():
        if rule["alert"] in CATALOGUE:
            assert rule["labels"]["severity"] == CATALOGUE[rule["alert"]], rule["alert"]


def test_slo_alerts_page_and_ticket_or_ticket_only() -> None:
    severities: dict[str, set[str]] = {}
    for _, rule in _alert_rules():
        if rule["alert"] in SLO_ALERTS:
            severities.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    assert severities["KoraSettlementTimelinessBudgetBurn"] == {"ticket"}
    assert severities["KoraReconMatchRateBudgetBurn"] == {"ticket"}
    for name in SLO_ALERTS - {"KoraSettlementTimelinessBudgetBurn", "KoraReconMatchRateBudgetBurn"}:
        assert severities[name] == {"page", "ticket"}, name


@pytest.mark.parametrize(("path", "rule"), _alert_rules(), ids=lambda v: v["alert"] if isinstance(v, dict) else "")
def test_every_alert_carries_severity_summary_description_and_links(path: Path, rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert rule["labels"]["severity"] in {"page", "ticket"}
    annotations = rule["annotations"]
    assert {"summary", "description", "runbook_url", "dashboard_url"} <= set(annotations)
    assert annotations["summary"].strip()
    assert annotations["description"].strip()
    assert annotations["runbook_url"] == RUNBOOK.format(name)
    match = DASHBOARD.fullmatch(annotations["dashboard_url"])
    assert match is not None
    assert match.group(1) in DASHBOARDS
    for text in annotations.values():
        assert PII_LABELS.search(text) is None, f"{name} templates a personal label"


def test_the_ledger_invariant_pages_at_once() -> None:
    (rule,) = [rule for _, rule in _alert_rules() if rule["alert"] == "KoraLedgerInvariantViolation"]
    assert rule.get("for", "0m") == "0m"


def test_the_watchdog_always_fires() -> None:
    (rule,) = [rule for _, rule in _alert_rules() if rule["alert"] == "Watchdog"]
    assert rule["expr"].strip() == "vector(1)"


def test_absence_alerts_watch_the_scrape_jobs_of_the_stack() -> None:
    exprs = {rule["alert"]: rule["expr"] for _, rule in _alert_rules()}
    for alert, jobs in {
        "KoraApiMetricsAbsent": ["kora-api"],
        "KoraWorkerMetricsAbsent": ["kora-worker", "kora-relay"],
        "KoraReconMetricsAbsent": ["kora-recon-api", "kora-recon-worker"],
    }.items():
        for job in jobs:
            assert f'absent(up{{job="{job}"}})' in exprs[alert], (alert, job)


# ------------------------------------------------------------------ test coverage of the alerts
def _cases() -> dict[str, dict[str, int]]:
    """Per alert name, how many test cases expect it firing and how many expect it silent."""
    counts: dict[str, dict[str, int]] = {}
    for path in TEST_FILES:
        for test in _load(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                kind = "firing" if case.get("exp_alerts") else "silent"
                counts.setdefault(case["alertname"], {"firing": 0, "silent": 0})[kind] += 1
    return counts


def test_every_alert_has_a_firing_and_a_silent_test_case() -> None:
    cases = _cases()
    for _, rule in _alert_rules():
        name = rule["alert"]
        assert cases.get(name, {}).get("firing", 0) >= 1, f"{name} has no firing test case"
        if name not in ALWAYS_FIRING:
            assert cases[name]["silent"] >= 1, f"{name} has no silent test case"


def test_every_rules_file_is_under_test() -> None:
    tested = {
        (path.parent / rule_file).resolve() for path in TEST_FILES for rule_file in _load(path).get("rule_files", [])
    }
    assert {path.resolve() for path in RULE_FILES} <= tested


# ------------------------------------------------------------------ Alertmanager
def test_amtool_accepts_the_alertmanager_config() -> None:
    result = _run(_tool("amtool"), "check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 inhibit rules" in result.stdout


def test_the_config_holds_no_secret() -> None:
    text = ALERTMANAGER_CONFIG.read_text(encoding="utf-8")
    config = yaml.safe_load(text)
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            assert ".invalid/" in hook["url"]  # a placeholder a deployment replaces
            assert "credentials" not in hook["http_config"]["authorization"]  # only credentials_file
    assert not re.search(r"(password|api_key|routing_key|secret):", text)


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=Watchdog", "severity=ticket"], "heartbeat"),
        (["alertname=KoraLedgerInvariantViolation", "severity=page", "check=EntriesBalance"], "pager"),
        (["alertname=KoraProviderBreakerOpen", "severity=page", "provider=momo"], "pager"),
        (
            ["alertname=KoraPaymentApiAvailabilityBudgetBurn", "severity=page", "sloth_slo=requests-availability"],
            "pager",
        ),
        (
            ["alertname=KoraPaymentApiAvailabilityBudgetBurn", "severity=ticket", "sloth_slo=requests-availability"],
            "ticket",
        ),
        (["alertname=KoraSettlementOverdue", "severity=ticket", "provider=wave", "currency=XOF"], "ticket"),
        (["alertname=KoraDeadLettersGrowing", "severity=ticket", "consumer=settlement"], "ticket"),
        (["alertname=SomethingNew"], "ticket"),  # no severity: nobody is paged, someone is told
    ],
)
def test_amtool_routes_each_kind_of_alert_to_its_receiver(labels: list[str], receiver: str) -> None:
    result = _run(
        _tool("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={receiver}",
        *labels,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


# ------------------------------------------------------------------ inhibitions, on a real Alertmanager
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _http(url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        raw = response.read()
    return json.loads(raw) if raw else None


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    # Debian names the binary prometheus-alertmanager; upstream archives, alertmanager.
    binary = shutil.which("alertmanager") or _tool("prometheus-alertmanager")
    port = _free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={ALERTMANAGER_CONFIG}",
            f"--storage.path={tmp_path}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _http(f"{url}/api/v2/status")
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail("alertmanager did not become ready")
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _alert(**labels: str) -> dict[str, Any]:
    return {"labels": labels, "annotations": {"summary": "test"}}


def test_alertmanager_applies_the_inhibitions(alertmanager: str) -> None:
    alerts = [
        _alert(alertname="KoraProviderBreakerOpen", severity="page", provider="momo"),
        _alert(alertname="KoraProviderErrorRateHigh", severity="page", provider="momo"),  # inhibited: same provider
        _alert(alertname="KoraProviderErrorRateHigh", severity="page", provider="wave"),  # not inhibited
        _alert(alertname="KoraPaymentSuccessBudgetBurn", severity="page", sloth_slo="payment-success"),
        _alert(alertname="KoraPaymentSuccessBudgetBurn", severity="ticket", sloth_slo="payment-success"),  # inhibited
        _alert(alertname="KoraEventFreshnessBudgetBurn", severity="ticket", sloth_slo="event-freshness"),  # alone
        _alert(alertname="KoraApiMetricsAbsent", severity="page", job="kora-api"),
        _alert(alertname="KoraPaymentApiLatencyBudgetBurn", severity="page", sloth_slo="requests-latency"),  # inhibited
    ]
    _http(f"{alertmanager}/api/v2/alerts", alerts)
    expected = {
        ("KoraProviderBreakerOpen", "page", "momo"): False,
        ("KoraProviderErrorRateHigh", "page", "momo"): True,
        ("KoraProviderErrorRateHigh", "page", "wave"): False,
        ("KoraPaymentSuccessBudgetBurn", "page", ""): False,
        ("KoraPaymentSuccessBudgetBurn", "ticket", ""): True,
        ("KoraEventFreshnessBudgetBurn", "ticket", ""): False,
        ("KoraApiMetricsAbsent", "page", ""): False,
        ("KoraPaymentApiLatencyBudgetBurn", "page", ""): True,
    }
    deadline = time.monotonic() + 20
    while True:
        got = {
            (a["labels"]["alertname"], a["labels"]["severity"], a["labels"].get("provider", "")): bool(
                a["status"]["inhibitedBy"]
            )
            for a in _http(f"{alertmanager}/api/v2/alerts")
        }
        if got == expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert got == expected

"""LIVE check of the on-call dashboards against a real Prometheus (/usr/bin/prometheus), ~2 minutes.

Kora runs as real processes on local ports, as docker-compose.yml runs it: `kora serve` on
PostgreSQL, `kora relay`, `kora worker` (every consumer), `kora recon serve`, `kora recon worker`
and `kora simulator`, over a private nats-server running deploy/nats/nats.conf. Prometheus runs
deploy/prometheus/prometheus.yml with each job's targets rewritten to those ports, a 1 s scrape and
evaluation interval, exemplar storage on, and every rule file under alerts/ (globbed now).

After a short load through the API (registrations, a failed login, cash-ins, transfers, an
idempotent replay and a key conflict, a refused transfer, a cash-out, a merchant payment, a 404,
a ledger verification, two settlement reports imported and matched by reconciliation), through
Prometheus's HTTP API:
- every recording rule of alerts/ returns data;
- every dashboard variable and every panel query (variables at their defaults) returns at least
  one series with a number: an empty panel fails the test, named by dashboard and panel title.
  Panels on metrics that other branches add (tests/support/grafana.py AWAITING_MERGE) are listed,
  not checked, until they arrive;
- the API's latency histogram carries exemplars with trace ids (the link to Tempo).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import service_unavailable
from tests.integration.events.nats_support import SecuredNats, secured_nats
from tests.support.api import Api, Customer, new_phone
from tests.support.grafana import (
    AWAITING_MERGE,
    ROOT,
    dashboards,
    metric_names,
    queries,
    rule_files,
    substitute,
    variable_selectors,
)
from tests.support.net import free_port

pytestmark = pytest.mark.e2e
__all__ = ["secured_nats"]  # the fixture, used by name below

PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
RATE_INTERVAL = "2m"  # $__rate_interval: the whole run fits in it
TIME_RANGE = "1h"  # $__range
CHECK_DEADLINE_SECONDS = 60


@dataclass
class Stack:
    api: str
    recon: str
    simulator: str
    prometheus: str
    logs: Path
    admin_phone: str
    admin_password: str
    reviewer_phone: str
    reviewer_password: str
    analyst_phone: str
    analyst_password: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)


def _kora(args: list[str], env: dict[str, str], *, timeout: float = 60) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "kora", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"kora {' '.join(args[:3])}: {result.stdout}{result.stderr}"
    return result.stdout


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, *, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            text = log.read_text()[-3000:] if log.exists() else ""
            raise AssertionError(f"{url} did not answer:\n{text}")
        time.sleep(0.25)


def _prometheus_config(ports: dict[str, list[str]], tmp_path: Path) -> Path:
    """The repository's prometheus.yml with each job's targets on the local processes."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"].update({"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"})
    config.pop("alerting", None)  # no Alertmanager here; the rules still evaluate
    config["rule_files"] = [str(path) for path in rule_files()]
    jobs = []
    for job in config["scrape_configs"]:
        name = job["job_name"]
        if not name.startswith("kora-"):  # Prometheus itself, Alertmanager...: not run here
            continue
        assert name in ports, f"prometheus.yml job {name!r} has no local process in this test: add one"
        job["static_configs"] = [{"targets": ports[name]}]
        jobs.append(job)
    config["scrape_configs"] = jobs
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def stack(
    migrated_postgres_url: str, another_postgres_database: str, tmp_path: Path, secured_nats: SecuredNats
) -> Iterator[Stack]:
    prometheus_binary = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if prometheus_binary is None:
        service_unavailable("prometheus not installed (Debian package prometheus)")
        raise AssertionError("unreachable")
    logs = tmp_path / "logs"
    logs.mkdir()
    port = {
        name: free_port() for name in ("api", "relay", "worker", "recon", "recon-worker", "simulator", "prometheus")
    }
    api, recon, simulator = (f"http://127.0.0.1:{port[n]}" for n in ("api", "recon", "simulator"))
    secrets_file = str(tmp_path / "dev-secrets.json")
    nats_env = {"KORA_EVENTS_BUS": "nats", "KORA_NATS_URL": secured_nats.url}

    def nats_user(user: str) -> dict[str, str]:
        return {"KORA_NATS_USER": user, "KORA_NATS_PASSWORD": secured_nats.passwords[user]}

    base = {**os.environ, "KORA_DEV_SECRETS_FILE": secrets_file, "KORA_LOG_LEVEL": "WARNING"}
    recon_env = {
        **base,
        **nats_env,
        "KORA_RECON_DATABASE_URL": another_postgres_database,
        "KORA_RECON_USER_TOKEN_JWKS_URL": f"{api}/.well-known/jwks.json",
        "KORA_RECON_CORE_URL": api,
        "KORA_RECON_MATCH_INTERVAL_SECONDS": "2",
    }
    # The core trusts reconciliation's outcome events only with its keys (as in compose's .env).
    recon_keys = _kora(["recon", "event-keys"], recon_env).strip()
    core_env = {
        **base,
        **nats_env,
        "KORA_DATABASE_URL": migrated_postgres_url,
        "KORA_ARGON2_TIME_COST": "1",
        "KORA_ARGON2_MEMORY_KIB": "8192",
        "KORA_EVENTS_IN_PROCESS": "false",
        "KORA_EVENT_VERIFY_KEYS": recon_keys,
        "KORA_PROVIDER_MOMO_URL": simulator,
        "KORA_PROVIDER_WAVE_URL": simulator,
        "KORA_PROVIDER_WAVE_WEBHOOK_SECRET": "whsec_simulator",
        "KORA_PUBLIC_BASE_URL": api,
        "KORA_SWEEP_INTERVAL_SECONDS": "1",
        "KORA_PENDING_MIN_AGE_SECONDS": "1",
    }
    _kora(["events", "setup"], {**core_env, **nats_user("kora-admin")})
    admin_phone, admin_password = new_phone(), "admin-pass-" + uuid.uuid4().hex[:10]
    reviewer_phone, reviewer_password = new_phone(), "reviewer-pass-" + uuid.uuid4().hex[:10]
    _kora(["admin", "create", "--phone-number", admin_phone, "--password", admin_password], core_env)
    staff = ["admin", "create-staff", "--role", "recon_reviewer", "--phone-number", reviewer_phone]
    _kora([*staff, "--password", reviewer_password], core_env)
    analyst_phone, analyst_password = new_phone(), "analyst-pass-" + uuid.uuid4().hex[:10]
    analyst = ["admin", "create-staff", "--role", "risk_analyst", "--phone-number", analyst_phone]
    _kora([*analyst, "--password", analyst_password], core_env)

    metrics = ["--metrics-port"]
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "simulator": (["simulator", "--port", str(port["simulator"]), "--zero-latency"], base),
        "api": (["serve", "--port", str(port["api"]), "--no-migrate"], core_env),
        "relay": (["relay", *metrics, str(port["relay"])], {**core_env, **nats_user("kora-relay")}),
        # One worker process for every consumer (compose runs one per consumer, each its own user).
        "worker": (["worker", *metrics, str(port["worker"])], {**core_env, **nats_user("kora-admin")}),
        "recon": (["recon", "serve", "--port", str(port["recon"])], recon_env),
        "recon-worker": (
            ["recon", "worker", *metrics, str(port["recon-worker"])],
            {**recon_env, **nats_user("kora-recon")},
        ),
    }
    result = Stack(
        api, recon, simulator, f"http://127.0.0.1:{port['prometheus']}", logs,
        admin_phone, admin_password, reviewer_phone, reviewer_password, analyst_phone, analyst_password,
    )  # fmt: skip
    with ExitStack() as cleanup:
        for name, (args, env) in commands.items():
            log = (logs / f"{name}.log").open("wb")
            cleanup.callback(log.close)
            process = subprocess.Popen(
                [sys.executable, "-m", "kora", *args], env=env, stdout=log, stderr=subprocess.STDOUT
            )
            result.processes[name] = process
            cleanup.callback(_stop, process)
            if name == "recon":  # it migrates its database: the worker starts after it
                _wait_http(f"{recon}/readyz", process, logs / "recon.log")
        _wait_http(f"{simulator}/_sim/health", result.processes["simulator"], logs / "simulator.log")
        _wait_http(f"{api}/readyz", result.processes["api"], logs / "api.log")
        for name in ("relay", "worker", "recon-worker"):
            _wait_http(f"http://127.0.0.1:{port[name]}/metrics", result.processes[name], logs / f"{name}.log")

        config = _prometheus_config(
            {
                "kora-api": [f"127.0.0.1:{port['api']}"],
                "kora-worker": [f"127.0.0.1:{port['worker']}"],
                "kora-relay": [f"127.0.0.1:{port['relay']}"],
                "kora-recon-api": [f"127.0.0.1:{port['recon']}"],
                "kora-recon-worker": [f"127.0.0.1:{port['recon-worker']}"],
                "kora-simulator": [f"127.0.0.1:{port['simulator']}"],
            },
            tmp_path,
        )
        log = (logs / "prometheus.log").open("wb")
        cleanup.callback(log.close)
        prometheus = subprocess.Popen(
            [
                prometheus_binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port['prometheus']}",
                "--enable-feature=exemplar-storage",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        result.processes["prometheus"] = prometheus
        cleanup.callback(_stop, prometheus)
        _wait_http(f"{result.prometheus}/-/ready", prometheus, logs / "prometheus.log")
        _wait_targets_up(result.prometheus, expected=6)
        yield result


def _wait_targets_up(prometheus: str, *, expected: int, seconds: float = 60) -> None:
    """Until every target has been scraped once (Prometheus starts scraping a few seconds after
    it is ready): the load must come after the first samples, or its increases are not seen."""
    deadline = time.monotonic() + seconds
    while True:
        targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        if len(targets) == expected and all(t["health"] == "up" for t in targets):
            return
        assert time.monotonic() < deadline, f"targets not up: {[(t['scrapeUrl'], t['lastError']) for t in targets]}"
        time.sleep(0.5)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- the load -------------------------------------------------------------------------------
async def _staff(api: Api, phone: str, password: str) -> Customer:
    person = Customer(phone, password, "device-" + uuid.uuid4().hex[:8], "", "")
    response = await api.login(person)
    assert response.status_code == 200, response.text
    return person


async def _payments_round(api: Api, admin: Customer, round_no: int) -> None:
    """Money in, around and out, with the errors on-call dashboards show."""
    alice, bob = await api.customer(), await api.customer()
    for provider in ("momo", "wave"):
        await api.cash_in(alice, 20_000, provider=provider)
    await api.cash_in(bob, 5_000, provider="momo")
    key = f"live-transfer-{round_no}-{uuid.uuid4().hex[:8]}"
    sent = await api.transfer(alice, key=key, recipient_phone_number=bob.phone_number, amount=1_500)
    assert sent.status_code == 201, sent.text
    replayed = await api.transfer(alice, key=key, recipient_phone_number=bob.phone_number, amount=1_500)
    assert replayed.status_code == 201, replayed.text  # the stored answer
    conflict = await api.transfer(alice, key=key, recipient_phone_number=bob.phone_number, amount=999)
    assert conflict.status_code == 422, conflict.text  # same key, another request
    refused = await api.transfer(bob, recipient_phone_number=alice.phone_number, amount=10_000_000)
    assert refused.status_code >= 400, refused.text  # insufficient funds
    for amount in (700, 900, 1_100):
        moved = await api.transfer(alice, recipient_phone_number=bob.phone_number, amount=amount)
        assert moved.status_code == 201, moved.text
    cashed_out = await api.cash_out(bob, 2_000, provider="momo")
    assert cashed_out.status_code in (201, 202), cashed_out.text
    merchant = await api.customer()
    granted = await api.client.post(
        f"/v1/admin/users/{merchant.user_id}/roles", json={"role": "merchant"}, headers=admin.headers()
    )
    assert granted.status_code in (200, 201), granted.text
    paid = await api.client.post(
        "/v1/merchant-payments",
        json={"merchant_id": granted.json()["merchant_id"], "amount": 3_000},
        headers=alice.headers(key=uuid.uuid4().hex),
    )
    assert paid.status_code == 201, paid.text
    wrong = await api.client.post(
        "/v1/auth/login",
        json={"phone_number": alice.phone_number, "password": "not-the-password-1", "device_id": alice.device_id},
    )
    assert wrong.status_code == 401, wrong.text
    assert (await api.client.get("/v1/no-such-route")).status_code == 404
    verified = await api.client.get("/v1/admin/ledger/verify", headers=admin.headers())
    assert verified.status_code == 200, verified.text


async def _risk_review(api: Api, analyst: Customer, decision: str) -> None:
    """A payment the shipped risk policy holds (50,000 or more from a device first seen today, to
    a new recipient), then a risk analyst's decision: the risk dashboard's review panels."""
    carol, dave = await api.customer(), await api.customer()
    for _ in range(3):
        await api.cash_in(carol, 20_000, provider="momo")
    held = await api.transfer(carol, recipient_phone_number=dave.phone_number, amount=55_000)
    assert held.status_code == 201, held.text
    assert held.json()["status"] == "AUTHORIZED", held.text
    decided = await api.client.post(
        f"/v1/admin/risk/reviews/{held.json()['id']}/{decision}", json={"note": "live check"}, headers=analyst.headers()
    )
    assert decided.status_code == 200, decided.text


async def _reconcile(stack: Stack, reviewer: Customer) -> None:
    """Reconciliation as an operator runs it: the provider's settlement report of today from the
    simulator, uploaded to the reconciliation API, matched now."""
    today = datetime.now(UTC).date().isoformat()
    async with httpx.AsyncClient(timeout=30) as client:
        for provider in ("momo", "wave"):
            report = await client.get(
                f"{stack.simulator}/_sim/providers/{provider}/settlement-report", params={"date": today}
            )
            assert report.status_code == 200, report.text
            uploaded = await client.post(
                f"{stack.recon}/v1/recon/reports",
                params={"provider": provider, "day": today},
                content=report.content,
                headers={**reviewer.headers(fresh=False), "Content-Type": "text/csv"},
            )
            assert uploaded.status_code in (200, 201), uploaded.text
            matched = await client.post(
                f"{stack.recon}/v1/recon/reports/{uploaded.json()['report_id']}/match",
                headers=reviewer.headers(fresh=False),
            )
            assert matched.status_code == 200, matched.text


# --- the checks ----------------------------------------------------------------------------
def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.post(f"{prometheus}/api/v1/query", data={"query": expr}, timeout=10)
    body = response.json()
    assert response.status_code == 200, f"{expr}: {body.get('error')}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _has_a_number(series: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(item["value"][1])) for item in series)


def _missing(prometheus: str) -> list[str]:
    """What still returns nothing: recording rules, variables and panel queries."""
    problems: list[str] = []
    for path in rule_files():
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            for rule in group.get("rules", []):
                if "record" in rule and not _query(prometheus, f'{{__name__="{rule["record"]}"}}'):
                    problems.append(f"recording rule {rule['record']} ({path.name}): no data")
    for dashboard in dashboards().values():
        for name, selector, label in variable_selectors(dashboard):
            if metric_names(selector) <= AWAITING_MERGE:
                continue
            expr = f"count by ({label}) ({substitute(selector, dashboard, rate_interval=RATE_INTERVAL, time_range=TIME_RANGE)})"
            if not _query(prometheus, expr):
                problems.append(f"{dashboard['title']} / variable {name}: no values")
        for query in queries(dashboard):
            if metric_names(query.expr) & AWAITING_MERGE:
                continue
            expr = substitute(query.expr, dashboard, rate_interval=RATE_INTERVAL, time_range=TIME_RANGE)
            if not _has_a_number(_query(prometheus, expr)):
                problems.append(f"{query.where()}: empty panel\n    {expr}")
    return problems


async def _load(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api, timeout=30) as client:
        api = Api(client)
        admin = await _staff(api, stack.admin_phone, stack.admin_password)
        reviewer = await _staff(api, stack.reviewer_phone, stack.reviewer_password)
        analyst = await _staff(api, stack.analyst_phone, stack.analyst_password)
        await _payments_round(api, admin, 1)
        await _risk_review(api, analyst, "approve")
        await _reconcile(stack, reviewer)
        await asyncio.sleep(3)  # a few scrapes apart: counters and histograms move between samples
        await _payments_round(api, admin, 2)
        await _risk_review(api, analyst, "reject")
        await _reconcile(stack, reviewer)


def test_every_dashboard_panel_and_recording_rule_has_data_from_real_processes(stack: Stack) -> None:
    asyncio.run(_load(stack))

    deadline = time.monotonic() + CHECK_DEADLINE_SECONDS
    while (problems := _missing(stack.prometheus)) and time.monotonic() < deadline:
        time.sleep(2)
    skipped = sorted(
        {q.where() for d in dashboards().values() for q in queries(d) if metric_names(q.expr) & AWAITING_MERGE}
    )
    print(f"not checked until their metrics are merged ({len(skipped)}): " + "; ".join(skipped))
    assert not problems, "\n".join(problems) + _tails(stack)

    exemplars = httpx.get(
        f"{stack.prometheus}/api/v1/query_exemplars",
        params={
            "query": 'kora_http_request_duration_seconds_bucket{job="kora-api"}',
            "start": str(time.time() - 600),
            "end": str(time.time()),
        },
        timeout=10,
    ).json()["data"]
    trace_ids = {e["labels"].get("trace_id") for series in exemplars for e in series["exemplars"]}
    assert trace_ids - {None}, "no exemplar with a trace_id on the API's latency histogram"

    targets = httpx.get(f"{stack.prometheus}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    down = [(t["labels"]["job"], t["lastError"]) for t in targets if t["health"] != "up"]
    assert not down, down


def _tails(stack: Stack) -> str:
    parts = []
    for path in sorted(stack.logs.glob("*.log")):
        text = path.read_text(errors="replace")
        if "Traceback" in text or "error" in text.lower():
            parts.append(f"\n--- {path.name} ---\n{text[-1500:]}")
    return "".join(parts)


def test_the_generated_config_keeps_the_repository_jobs(tmp_path: Path) -> None:
    """The live config is the repository's, targets aside (a cheap guard on the rewrite)."""
    ports = {
        job: [f"127.0.0.1:{9000 + i}"]
        for i, job in enumerate(
            ("kora-api", "kora-worker", "kora-relay", "kora-recon-api", "kora-recon-worker", "kora-simulator")
        )
    }
    config = yaml.safe_load(_prometheus_config(ports, tmp_path).read_text())
    original = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert [j["job_name"] for j in config["scrape_configs"]] == [
        j["job_name"] for j in original["scrape_configs"] if j["job_name"].startswith("kora-")
    ]
    for job in config["scrape_configs"]:
        assert job["static_configs"] == [{"targets": ports[job["job_name"]]}]
    assert config["global"]["scrape_interval"] == "1s"
    assert json.dumps(config["rule_files"]) == json.dumps([str(p) for p in rule_files()])

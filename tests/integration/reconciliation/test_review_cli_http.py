"""The review queue from the outside: `kora recon cases ...` / `kora recon audit verify` on
SQLite, and the cases HTTP router on SQLite and PostgreSQL (problem+json refusals).

Cases come from a real match run of a simulator-rendered report, with Kora's side written as
the feed writes it (a payment the provider reports for less). The HTTP principal comes from a
test override of ``current_recon_principal`` (the real verifier is the `recon-api` branch's)."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kora.kernel import FixedClock
from kora.platform.db import create_engine
from kora.reconciliation.adapters.case_store import SqlAuditTrail
from kora.reconciliation.adapters.crypto import AesGcmReportCipher
from kora.reconciliation.adapters.sql import SqlReportStore
from kora.reconciliation.adapters.tables import event_outbox, recon_audit, recon_cases
from kora.reconciliation.adapters.view_store import upsert_payment
from kora.reconciliation.cli import register
from kora.reconciliation.domain.rules import MatchRules
from kora.reconciliation.http.app import build_services, create_app
from kora.reconciliation.http.settings import ReconApiSettings
from kora.reconciliation.service.case_hook import CaseOpener
from kora.reconciliation.service.importing import ReportImports
from kora.reconciliation.service.match_run import run_match
from kora.simulator.behaviour import Scenario
from kora.simulator.config import ApiStyle
from kora.simulator.reports import render_report
from tests.integration.reconciliation.api_support import CoreKeys, bearer, core_token
from tests.unit.reconciliation.factories import AS_OF, DAY, START, Simulation, kora_view

RUN_AT = START + timedelta(days=3, hours=1)
USERS = {name: str(uuid.uuid4()) for name in ("rev-1", "rev-2", "app-1", "admin")}


async def _a_case(url: str, audit_key: bytes) -> uuid.UUID:
    """One MISMATCH (amount) case: the provider reports 4_000, Kora has 4_500."""
    sim = Simulation()
    op = sim.mobile("momo", "collection", 4_000, Scenario.SUCCEED)
    report = render_report(ApiStyle.MOMO, sim.state.ledger.of_provider("momo"), DAY).encode()
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await upsert_payment(conn, replace(kora_view(op, "CAPTURED"), amount=4_500), sequence=3, at=START)
        key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        imports = ReportImports(SqlReportStore(engine), AesGcmReportCipher.from_setting(key), FixedClock(START))
        report_id = (await imports.import_report("momo", report, filename="momo.csv", actor="ops-1")).report_id
        opener = CaseOpener(SqlAuditTrail(audit_key))
        rules = MatchRules(fallback_window=None)
        await run_match(
            engine, report_id, rules=rules, as_of=AS_OF, clock=FixedClock(RUN_AT), hooks=[opener.open_cases]
        )
        async with engine.connect() as conn:
            return (await conn.execute(sa.select(recon_cases.c.id))).scalar_one()
    finally:
        await engine.dispose()


def test_cli_lists_shows_proposes_rejects_approves_and_verifies(tmp_path: Path) -> None:
    import asyncio

    main = click.Group("kora")
    register(main)
    audit_key = secrets.token_bytes(32)
    url = f"sqlite+aiosqlite:///{tmp_path / 'recon.db'}"
    keys = CoreKeys.generate()
    env = {
        "KORA_RECON_USER_TOKEN_KEYS": keys.jwks_json(),
        "KORA_RECON_DATABASE_URL": url,
        "KORA_RECON_REPORT_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "KORA_RECON_AUDIT_KEY": base64.urlsafe_b64encode(audit_key).decode(),
        "KORA_LOG_LEVEL": "WARNING",
        "KORA_DEV_SECRETS_FILE": str(tmp_path / "dev-secrets.json"),
    }
    runner = CliRunner()
    assert runner.invoke(main, ["recon", "db", "upgrade"], env=env).exit_code == 0
    case_id = str(asyncio.run(_a_case(url, audit_key)))
    now = datetime.now(UTC)

    def token(user: str, *roles: str) -> list[str]:
        return ["--token", core_token(keys, *roles, user_id=USERS[user], at=now)]

    reviewer, approver = token("rev-1", "recon_reviewer"), token("app-1", "recon_approver")

    def cases(*args: str) -> Any:
        result = runner.invoke(main, ["recon", "cases", *args], env=env)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    listed = cases("list", *reviewer, "--queue")
    assert listed["total"] == 1
    assert listed["cases"][0]["id"] == case_id
    assert listed["cases"][0]["status"] == "open"
    shown = cases("show", *approver, case_id)
    assert shown["evidence"]["line"]["amount"] == 4_000
    assert shown["evidence"]["kora"]["amount"] == 4_500

    no_amount = runner.invoke(
        main, ["recon", "cases", "propose", *reviewer, case_id, "--kind", "write_off", "--note", "gap"], env=env
    )
    assert no_amount.exit_code != 0
    assert "invalid_proposal" in no_amount.output
    assert shown["evidence"]["gap"] == {"amount": -500, "currency": "XOF"}
    proposed = cases("propose", *reviewer, case_id, "--kind", "no_action", "--note", "rounding")
    assert proposed["status"] == "proposed"
    # The person is the token's: the proposer's own token with the approver role is still her.
    own = runner.invoke(main, ["recon", "cases", "approve", *token("rev-1", "recon_approver"), case_id], env=env)
    assert own.exit_code != 0
    assert "maker_checker" in own.output
    # Naming someone else is no longer possible, and a token that does not verify is refused.
    claimed = runner.invoke(
        main, ["recon", "cases", "approve", "--actor", "user-app-1", "--role", "recon_approver", case_id], env=env
    )
    assert claimed.exit_code != 0
    assert "No such option" in claimed.output
    forged = core_token(keys, "recon_approver", user_id=USERS["app-1"], at=now, key=Ed25519PrivateKey.generate())
    refused = runner.invoke(main, ["recon", "cases", "approve", "--token", forged, case_id], env=env)
    assert (refused.exit_code, "invalid_token" in refused.output) == (1, True)
    expired = core_token(keys, "recon_approver", user_id=USERS["app-1"], at=now - timedelta(hours=1))
    refused = runner.invoke(main, ["recon", "cases", "approve", "--token", expired, case_id], env=env)
    assert "invalid_token" in refused.output
    assert "expired" in refused.output
    without = runner.invoke(main, ["recon", "cases", "list"], env=env)
    assert without.exit_code != 0
    assert "--token" in without.output
    # KORA_RECON_TOKEN serves as well as --token.
    from_env = runner.invoke(main, ["recon", "cases", "list"], env={**env, "KORA_RECON_TOKEN": reviewer[1]})
    assert (from_env.exit_code, json.loads(from_env.stdout)["total"]) == (0, 1)
    as_reviewer = runner.invoke(main, ["recon", "cases", "approve", *reviewer, case_id], env=env)
    assert as_reviewer.exit_code != 0
    assert "role_not_allowed" in as_reviewer.output
    assert cases("reject", *approver, case_id, "--note", "500 is not rounding")["status"] == "rejected"
    cases("propose", *reviewer, case_id, "--kind", "accept_provider", "--note", "provider is right")
    closed = cases("approve", *approver, case_id)
    assert (closed["status"], closed["decided_by"]) == ("closed", USERS["app-1"])

    worked = cases("work")  # the automatic rules: nothing awaits the core, nothing to post
    assert worked == {"late_success": {"pending": 0, "confirmed": 0, "escalated": 0, "error": 0}, "postings_retried": 0}

    verified = runner.invoke(main, ["recon", "audit", "verify"], env=env)
    assert verified.exit_code == 0, verified.output
    report = json.loads(verified.stdout)
    assert report["ok"] is True
    assert report["records"] == 5  # open, propose, reject, propose, approve: the refused approvals left none

    async def tamper() -> None:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.begin() as conn:
                await conn.execute(sa.update(recon_audit).where(recon_audit.c.position == 2).values(role="admin"))
        finally:
            await engine.dispose()

    asyncio.run(tamper())
    broken = runner.invoke(main, ["recon", "audit", "verify"], env=env)
    assert broken.exit_code == 1
    assert json.loads(broken.stdout)["broken"][0]["position"] == 2


@pytest.fixture
async def api(recon_url: str, tmp_path: Path) -> Any:
    """The real reconciliation app (`build_services`/`create_app`), people authenticated with
    the core's access tokens; the core's service API is an in-test object (no call reaches it
    in this test: confirm_mismatch goes to the outbox, not to the core)."""
    audit_key = secrets.token_bytes(32)
    case_id = await _a_case(recon_url, audit_key)

    class NoCore:
        async def payment(self, payment_id: str) -> None:
            return None

        async def query_provider(self, payment_id: str) -> None:
            return None

        async def post_correction(self, correction: Any) -> Any:
            raise RuntimeError("not in this test")

    keys = CoreKeys.generate()
    env = {
        "KORA_RECON_DATABASE_URL": recon_url,
        "KORA_RECON_REPORT_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "KORA_RECON_AUDIT_KEY": base64.urlsafe_b64encode(audit_key).decode(),
        "KORA_RECON_USER_TOKEN_KEYS": keys.jwks_json(),
        "KORA_DEV_SECRETS_FILE": str(tmp_path / "dev-secrets.json"),
    }
    services = build_services(ReconApiSettings.from_env(env), clock=FixedClock(RUN_AT), core=NoCore())
    app = create_app(services, manage_lifecycle=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://recon") as client:
        yield client, case_id, keys, services.engine
    await services.aclose()


def _as(keys: CoreKeys, user: str, *roles: str) -> dict[str, str]:
    return bearer(core_token(keys, *roles, user_id=USERS[user], at=RUN_AT))


async def test_http_cases_follow_maker_checker_and_answer_problems(api: Any) -> None:
    client, case_id, keys, engine = api
    reviewer, approver = _as(keys, "rev-1", "recon_reviewer"), _as(keys, "app-1", "recon_approver")
    assert (await client.get("/v1/recon/cases")).status_code == 401

    listed = await client.get("/v1/recon/cases", params={"queue": "true"}, headers=reviewer)
    assert listed.status_code == 200
    assert [c["id"] for c in listed.json()["cases"]] == [str(case_id)]
    shown = (await client.get(f"/v1/recon/cases/{case_id}", headers=_as(keys, "admin", "admin"))).json()
    assert shown["case"]["outcome"] == "MISMATCH"
    assert shown["history"][0]["action"] == "case.open"
    missing = await client.get(f"/v1/recon/cases/{uuid.uuid4()}", headers=reviewer)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["code"] == "case_not_found"

    too_early = await client.post(f"/v1/recon/cases/{case_id}/approve", headers=approver)
    assert (too_early.status_code, too_early.json()["code"]) == (409, "invalid_transition")
    phone = await client.post(
        f"/v1/recon/cases/{case_id}/comments", json={"note": "call 0707070707 back"}, headers=reviewer
    )
    assert (phone.status_code, phone.json()["code"]) == (422, "invalid_note")
    proposal = {"kind": "confirm_mismatch", "note": "Kora booked 500 more"}
    proposed = await client.post(f"/v1/recon/cases/{case_id}/proposal", json=proposal, headers=reviewer)
    assert (proposed.status_code, proposed.json()["status"]) == (200, "proposed")

    own = await client.post(f"/v1/recon/cases/{case_id}/approve", headers=_as(keys, "rev-1", "recon_approver"))
    assert (own.status_code, own.json()["code"]) == (403, "maker_checker")
    by_reviewer = await client.post(f"/v1/recon/cases/{case_id}/approve", headers=_as(keys, "rev-2", "recon_reviewer"))
    assert (by_reviewer.status_code, by_reviewer.json()["code"]) == (403, "role_not_allowed")
    assert await _mismatch_events(engine) == []

    approved = await client.post(f"/v1/recon/cases/{case_id}/approve", headers=approver)
    assert (approved.status_code, approved.json()["status"]) == (200, "resolved")
    events = await _mismatch_events(engine)
    assert [(e["case_id"], e["outcome"], e["reason"]) for e in events] == [(str(case_id), "MISMATCH", "amount")]


async def _mismatch_events(engine: Any) -> list[dict[str, Any]]:
    """The payloads of the confirmed-mismatch events in the service's outbox (signed envelopes)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(event_outbox.c.envelope).where(event_outbox.c.type == "reconciliation.mismatch_confirmed")
        )
        return [json.loads(envelope)["payload"] for (envelope,) in rows]

"""The core's service API over HTTP (ADR 0023): who gets in (a service token of a registered
key, for the right audience, issuer, lifetime and scope; never a user's token), and the three
routes — a payment read, a provider query, and maker-checker corrections posted as one
balanced, audited, idempotent journal transaction — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from kora.audit import list_audit
from kora.ledger import AccountKind
from kora.observability.testing import capture_logs
from tests.fakes import ScriptedGateway, pending, succeeded
from tests.support.api import Customer
from tests.support.service_auth import (
    RECON,
    ServiceHarness,
    bearer,
    core_with_services,
    forge,
    identity_entry,
    new_service_key,
)

OTHER = "kora-other-service"


@pytest.fixture
async def core(migrated_url: str, tmp_path: Path) -> AsyncIterator[ServiceHarness]:
    """The core trusting the reconciliation service (every scope) and another service (read only)."""
    async with _core(migrated_url, tmp_path) as harness:
        yield harness


@pytest.fixture
async def sqlite_core(migrated_sqlite_url: str, tmp_path: Path) -> AsyncIterator[ServiceHarness]:
    async with _core(migrated_sqlite_url, tmp_path) as harness:
        yield harness


@asynccontextmanager
async def _core(url: str, tmp_path: Path) -> AsyncIterator[ServiceHarness]:
    key, other = new_service_key("recon-1"), new_service_key("other-1")
    identities = [identity_entry(key), identity_entry(other, OTHER, ("payments:read",))]
    async with core_with_services(url, tmp_path, identities, key) as harness:
        harness.other_key = other
        yield harness


async def cash_in_payment(core: ServiceHarness, amount: int = 10_000) -> tuple[Customer, dict[str, Any]]:
    alice = await core.api.customer(fund=amount)
    items = (await core.client.get("/v1/payments", headers=alice.headers())).json()["items"]
    return alice, items[0]


def correction(payment: dict[str, Any], kind: str, amount: int, **changes: Any) -> dict[str, Any]:
    body = {
        "case_id": str(uuid.uuid4()),
        "payment_id": payment["id"],
        "kind": kind,
        "amount": amount,
        "currency": "XOF",
        "reason": "provider_report_mismatch",
        "proposed_by": f"user:{uuid.uuid4()}",
        "approved_by": f"user:{uuid.uuid4()}",
    }
    body.update(changes)
    return body


async def post_correction(core: ServiceHarness, body: dict[str, Any], *, key: str | None = None) -> Any:
    headers = core.headers("ledger:correct", **{"Idempotency-Key": key or body["case_id"]})
    return await core.client.post("/v1/service/corrections", json=body, headers=headers)


async def balance_of(core: ServiceHarness, account_id: str) -> int:
    async with core.kora.unit_of_work() as uow:
        return int((await uow.ledger.balance(uuid.UUID(account_id))).posted)


async def postings(core: ServiceHarness, payment_id: str, kind: str) -> Any:
    async with core.kora.unit_of_work() as uow:
        return await uow.ledger.transaction_for_payment(uuid.UUID(payment_id), kind)


async def audit_of(core: ServiceHarness, payment_id: str) -> list[Any]:
    async with core.kora.engine.connect() as conn:
        return await list_audit(conn, subject=f"payment:{payment_id}")


# ----------------------------------------------------------------------------- who gets in


async def test_the_right_service_token_reads_a_payment_without_pii(core: ServiceHarness) -> None:
    alice, payment = await cash_in_payment(core, 5_000)
    answer = await core.client.get(f"/v1/service/payments/{payment['id']}", headers=core.headers("payments:read"))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "id": payment["id"],
        "type": "cash_in",
        "status": "CAPTURED",
        "amount": 5_000,
        "currency": "XOF",
        "provider": "sandbox",
        "provider_ref": answer.json()["provider_ref"],
    }
    assert alice.phone_number not in answer.text
    assert alice.wallet_id not in answer.text
    missing = await core.client.get(f"/v1/service/payments/{uuid.uuid4()}", headers=core.headers("payments:read"))
    assert (missing.status_code, missing.json()["code"]) == (404, "payment_not_found")


def _refusals(core: ServiceHarness, alice: Customer) -> list[tuple[str, dict[str, str], int, str, str]]:
    key = core.key
    other = core.other_key
    assert other is not None
    stranger = new_service_key("recon-1")  # the same kid, another key: a forged signature
    now = datetime.now(UTC)
    return [
        ("no token", {}, 401, "service_token_invalid", "missing"),
        ("a user's access token", bearer(alice.access_token), 401, "service_token_invalid", "wrong_type"),
        ("not a JWT", bearer("not.a.jwt"), 401, "service_token_invalid", "malformed"),
        ("bad signature", bearer(forge(stranger)), 401, "service_token_invalid", "bad_signature"),
        ("unknown kid", bearer(forge(new_service_key("nobody"))), 401, "service_token_invalid", "unknown_kid"),
        ("wrong type", bearer(forge(key, headers={"typ": "at+jwt"})), 401, "service_token_invalid", "wrong_type"),
        (
            "wrong audience",
            bearer(forge(key, claims={"aud": "kora-api"})),
            401,
            "service_token_invalid",
            "wrong_audience",
        ),
        (
            "another service's name on this key",
            bearer(forge(key, claims={"iss": OTHER, "sub": OTHER})),
            401,
            "service_token_invalid",
            "wrong_issuer",
        ),
        (
            "another service's key claiming to be recon",
            bearer(forge(other)),
            401,
            "service_token_invalid",
            "wrong_issuer",
        ),
        (
            "expired",
            bearer(forge(key, issued=now - timedelta(minutes=4), lifetime=timedelta(minutes=3))),
            401,
            "service_token_invalid",
            "expired",
        ),
        (
            "issued in the future",
            bearer(forge(key, issued=now + timedelta(minutes=2))),
            401,
            "service_token_invalid",
            "not_yet_valid",
        ),
        (
            "lifetime too long",
            bearer(forge(key, lifetime=timedelta(minutes=6))),
            401,
            "service_token_invalid",
            "lifetime_too_long",
        ),
        (
            "asks for a scope the service is not granted",
            bearer(forge(other, claims={"iss": OTHER, "sub": OTHER, "scope": "payments:read ledger:correct"})),
            401,
            "service_token_invalid",
            "scope_not_granted",
        ),
        (
            "a granted scope, but not this route's",
            bearer(forge(key, claims={"scope": "payments:query"})),
            403,
            "service_scope_missing",
            "scope_missing",
        ),
        ("no jti", bearer(forge(key, claims={"jti": None})), 401, "service_token_invalid", "malformed"),
    ]


async def test_the_core_refuses_every_token_that_is_not_right(sqlite_core: ServiceHarness) -> None:
    core = sqlite_core
    alice, payment = await cash_in_payment(core, 1_000)
    path = f"/v1/service/payments/{payment['id']}"
    with capture_logs() as lines:
        for name, headers, status, code, reason in _refusals(core, alice):
            answer = await core.client.get(path, headers=headers)
            assert (answer.status_code, answer.json()["code"]) == (status, code), name
            assert answer.headers["content-type"] == "application/problem+json", name
            assert payment["id"] not in answer.text, name
            logged = [json.loads(line) for line in lines if "service call refused" in line]
            assert logged, name
            assert logged[-1]["reason"] == reason, name
    everything = "\n".join(lines)
    assert not re.search(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}", everything), "a token leaked into logs"
    assert alice.phone_number not in everything
    assert alice.phone_number.lstrip("+") not in everything
    metrics = (await core.client.get("/metrics")).text
    assert 'kora_service_auth_refusals_total{reason="missing",service="unknown"} 1.0' in metrics
    assert f'kora_service_auth_refusals_total{{reason="bad_signature",service="{RECON}"}} 1.0' in metrics
    assert f'kora_service_auth_refusals_total{{reason="scope_missing",service="{RECON}"}} 1.0' in metrics
    # A service token is no user token either: the user API refuses it.
    as_user = await core.client.get("/v1/wallet", headers={**core.headers("payments:read"), "X-Device-ID": "svc"})
    assert (as_user.status_code, as_user.json()["code"]) == (401, "invalid_token")


async def test_a_service_token_is_documented_in_openapi(sqlite_core: ServiceHarness) -> None:
    schema = (await sqlite_core.client.get("/openapi.json")).json()
    assert "ServiceToken" in schema["components"]["securitySchemes"]
    paths = schema["paths"]
    assert {"/v1/service/payments/{payment_id}", "/v1/service/corrections"} <= set(paths)
    responses = paths["/v1/service/corrections"]["post"]["responses"]
    assert {"201", "401", "403", "404", "409", "422"} <= set(responses)


# ----------------------------------------------------------------------------- provider query


async def test_a_provider_query_answers_the_payment_as_it_stands(core: ServiceHarness) -> None:
    _, payment = await cash_in_payment(core, 2_000)
    answer = await core.client.post(
        f"/v1/service/payments/{payment['id']}/provider-query", headers=core.headers("payments:query")
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["id"], body["status"], body["provider_answer"]) == (payment["id"], "CAPTURED", "succeeded")
    records = await audit_of(core, payment["id"])
    queried = [r for r in records if r.action == "payment.cash_in.provider_queried"]
    assert queried
    assert queried[0].actor == f"service:{RECON}"
    denied = await core.client.post(
        f"/v1/service/payments/{payment['id']}/provider-query", headers=core.headers("payments:read")
    )
    assert (denied.status_code, denied.json()["code"]) == (403, "service_scope_missing")
    missing = await core.client.post(
        f"/v1/service/payments/{uuid.uuid4()}/provider-query", headers=core.headers("payments:query")
    )
    assert missing.status_code == 404


async def test_a_provider_query_confirms_a_pending_cash_in_late(migrated_url: str, tmp_path: Path) -> None:
    """The provider left the cash-in pending (a timeout); asked now, it confirms: captured once,
    and the wallet credited. Unreachable, it changes nothing."""
    gateway = ScriptedGateway(answers=[pending()], name="momo")
    gateway.status_answers = [TimeoutError(), succeeded(provider_ref="MOMO-LATE-1")]
    key = new_service_key("recon-1")
    async with core_with_services(migrated_url, tmp_path, [identity_entry(key)], key, providers=[gateway]) as core:
        alice = await core.api.customer()
        await core.api.cash_in(alice, 4_000)
        payment = (await core.client.get("/v1/payments", headers=alice.headers())).json()["items"][0]
        assert payment["status"] == "INITIATED"
        path = f"/v1/service/payments/{payment['id']}/provider-query"

        unreachable = await core.client.post(path, headers=core.headers("payments:query"))
        assert unreachable.status_code == 200, unreachable.text
        assert (unreachable.json()["status"], unreachable.json()["provider_answer"]) == ("INITIATED", "unreachable")

        confirmed = await core.client.post(path, headers=core.headers("payments:query"))
        assert (confirmed.json()["status"], confirmed.json()["provider_answer"]) == ("CAPTURED", "succeeded")
        assert confirmed.json()["provider_ref"] == "MOMO-LATE-1"
        assert (await core.api.balance(alice))["balance"] == 4_000
        again = await core.client.post(path, headers=core.headers("payments:query"))
        assert again.json()["status"] == "CAPTURED"
        assert (await core.api.balance(alice))["balance"] == 4_000  # captured once
        assert len(gateway.status_calls) == 3
        assert (await core.kora.verify_ledger()).ok


# ----------------------------------------------------------------------------- corrections


async def test_each_correction_kind_posts_one_balanced_transaction(core: ServiceHarness) -> None:
    alice, payment = await cash_in_payment(core, 10_000)
    async with core.kora.unit_of_work() as uow:
        suspense = str((await uow.ledger.system_account(AccountKind.SUSPENSE, "XOF")).id)
        clearing = str((await uow.ledger.system_account(AccountKind.PROVIDER_CLEARING, "XOF", "sandbox")).id)
        await uow.commit()
    clearing_before = await balance_of(core, clearing)

    asked = correction(payment, "write_off", 1_000)
    write_off = await post_correction(core, asked)
    assert write_off.status_code == 201, write_off.text
    body = write_off.json()
    # A cash-in's capture left a receivable on clearing: writing it off credits clearing.
    assert (body["debit"], body["credit"]) == (
        {"account_id": suspense, "account_kind": "suspense"},
        {"account_id": clearing, "account_kind": "provider_clearing"},
    )
    assert await balance_of(core, clearing) == clearing_before - 1_000
    assert await balance_of(core, suspense) == -1_000  # suspense (credit-normal) debited

    credit = await post_correction(core, correction(payment, "manual_credit", 300))
    assert credit.status_code == 201, credit.text
    assert (credit.json()["debit"]["account_kind"], credit.json()["credit"]["account_id"]) == (
        "suspense",
        alice.wallet_id,
    )
    assert (await core.api.balance(alice))["balance"] == 10_300

    debit = await post_correction(core, correction(payment, "manual_debit", 500))
    assert debit.status_code == 201, debit.text
    assert (await core.api.balance(alice))["balance"] == 9_800
    assert await balance_of(core, suspense) == -1_000 - 300 + 500

    for kind, answer in (("write_off", body), ("manual_credit", credit.json()), ("manual_debit", debit.json())):
        txn = await postings(core, payment["id"], f"correction.{kind}")
        assert txn is not None
        assert str(txn.id) == answer["transaction_id"]
        assert len(txn.legs) == 2
        assert {leg.direction.value for leg in txn.legs} == {"debit", "credit"}
        assert len({leg.money.amount for leg in txn.legs}) == 1
    verify = await core.kora.verify_ledger()
    assert verify.ok, verify.violations
    # Each posting announced itself through the outbox, in its transaction.
    async with core.kora.engine.connect() as conn:
        rows = (
            await conn.execute(sa.text("SELECT envelope FROM event_outbox WHERE type = 'ledger.transaction_posted'"))
        ).scalars()
        announced = {json.loads(e)["payload"]["transaction_id"]: json.loads(e)["payload"]["kind"] for e in rows}
    assert announced[body["transaction_id"]] == "correction.write_off"
    assert announced[debit.json()["transaction_id"]] == "correction.manual_debit"
    actions = {r.action: r for r in await audit_of(core, payment["id"])}
    audited = json.loads(actions["ledger.correction.write_off"].details)
    assert actions["ledger.correction.write_off"].actor == f"service:{RECON}"
    assert audited["case_id"] == body["case_id"]
    assert audited["transaction_id"] == body["transaction_id"]
    assert (audited["proposed_by"], audited["approved_by"]) == (asked["proposed_by"], asked["approved_by"])
    metrics = (await core.client.get("/metrics")).text
    assert 'kora_ledger_corrections_total{kind="write_off",outcome="posted"} 1.0' in metrics
    assert 'kora_ledger_corrections_amount_total{currency="XOF",kind="manual_debit"} 500.0' in metrics
    assert 'kora_service_calls_total{operation="correction",outcome="ok",service="kora-reconciliation"} 3.0' in metrics


async def test_the_proposer_cannot_approve_their_own_correction(core: ServiceHarness) -> None:
    alice, payment = await cash_in_payment(core, 4_000)
    same = f"user:{uuid.uuid4()}"
    body = correction(payment, "manual_credit", 1_000, proposed_by=same, approved_by=same)
    refused = await post_correction(core, body)
    assert (refused.status_code, refused.json()["code"]) == (422, "maker_checker_violation")
    assert refused.headers["content-type"] == "application/problem+json"
    assert await postings(core, payment["id"], "correction.manual_credit") is None
    assert (await core.api.balance(alice))["balance"] == 4_000
    denied = [r for r in await audit_of(core, payment["id"]) if r.action == "ledger.correction.manual_credit"]
    assert len(denied) == 1
    assert denied[0].outcome == "denied"
    assert json.loads(denied[0].details)["code"] == "maker_checker_violation"


async def test_the_reason_is_bound_but_never_stored_and_ids_are_compared_as_people(core: ServiceHarness) -> None:
    alice, payment = await cash_in_payment(core, 2_000)
    note = "customer " + alice.phone_number + " says the provider collected twice (ref M1000000001)"
    with capture_logs() as lines:
        posted = await post_correction(core, correction(payment, "manual_credit", 100, reason=note))
        reviewer = str(uuid.uuid4())
        same = await post_correction(
            core, correction(payment, "manual_debit", 50, proposed_by=reviewer, approved_by=f"user:{reviewer.upper()}")
        )
    assert posted.status_code == 201, posted.text
    assert (same.status_code, same.json()["code"]) == (422, "maker_checker_violation")
    records = await audit_of(core, payment["id"])
    trail = "\n".join(r.details for r in records)
    assert "reason_sha256" in trail
    assert alice.phone_number.lstrip("+") not in trail
    assert "M1000000001" not in trail
    assert alice.phone_number.lstrip("+") not in "\n".join(lines)


async def test_a_replay_answers_the_same_and_another_body_is_refused(core: ServiceHarness) -> None:
    alice, payment = await cash_in_payment(core, 3_000)
    body = correction(payment, "manual_credit", 700)
    first = await post_correction(core, body)
    again = await post_correction(core, body)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    assert (await core.api.balance(alice))["balance"] == 3_700  # posted once
    other = await post_correction(core, {**body, "amount": 800})
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    not_case = await post_correction(core, correction(payment, "manual_debit", 10), key="not-the-case-id")
    assert (not_case.status_code, not_case.json()["code"]) == (422, "invalid_correction")
    missing = await core.client.post(
        "/v1/service/corrections", json=correction(payment, "manual_debit", 10), headers=core.headers("ledger:correct")
    )
    assert (missing.status_code, missing.json()["code"]) == (400, "idempotency_key_missing")
    second_case = await post_correction(core, correction(payment, "manual_credit", 100))
    assert (second_case.status_code, second_case.json()["code"]) == (409, "correction_already_posted")
    assert (await core.api.balance(alice))["balance"] == 3_700


async def test_a_manual_debit_never_takes_the_wallet_below_zero(core: ServiceHarness) -> None:
    alice, payment = await cash_in_payment(core, 2_000)
    # Held by a cash-out pending at the provider? No: spend it, so the posted balance is short.
    spent = await core.api.cash_out(alice, 1_500)
    assert spent.status_code == 201, spent.text
    refused = await post_correction(core, correction(payment, "manual_debit", 1_000))
    assert (refused.status_code, refused.json()["code"]) == (422, "insufficient_funds")
    assert await postings(core, payment["id"], "correction.manual_debit") is None
    assert (await core.api.balance(alice))["balance"] == 500
    assert (await core.kora.verify_ledger()).ok


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"amount": 0}, 422, "invalid_amount"),
        ({"amount": -5}, 422, "invalid_amount"),
        ({"amount": "100"}, 422, "validation_error"),
        ({"amount": 2_000_000}, 422, "invalid_correction"),  # above KORA_CORRECTION_MAX_AMOUNT
        ({"amount": 5_001}, 422, "invalid_correction"),  # more than the payment
        ({"currency": "XAF"}, 422, "currency_mismatch"),
        ({"payment_id": "UNKNOWN"}, 404, "payment_not_found"),
        ({"kind": "refund"}, 422, "validation_error"),
        ({"reason": ""}, 422, "validation_error"),
        ({"reason": "x" * 201}, 422, "validation_error"),
        ({"reason": "line\nbreak"}, 422, "invalid_correction"),
        ({"proposed_by": "Awa Koné"}, 422, "validation_error"),
        ({"proposed_by": "+2250700000001"}, 422, "validation_error"),
        ({"approved_by": "2250700000001"}, 422, "invalid_correction"),  # refused by the audit trail's PII check
        ({"unexpected": True}, 422, "validation_error"),
    ],
)
async def test_bad_corrections_are_problems_that_change_nothing(
    sqlite_core: ServiceHarness, changes: dict[str, Any], status: int, code: str
) -> None:
    core = sqlite_core
    alice, payment = await cash_in_payment(core, 5_000)
    if changes.get("payment_id") == "UNKNOWN":
        changes["payment_id"] = str(uuid.uuid4())
    refused = await post_correction(core, {**correction(payment, "manual_credit", 100), **changes})
    assert (refused.status_code, refused.json()["code"]) == (status, code), refused.text
    assert await postings(core, payment["id"], "correction.manual_credit") is None
    assert (await core.api.balance(alice))["balance"] == 5_000


async def test_a_write_off_needs_a_captured_provider_payment(sqlite_core: ServiceHarness) -> None:
    core = sqlite_core
    alice, _ = await cash_in_payment(core, 5_000)
    bob = await core.api.customer()
    sent = await core.api.transfer(alice, recipient_phone_number=bob.phone_number, amount=100)
    assert sent.status_code == 201
    p2p = sent.json()
    refused = await post_correction(core, correction(p2p, "write_off", 100))
    assert (refused.status_code, refused.json()["code"]) == (422, "correction_not_applicable")
    async with core.kora.engine.connect() as conn:
        count = (
            await conn.execute(sa.text("SELECT count(*) FROM ledger_transactions WHERE kind LIKE 'correction.%'"))
        ).scalar_one()
    assert count == 0


async def test_concurrent_corrections_never_post_twice(core: ServiceHarness) -> None:
    """The same case sent twice at once posts once (the other replays or is told to retry);
    two cases correcting the same payment the same way post once (the other: 409)."""
    alice, payment = await cash_in_payment(core, 8_000)
    body = correction(payment, "manual_credit", 400)
    answers = await asyncio.gather(post_correction(core, body), post_correction(core, body))
    assert sorted(a.status_code for a in answers) in ([201, 201], [201, 409])
    assert len({a.json().get("transaction_id") for a in answers if a.status_code == 201}) == 1
    rival = await asyncio.gather(
        post_correction(core, correction(payment, "manual_debit", 100)),
        post_correction(core, correction(payment, "manual_debit", 100)),
    )
    assert sorted((a.status_code, a.json().get("code")) for a in rival) == [
        (201, None),
        (409, "correction_already_posted"),
    ]
    assert (await core.api.balance(alice))["balance"] == 8_000 + 400 - 100
    assert (await core.kora.verify_ledger()).ok


async def test_a_written_off_payment_is_never_settled_too(core: ServiceHarness) -> None:
    """A write-off closed the payment's clearing to suspense: a later settlement (reconciliation's
    or by hand) would close it a second time. The settlement run refuses it, nothing posted."""
    _alice, payment = await cash_in_payment(core, 10_000)
    assert (await post_correction(core, correction(payment, "write_off", 10_000))).status_code == 201
    result = await core.kora.payments.settle(
        "sandbox", "XOF", payment_ids=[uuid.UUID(payment["id"])], actor="reconciliation", reference="momo-2026-11-25"
    )
    assert (result.body["settled"], result.body["rejected"]) == (0, 1)
    assert result.body["outcomes"][0]["reason"] == "written_off"
    assert await postings(core, payment["id"], "cash_in.settlement") is None
    async with core.kora.unit_of_work() as uow:
        stored = await uow.payments.get(uuid.UUID(payment["id"]))
    assert stored is not None
    assert stored.status.value == "CAPTURED"
    assert (await core.kora.verify_ledger()).ok

"""The settlement step on the in-memory fakes: captured provider payments move from clearing
to the settlement bank once, in chunks; anything else is reported, never posted."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

import pytest

from kora.ledger import AccountKind
from kora.payments import (
    IdempotencyKeyReused,
    Outcome,
    PaymentsService,
    PaymentStatus,
    ProviderMoveCommand,
    UnknownProvider,
)
from kora.payments.service import InvalidSettlementRequest
from kora.payments.service import settlement as settlement_module
from kora.providers.adapters.sandbox import SandboxGateway
from tests.fakes import Harness, RecordingPaymentMetrics, ScriptedGateway, failed, make_service, pending, succeeded

TODAY = date(2026, 1, 1)  # the fakes' FixedClock starts at 2026-01-01 12:00 UTC


class SettlementMetrics(RecordingPaymentMetrics):
    def payment_settled(self, provider: str, payment_type: str, delay_seconds: float) -> None:
        self.calls.append(("payment_settled", (provider, payment_type, delay_seconds)))

    def settlement_rejected(self, provider: str, reason: str) -> None:
        self.calls.append(("settlement_rejected", (provider, reason)))

    def settlement_overdue(self, provider: str, currency: str, payments: int, amount: int) -> None:
        self.calls.append(("settlement_overdue", (provider, currency, payments, amount)))


def settlement_service(**kwargs: Any) -> tuple[PaymentsService, Harness, SettlementMetrics]:
    _, h = make_service(**kwargs)
    metrics = SettlementMetrics()
    h.metrics = metrics
    service = PaymentsService(
        uow_factory=h.uow_factory,
        directory=h.directory,
        providers=h.providers,
        clock=h.clock,
        config=h.config,
        metrics=metrics,
    )
    return service, h, metrics


async def move(
    service: PaymentsService, user: uuid.UUID, kind: str, amount: int, *, provider: str | None = None
) -> uuid.UUID:
    cmd = ProviderMoveCommand(user, amount, "XOF", uuid.uuid4().hex, provider=provider)
    result = await (service.cash_in(cmd) if kind == "in" else service.cash_out(cmd))
    return uuid.UUID(result.body["id"])


async def settle(service: PaymentsService, **kwargs: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"actor": "ops", "reference": "SANDBOX-2026-01-01"}
    values.update(kwargs)
    result = await service.settle(values.pop("provider", "sandbox"), values.pop("currency", "XOF"), **values)
    assert result.outcome is Outcome.SUCCEEDED
    return result.body


async def posted(h: Harness, kind: AccountKind, owner: str = "sandbox") -> int | None:
    balance = await h.balance_of(h.account_id(kind, owner))
    return balance.posted if balance else None


def status_of(h: Harness, payment_id: uuid.UUID) -> PaymentStatus:
    return h.db.payments.payments[payment_id].status


async def test_settling_a_day_moves_clearing_to_the_bank_and_reports_the_net() -> None:
    service, h, metrics = settlement_service()
    alice = h.new_user()
    cash_in = await move(service, alice, "in", 10_000)
    cash_out = await move(service, alice, "out", 3_000)
    assert await posted(h, AccountKind.PROVIDER_CLEARING) == 7_000
    h.clock.advance(timedelta(days=1))

    body = await settle(service, through=TODAY)

    assert (body["settled"], body["already_settled"], body["rejected"]) == (2, 0, 0)
    assert body["totals"] == {
        "collections": {"count": 1, "amount": 10_000},
        "disbursements": {"count": 1, "amount": 3_000},
        "net": 7_000,
        "already_settled": {
            "collections": {"count": 0, "amount": 0},
            "disbursements": {"count": 0, "amount": 0},
            "net": 0,
        },
    }
    assert {o["payment_id"]: (o["outcome"], o["flow"], o["amount"]) for o in body["outcomes"]} == {
        str(cash_in): ("settled", "collections", 10_000),
        str(cash_out): ("settled", "disbursements", 3_000),
    }
    assert await posted(h, AccountKind.PROVIDER_CLEARING) == 0
    assert await posted(h, AccountKind.SETTLEMENT_BANK) == 7_000
    assert (await h.wallet_balance(alice)).posted == 7_000  # type: ignore[union-attr]
    for payment_id, kind in ((cash_in, "cash_in"), (cash_out, "cash_out")):
        payment = h.db.payments.payments[payment_id]
        assert payment.status is PaymentStatus.SETTLED
        last = payment.history[-1]
        assert (last.reason, last.actor) == ("settled by provider report SANDBOX-2026-01-01", "ops")
        assert h.transaction_kinds(payment_id) == [f"{kind}.capture", f"{kind}.settlement"]
    assert h.audit_actions()[-3:] == ["payment.cash_in.settled", "payment.cash_out.settled", "settlement.run"]
    assert h.verify().ok
    assert sorted(metrics.named("payment_settled")) == [
        ("sandbox", "cash_in", 86_400.0),
        ("sandbox", "cash_out", 86_400.0),
    ]


async def test_a_second_run_settles_nothing_twice() -> None:
    service, h, _ = settlement_service()
    alice = h.new_user()
    payment = await move(service, alice, "in", 5_000)
    h.clock.advance(timedelta(days=1))
    await settle(service, through=TODAY)
    before = h.contents()

    again = await settle(service, through=TODAY)
    assert (again["settled"], again["already_settled"], again["rejected"], again["outcomes"]) == (0, 0, 0, [])
    by_id = await settle(service, payment_ids=[payment])
    assert (by_id["settled"], by_id["already_settled"]) == (0, 1)
    assert by_id["outcomes"] == [
        {"payment_id": str(payment), "outcome": "already_settled", "flow": "collections", "amount": 5_000}
    ]
    assert by_id["totals"]["net"] == 0
    assert by_id["totals"]["already_settled"]["collections"] == {"count": 1, "amount": 5_000}

    after = h.contents()
    assert (after.entries, after.payments) == (before.entries, before.payments)
    assert await posted(h, AccountKind.SETTLEMENT_BANK) == 5_000


async def test_named_payments_only_are_settled() -> None:
    service, h, _ = settlement_service()
    alice = h.new_user()
    first, second, third = [await move(service, alice, "in", amount) for amount in (1_000, 2_000, 4_000)]

    body = await settle(service, payment_ids=[third, first, first])  # duplicates count once

    assert body["settled"] == 2
    assert body["totals"]["net"] == 5_000
    assert [status_of(h, p) for p in (first, second, third)] == [
        PaymentStatus.SETTLED,
        PaymentStatus.CAPTURED,
        PaymentStatus.SETTLED,
    ]
    assert await posted(h, AccountKind.PROVIDER_CLEARING) == 2_000


async def test_payments_that_cannot_be_settled_are_rejected_with_a_reason_and_nothing_posted() -> None:
    momo = ScriptedGateway(answers=[succeeded(), failed("PAYER_NOT_FOUND"), pending()], name="momo")
    service, h, metrics = settlement_service(gateways=[SandboxGateway(), momo])
    alice = h.new_user()
    await h.fund(alice, 50_000)
    ours = await move(service, alice, "in", 1_000)
    elsewhere = await move(service, alice, "in", 2_000, provider="momo")
    declined = await move(service, alice, "in", 3_000, provider="momo")
    waiting = await move(service, alice, "out", 4_000, provider="momo")
    unknown = uuid.uuid4()
    before = h.contents()

    body = await settle(service, provider="momo", payment_ids=[ours, elsewhere, declined, waiting, unknown])

    reasons = {o["payment_id"]: (o["outcome"], o.get("reason")) for o in body["outcomes"]}
    assert reasons == {
        str(ours): ("rejected", "other_provider"),
        str(elsewhere): ("settled", None),
        str(declined): ("rejected", "status_failed"),
        str(waiting): ("rejected", "status_authorized"),
        str(unknown): ("rejected", "not_found"),
    }
    assert (body["settled"], body["rejected"]) == (1, 4)
    assert [status_of(h, p) for p in (ours, declined, waiting)] == [
        PaymentStatus.CAPTURED,
        PaymentStatus.FAILED,
        PaymentStatus.AUTHORIZED,
    ]
    new_entries = [e for e in h.contents().entries if e not in before.entries]
    assert {e.payment_id for e in new_entries} == {elsewhere}
    assert sorted(metrics.named("settlement_rejected")) == sorted(
        [("momo", "other_provider"), ("momo", "status_failed"), ("momo", "status_authorized"), ("momo", "not_found")]
    )


async def test_through_covers_the_days_up_to_it_and_no_later() -> None:
    service, h, _ = settlement_service()
    alice = h.new_user()
    day_one = await move(service, alice, "in", 1_000)
    h.clock.advance(timedelta(days=1))  # 2026-01-02 12:00
    day_two = await move(service, alice, "in", 2_000)

    body = await settle(service, through=TODAY)
    assert [o["payment_id"] for o in body["outcomes"]] == [str(day_one)]
    assert status_of(h, day_two) is PaymentStatus.CAPTURED

    named = await settle(service, through=TODAY, payment_ids=[day_two])
    assert named["outcomes"] == [
        {"payment_id": str(day_two), "outcome": "rejected", "reason": "captured_after_through"}
    ]


async def test_today_cannot_be_settled_by_day_but_its_payments_can_by_id() -> None:
    service, h, _ = settlement_service()
    alice = h.new_user()
    captured_now = await move(service, alice, "in", 1_000)  # 2026-01-01 12:00, the clock's today
    before = h.contents()

    with pytest.raises(InvalidSettlementRequest, match="ended"):
        await settle(service, through=TODAY)
    assert h.contents() == before
    h.clock.advance(timedelta(hours=11, minutes=59))  # 23:59: still today
    with pytest.raises(InvalidSettlementRequest):
        await settle(service, through=TODAY)

    named = await settle(service, payment_ids=[captured_now])  # the provider's report names it
    assert named["settled"] == 1
    h.clock.advance(timedelta(minutes=1))  # 2026-01-02 00:00: the 1st has ended
    assert (await settle(service, through=TODAY))["settled"] == 0


async def test_a_retry_after_a_run_that_failed_part_way_reports_the_whole_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settlement_module, "CHUNK_SIZE", 2)
    service, h, _ = settlement_service()
    alice = h.new_user()
    signed = {await move(service, alice, "in", 4_000): 4_000, await move(service, alice, "in", 2_000): 2_000}
    signed[await move(service, alice, "out", 500)] = -500
    signed[await move(service, alice, "in", 1_000)] = 1_000
    ids = sorted(signed)
    settle_chunk = service.settlements._settle_in_one_transaction
    calls = 0

    async def second_chunk_fails(chunk: Any, cmd: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("connection lost")
        return await settle_chunk(chunk, cmd)

    with monkeypatch.context() as patch:
        patch.setattr(service.settlements, "_settle_in_one_transaction", second_chunk_fails)
        with pytest.raises(RuntimeError):
            await settle(service, payment_ids=ids, idempotency_key="settle-key-0004")
    assert [status_of(h, p) for p in ids] == [PaymentStatus.SETTLED] * 2 + [PaymentStatus.CAPTURED] * 2

    retried = await settle(service, payment_ids=ids, idempotency_key="settle-key-0004")

    assert (retried["settled"], retried["already_settled"]) == (2, 2)
    totals = retried["totals"]
    assert totals["net"] == signed[ids[2]] + signed[ids[3]]  # what this run moved
    assert totals["already_settled"]["net"] == signed[ids[0]] + signed[ids[1]]  # what the failed run moved
    assert totals["net"] + totals["already_settled"]["net"] == 6_500  # the whole report
    assert {o["payment_id"]: o["amount"] for o in retried["outcomes"]} == {str(p): abs(a) for p, a in signed.items()}
    assert await posted(h, AccountKind.SETTLEMENT_BANK) == 6_500


async def test_a_large_day_is_settled_in_several_short_transactions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settlement_module, "CHUNK_SIZE", 2)
    service, h, _ = settlement_service()
    alice = h.new_user()
    ids = [await move(service, alice, "in", 100 * (i + 1)) for i in range(5)]
    commits = h.db.commits
    h.clock.advance(timedelta(days=1))

    body = await settle(service, through=TODAY)

    assert body["settled"] == 5
    assert [o["payment_id"] for o in body["outcomes"]] == [str(i) for i in sorted(ids)]
    assert h.db.commits - commits == 3 + 1  # three chunks, then the run's audit record
    assert await posted(h, AccountKind.SETTLEMENT_BANK) == 1_500


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"provider": "nope"}, UnknownProvider),
        ({"currency": "ZZZ"}, InvalidSettlementRequest),
        ({"through": None}, InvalidSettlementRequest),
        ({"through": TODAY + timedelta(days=1)}, InvalidSettlementRequest),
        ({"through": TODAY}, InvalidSettlementRequest),  # today has not ended
        ({"payment_ids": []}, InvalidSettlementRequest),
        ({"reference": "+225 07 00 00 00 01"}, InvalidSettlementRequest),
        ({"reference": ""}, InvalidSettlementRequest),
    ],
)
async def test_bad_requests_are_refused_and_change_nothing(changes: dict[str, Any], error: type[Exception]) -> None:
    service, h, _ = settlement_service()
    await move(service, h.new_user(), "in", 1_000)
    before = h.contents()
    values: dict[str, Any] = {"through": TODAY - timedelta(days=1), "idempotency_key": "settle-key-0001"}
    values.update(changes)
    with pytest.raises(error):
        await settle(service, **values)
    assert h.contents() == before


async def test_the_same_key_replays_the_report_and_a_different_request_is_refused() -> None:
    service, h, metrics = settlement_service()
    actor = f"user:{uuid.uuid4()}"
    await move(service, h.new_user(), "in", 1_000)
    h.clock.advance(timedelta(days=1))
    first = await service.settle(
        "sandbox", "XOF", through=TODAY, actor=actor, reference="R-1", idempotency_key="settle-key-0001"
    )
    assert (first.replayed, first.body["settled"]) == (False, 1)
    before = h.contents()

    again = await service.settle(
        "sandbox", "XOF", through=TODAY, actor=actor, reference="R-1", idempotency_key="settle-key-0001"
    )
    assert (again.replayed, again.body) == (True, first.body)
    assert h.contents() == before
    assert metrics.named("idempotent_replay") == [("settlement",)]
    with pytest.raises(IdempotencyKeyReused):
        await service.settle(
            "sandbox", "XOF", through=TODAY, actor=actor, reference="R-2", idempotency_key="settle-key-0001"
        )


async def test_a_run_that_fails_releases_its_key_so_a_retry_runs_again(monkeypatch: pytest.MonkeyPatch) -> None:
    service, h, _ = settlement_service()
    payment = await move(service, h.new_user(), "in", 1_000)
    h.clock.advance(timedelta(days=1))

    async def broken(*_args: Any) -> Any:
        raise RuntimeError("database went away")

    with monkeypatch.context() as patch:
        patch.setattr(service.settlements, "_run", broken)
        with pytest.raises(RuntimeError):
            await settle(service, through=TODAY, idempotency_key="settle-key-0002")
    assert not [key for key in h.db.idempotency.rows if key[1] == "settle-key-0002"]  # released
    retried = await settle(service, through=TODAY, idempotency_key="settle-key-0002")
    assert retried["settled"] == 1
    assert status_of(h, payment) is PaymentStatus.SETTLED


async def test_an_abandoned_claim_is_taken_over_once_stale() -> None:
    service, h, _ = settlement_service()
    await move(service, h.new_user(), "in", 1_000)
    claim = await service.settlements._claim(  # a run that died after claiming its key
        settlement_module.IdempotencyRequest("ops", "settle-key-0003", "fp")
    )
    assert claim is None
    h.clock.advance(timedelta(days=1) + settlement_module.STALE_CLAIM)
    body = await settle(service, through=TODAY, idempotency_key="settle-key-0003")
    assert body["settled"] == 1


async def test_the_backlog_shows_captured_due_and_overdue_and_feeds_the_gauges() -> None:
    service, h, metrics = settlement_service()
    alice = h.new_user()
    old_in = await move(service, alice, "in", 10_000)  # captured 2026-01-01, due end of 01-02
    await move(service, alice, "out", 1_000)
    h.clock.advance(timedelta(days=2))  # 2026-01-03 12:00: those two are overdue
    await move(service, alice, "in", 500)  # due end of 01-04

    backlog = await service.settlement_backlog()
    (item,) = backlog["items"]
    assert (item["provider"], item["currency"]) == ("sandbox", "XOF")
    assert item["captured"] == {"count": 3, "amount": 11_500}
    assert item["due"] == {"count": 2, "amount": 11_000}
    assert item["overdue"] == {"count": 2, "amount": 11_000}
    assert item["expected"] == {
        "collections": {"count": 2, "amount": 10_500},
        "disbursements": {"count": 1, "amount": 1_000},
        "net": 9_500,
    }
    assert item["oldest_settlement_due"] == "2026-01-02T23:59:59.999999+00:00"
    assert item["oldest_captured_at"] == "2026-01-01T12:00:00+00:00"
    assert metrics.named("settlement_overdue")[-1] == ("sandbox", "XOF", 2, 11_000)

    h.clock.advance(timedelta(days=1))  # 2026-01-04: the 3rd has ended
    await settle(service, through=date(2026, 1, 3))
    assert (await service.settlement_backlog())["items"] == []
    assert metrics.named("settlement_overdue")[-1] == ("sandbox", "XOF", 0, 0)  # caught up: back to 0
    assert status_of(h, old_in) is PaymentStatus.SETTLED
    assert (await service.settlement_backlog(provider="other"))["items"] == []

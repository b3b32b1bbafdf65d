"""Cash-in and cash-out through a provider: the intent commits before the provider is called,
the outcome is recorded in a second unit of work, a decline gives the hold back, and an
ambiguous answer (pending, timeout) is never guessed."""

from __future__ import annotations

import uuid
from datetime import UTC, timedelta
from typing import Any

import pytest

from kora.ledger import AccountKind, Balance
from kora.payments import (
    IdempotencyKeyReused,
    Outcome,
    PaymentStatus,
    ProviderMoveCommand,
    UnknownProvider,
    WrongCurrency,
)
from kora.providers import ProviderOperation, ProviderRequest, ProviderResult
from kora.providers.adapters.sandbox import SandboxGateway
from tests.fakes import (
    Contents,
    Harness,
    ScriptedAnswer,
    ScriptedGateway,
    failed,
    make_service,
    pending,
    succeeded,
)

KEY = "provider-key-0001"


def a_command(user_id: uuid.UUID, amount: int, **changes: Any) -> ProviderMoveCommand:
    values: dict[str, Any] = {
        "user_id": user_id,
        "amount": amount,
        "currency": "XOF",
        "idempotency_key": KEY,
        "correlation_id": "corr-p",
    }
    values.update(changes)
    return ProviderMoveCommand(**values)


async def wallet(h: Harness, user_id: uuid.UUID) -> Balance:
    balance = await h.wallet_balance(user_id)
    assert balance is not None
    return balance


async def posted(h: Harness, kind: AccountKind, provider: str) -> int | None:
    balance = await h.balance_of(h.account_id(kind, provider))
    return balance.posted if balance else None


def history(h: Harness) -> list[tuple[str, str]]:
    (payment,) = h.stored_payments()
    return [(c.status.value, c.actor) for c in payment.history]


class ObservingGateway:
    """Wraps a gateway and keeps what was committed when the provider was called."""

    def __init__(self, inner: SandboxGateway | ScriptedGateway, h_ref: list[Harness]) -> None:
        self.name = inner.name
        self._inner = inner
        self._h = h_ref
        self.seen: list[tuple[int, Contents]] = []

    async def collect(self, request: ProviderRequest) -> ProviderResult:
        self.seen.append((self._h[0].db.open_units, self._h[0].contents()))
        return await self._inner.collect(request)

    async def disburse(self, request: ProviderRequest) -> ProviderResult:
        self.seen.append((self._h[0].db.open_units, self._h[0].contents()))
        return await self._inner.disburse(request)


# ---------------------------------------------------------------- cash-in
async def test_cash_in_through_the_sandbox_credits_the_wallet_and_waits_for_settlement() -> None:
    service, h = make_service()
    alice = h.new_user()
    result = await service.cash_in(a_command(alice, 5_000))
    assert (result.outcome, result.replayed) == (Outcome.SUCCEEDED, False)
    body = result.body
    assert (body["status"], body["type"], body["provider"]) == ("CAPTURED", "cash_in", "sandbox")
    assert [c["status"] for c in body["status_history"]] == ["INITIATED", "AUTHORIZED", "CAPTURED"]
    assert body["payee_wallet_id"] == str(h.wallet_id(alice))
    assert body["payer_wallet_id"] is None
    # J+1: the provider owes the money until the end of the next UTC day.
    captured_on = h.clock.now().astimezone(UTC).date()
    assert body["settlement_due"] == f"{captured_on + timedelta(days=1)}T23:59:59.999999+00:00"

    assert (await wallet(h, alice)).posted == 5_000
    # Clearing is debited at capture (the provider owes us) until the provider settles.
    assert await posted(h, AccountKind.PROVIDER_CLEARING, "sandbox") == 5_000
    assert h.account_id(AccountKind.SETTLEMENT_BANK, "sandbox") is None  # nothing settled yet

    (payment,) = h.stored_payments()
    assert h.transaction_kinds(payment.id) == ["cash_in.capture"]
    assert payment.provider_ref == f"sbx-in-{payment.id.hex}"
    assert (payment.captured_amount, payment.captured_at) == (5_000, h.clock.now())
    user, provider = f"user:{alice}", "provider:sandbox"
    assert history(h) == [
        ("INITIATED", user),
        ("AUTHORIZED", provider),
        ("CAPTURED", provider),
    ]
    assert h.db.commits == 2  # the intent, then the outcome
    assert h.audit_actions() == ["payment.cash_in.initiated", "payment.cash_in.captured"]
    assert h.verify().ok
    assert h.metrics.named("payment_finished") == [("cash_in", "CAPTURED")]
    assert h.metrics.named("amount_moved") == [("cash_in", "XOF", 5_000)]


async def test_the_provider_is_called_after_the_intent_commits_and_outside_any_transaction() -> None:
    holder: list[Harness] = []
    gateway = ObservingGateway(SandboxGateway(), holder)
    service, h = make_service(gateways=[gateway])
    holder.append(h)
    alice = h.new_user()
    await h.fund(alice, 10_000)
    await service.cash_out(a_command(alice, 4_000))
    ((open_units, committed),) = gateway.seen
    assert open_units == 0
    (payment,) = committed.payments.values()
    assert payment.status is PaymentStatus.AUTHORIZED
    (hold,) = committed.holds.values()
    assert (hold.status, hold.hold.money.amount, hold.hold.payment_id) == ("active", 4_000, payment.id)


async def test_a_cash_in_replay_posts_nothing_more() -> None:
    service, h = make_service()
    alice = h.new_user()
    first = await service.cash_in(a_command(alice, 5_000))
    before = h.contents()
    again = await service.cash_in(a_command(alice, 5_000))
    assert (again.replayed, again.body) == (True, first.body)
    assert h.contents() == before
    with pytest.raises(IdempotencyKeyReused):
        await service.cash_in(a_command(alice, 5_001))
    # The same key on the other operation is another request too.
    with pytest.raises(IdempotencyKeyReused):
        await service.cash_out(a_command(alice, 5_000))
    assert h.contents() == before


@pytest.mark.parametrize(
    ("answer", "code"), [(failed("payer_not_found"), "payer_not_found"), (failed(""), "provider_declined")]
)
async def test_a_declined_cash_in_fails_and_posts_nothing(answer: ProviderResult, code: str) -> None:
    gateway = ScriptedGateway(answers=[answer])
    service, h = make_service(gateways=[gateway])
    alice = h.new_user()
    result = await service.cash_in(a_command(alice, 5_000))
    assert result.outcome is Outcome.SUCCEEDED  # the request completed; the payment did not
    assert (result.body["status"], result.body["failure_code"]) == ("FAILED", code)
    assert [op for op, _ in gateway.calls] == ["collect"]
    assert (await wallet(h, alice)).posted == 0
    assert h.db.ledger.transactions == {}
    assert history(h) == [("INITIATED", f"user:{alice}"), ("FAILED", "provider:scripted")]
    assert h.stored_payments()[0].history[-1].reason == code
    assert h.metrics.named("payment_finished") == [("cash_in", "FAILED")]
    assert h.metrics.named("amount_moved") == []


@pytest.mark.parametrize("answer", [pending(), TimeoutError("read timed out"), ConnectionResetError()])
async def test_an_ambiguous_cash_in_stays_initiated(answer: ScriptedAnswer) -> None:
    service, h = make_service(gateways=[ScriptedGateway(answers=[answer])])
    alice = h.new_user()
    result = await service.cash_in(a_command(alice, 5_000))
    assert result.body["status"] == "INITIATED"
    assert h.db.ledger.transactions == {}
    (payment,) = h.stored_payments()
    assert payment.status is PaymentStatus.INITIATED


async def test_the_request_names_our_payment_and_the_money() -> None:
    gateway = ScriptedGateway(answers=[succeeded(provider_ref="mtn-123")])
    service, h = make_service(gateways=[gateway])
    alice = h.new_user()
    result = await service.cash_in(a_command(alice, 700))
    ((operation, request),) = gateway.calls
    assert operation == "collect"
    assert str(request.payment_id) == result.body["id"]
    assert (request.money.amount, request.money.currency) == (700, "XOF")
    assert request.account_ref == await h.directory.mobile_money_number(alice)  # where the provider collects from
    assert request.correlation_id == "corr-p"
    assert h.stored_payments()[0].provider_ref == "mtn-123"


async def test_a_callback_names_a_payment_and_the_status_query_is_the_request_sent() -> None:
    gateway = ScriptedGateway(answers=[pending()])
    service, h = make_service(gateways=[gateway, SandboxGateway()])
    alice = h.new_user()
    waiting = uuid.UUID((await service.cash_in(a_command(alice, 700, provider=gateway.name))).body["id"])
    done = uuid.UUID(
        (await service.cash_in(a_command(alice, 300, idempotency_key="provider-key-0002", provider="sandbox"))).body[
            "id"
        ]
    )

    query = await service.status_query(waiting, gateway.name)
    assert query is not None
    ((_operation, sent),) = gateway.calls
    assert (query.request, query.operation, query.unresolved) == (sent, ProviderOperation.COLLECT, True)
    captured = await service.status_query(done, "sandbox")
    assert captured is not None
    assert not captured.unresolved
    assert await service.status_query(waiting, "sandbox") is None  # not that provider's payment
    assert await service.status_query(uuid.uuid4(), gateway.name) is None


# ---------------------------------------------------------------- cash-out
async def test_cash_out_holds_then_captures() -> None:
    service, h = make_service()
    alice = h.new_user()
    await h.fund(alice, 10_000)
    result = await service.cash_out(a_command(alice, 4_000))
    body = result.body
    assert (body["status"], body["type"], body["payer_wallet_id"]) == (
        "CAPTURED",
        "cash_out",
        str(h.wallet_id(alice)),
    )
    assert [c["status"] for c in body["status_history"]] == ["INITIATED", "AUTHORIZED", "CAPTURED"]
    balance = await wallet(h, alice)
    assert (balance.posted, balance.held, balance.available) == (6_000, 0, 6_000)
    (hold,) = h.db.ledger.holds.values()
    assert hold.status == "captured"
    # We owe the provider what it paid out for us until its settlement.
    assert await posted(h, AccountKind.PROVIDER_CLEARING, "sandbox") == -4_000
    assert h.account_id(AccountKind.SETTLEMENT_BANK, "sandbox") is None  # nothing settled yet
    (payment,) = h.stored_payments()
    assert h.transaction_kinds(payment.id) == ["cash_out.capture"]
    user, provider = f"user:{alice}", "provider:sandbox"
    assert history(h) == [
        ("INITIATED", user),
        ("AUTHORIZED", user),
        ("CAPTURED", provider),
    ]
    assert h.audit_actions()[-2:] == ["payment.cash_out.authorized", "payment.cash_out.captured"]
    assert h.verify().ok
    assert h.metrics.named("amount_moved") == [("cash_out", "XOF", 4_000)]


async def test_a_declined_cash_out_releases_the_hold() -> None:
    gateway = ScriptedGateway(answers=[failed("insufficient_float")])
    service, h = make_service(gateways=[gateway])
    alice = h.new_user()
    await h.fund(alice, 10_000)
    entries_before = h.contents().entries
    result = await service.cash_out(a_command(alice, 4_000))
    assert (result.body["status"], result.body["failure_code"]) == ("FAILED", "insufficient_float")
    balance = await wallet(h, alice)
    assert (balance.posted, balance.held, balance.available) == (10_000, 0, 10_000)
    (hold,) = h.db.ledger.holds.values()
    assert hold.status == "released"
    assert h.contents().entries == entries_before
    (payment,) = h.stored_payments()
    assert (payment.status, payment.failure_code) == (PaymentStatus.FAILED, "insufficient_float")
    assert history(h) == [
        ("INITIATED", f"user:{alice}"),
        ("AUTHORIZED", f"user:{alice}"),
        ("FAILED", "provider:scripted"),
    ]
    assert h.audit.records[-1].outcome == "failure"
    assert h.verify().ok


@pytest.mark.parametrize("answer", [pending(), TimeoutError("read timed out")])
async def test_an_ambiguous_cash_out_stays_authorized_with_the_hold(answer: ScriptedAnswer) -> None:
    gateway = ScriptedGateway(answers=[answer])
    service, h = make_service(gateways=[gateway])
    alice = h.new_user()
    await h.fund(alice, 10_000)
    result = await service.cash_out(a_command(alice, 4_000))
    assert result.body["status"] == "AUTHORIZED"
    assert len(gateway.calls) == 1  # asked once, never retried blindly
    balance = await wallet(h, alice)
    assert (balance.posted, balance.held, balance.available) == (10_000, 4_000, 6_000)
    (hold,) = h.db.ledger.holds.values()
    assert hold.status == "active"
    (payment,) = h.stored_payments()
    assert payment.status is PaymentStatus.AUTHORIZED
    assert h.transaction_kinds(payment.id) == []
    assert h.metrics.named("payment_finished") == [("cash_out", "AUTHORIZED")]
    assert h.metrics.named("amount_moved") == []
    # A retry replays the recorded answer; the provider is not asked again.
    again = await service.cash_out(a_command(alice, 4_000))
    assert (again.replayed, again.body) == (True, result.body)
    assert len(gateway.calls) == 1


async def test_a_pending_cash_out_keeps_its_funds_reserved_from_the_next_one() -> None:
    gateway = ScriptedGateway(answers=[pending(), succeeded()])
    service, h = make_service(gateways=[gateway])
    alice = h.new_user()
    await h.fund(alice, 10_000)
    await service.cash_out(a_command(alice, 8_000))
    refused = await service.cash_out(a_command(alice, 5_000, idempotency_key="provider-key-0002"))
    assert (refused.outcome, refused.body["code"]) == (Outcome.FAILED, "insufficient_funds")
    assert len(gateway.calls) == 1
    ok = await service.cash_out(a_command(alice, 2_000, idempotency_key="provider-key-0003"))
    assert ok.body["status"] == "CAPTURED"
    balance = await wallet(h, alice)
    assert (balance.posted, balance.held, balance.available) == (8_000, 8_000, 0)
    assert h.verify().ok


async def test_a_cash_out_beyond_the_balance_is_refused_without_calling_the_provider() -> None:
    gateway = ScriptedGateway(answers=[succeeded()])
    service, h = make_service(gateways=[gateway])
    alice = h.new_user()
    await h.fund(alice, 100)
    before = h.contents()
    result = await service.cash_out(a_command(alice, 500))
    assert (result.outcome, result.body["code"]) == (Outcome.FAILED, "insufficient_funds")
    assert gateway.calls == []
    after = h.contents()
    assert (after.entries, after.holds, after.payments) == (before.entries, before.holds, before.payments)
    assert h.audit_actions()[-1] == "payment.cash_out.refused"
    again = await service.cash_out(a_command(alice, 500))
    assert (again.replayed, again.body) == (True, result.body)


async def test_providers_are_chosen_by_name() -> None:
    orange = ScriptedGateway(answers=[succeeded()], name="orange")
    service, h = make_service(gateways=[SandboxGateway(), orange], default_provider="sandbox")
    alice = h.new_user()
    result = await service.cash_in(a_command(alice, 100, provider="orange"))
    assert result.body["provider"] == "orange"
    assert len(orange.calls) == 1
    assert await posted(h, AccountKind.PROVIDER_CLEARING, "orange") == 100
    assert await posted(h, AccountKind.PROVIDER_CLEARING, "sandbox") is None


@pytest.mark.parametrize(
    ("changes", "error"),
    [({"provider": "wave"}, UnknownProvider), ({"currency": "EUR"}, WrongCurrency)],
)
async def test_provider_input_errors_raise_before_anything_is_stored(
    changes: dict[str, Any], error: type[Exception]
) -> None:
    service, h = make_service()
    alice = h.new_user()
    before = h.contents()
    with pytest.raises(error):
        await service.cash_in(a_command(alice, 100, **changes))
    with pytest.raises(error):
        await service.cash_out(a_command(alice, 100, **changes))
    assert h.contents() == before
    assert h.uow_factory.opened == 0

"""A FAILED payment is counted by cause (customer, provider, internal, risk): the payment
success SLO holds provider and internal failures against Kora, never a customer's decline."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from kora.observability import KoraMetrics
from kora.payments import ProviderMoveCommand
from kora.payments.domain.failures import FailureCause, failure_cause
from tests.fakes import ScriptedGateway, failed, make_service


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        ("payer_not_found", FailureCause.CUSTOMER),  # MoMo-style decline
        ("insufficient_funds", FailureCause.CUSTOMER),  # Wave- and card-style
        ("recipient_limit_exceeded", FailureCause.CUSTOMER),
        ("authorization_voided", FailureCause.CUSTOMER),  # the merchant let it go
        ("provider_unavailable:timeout", FailureCause.PROVIDER),  # prefix:detail codes
        ("acquirer_unavailable:breaker_open", FailureCause.PROVIDER),
        ("provider_unresolved", FailureCause.PROVIDER),
        ("authorization_unresolved", FailureCause.PROVIDER),
        ("reversed", FailureCause.PROVIDER),
        ("risk_denied", FailureCause.RISK),
        ("ledger_refused", FailureCause.INTERNAL),
        ("rejected_400", FailureCause.INTERNAL),  # the provider refused our request: our bug
        ("a_word_nobody_classified", FailureCause.INTERNAL),
        ("", FailureCause.INTERNAL),
        (None, FailureCause.INTERNAL),
    ],
)
def test_failure_codes_map_to_causes(code: str | None, cause: FailureCause) -> None:
    assert failure_cause(code) is cause


@pytest.mark.parametrize(
    ("code", "cause"), [("payer_not_found", "customer"), ("", "provider"), ("provider_unavailable:timeout", "provider")]
)
async def test_a_failed_cash_in_is_counted_with_its_cause(code: str, cause: str) -> None:
    service, h = make_service(gateways=[ScriptedGateway(answers=[failed(code)])])
    alice = h.new_user()
    command = ProviderMoveCommand(
        user_id=alice, amount=5_000, currency="XOF", idempotency_key=f"key-{uuid.uuid4()}", correlation_id="corr"
    )
    result = await service.cash_in(command)
    assert result.body["status"] == "FAILED"
    assert h.metrics.named("payment_failed") == [("cash_in", cause)]


def test_the_failure_counter_keeps_to_the_four_causes() -> None:
    registry = CollectorRegistry()
    metrics = KoraMetrics(registry)
    metrics.payment_failed("cash_in", "provider")
    metrics.payment_failed("cash_out", "customer")
    metrics.payment_failed("p2p", "+2250700000001")  # never a label: counted as internal
    text = generate_latest(registry).decode()
    assert 'kora_payment_failures_total{cause="provider",type="cash_in"} 1.0' in text
    assert 'kora_payment_failures_total{cause="customer",type="cash_out"} 1.0' in text
    assert 'kora_payment_failures_total{cause="internal",type="p2p"} 1.0' in text
    assert "2250700000001" not in text

"""The in-memory activity store computes the context the assessment reads: windows, holds
counted, denials not, devices, recipients, fan-in, cash-in and hours."""

from __future__ import annotations

from datetime import timedelta

from kora.risk import FixedPolicy, InMemoryRiskActivity, Outcome, PaymentType, RiskEngine, Usage, Window

from .factories import AT, make_policy, make_request
from .test_flags import FLAGS

POLICY = make_policy(flags=FLAGS)


def test_usage_per_window_counts_allowed_and_held_payments_but_not_denied_ones() -> None:
    activity = InMemoryRiskActivity()
    activity.record(make_request(amount=1_000, at=AT - timedelta(minutes=30)), Outcome.ALLOW)
    activity.record(make_request(amount=2_000, at=AT - timedelta(hours=5)), Outcome.REVIEW)  # held
    activity.record(make_request(amount=4_000, at=AT - timedelta(days=3)), Outcome.ALLOW)
    activity.record(make_request(amount=8_000, at=AT - timedelta(days=20)), Outcome.ALLOW)
    activity.record(make_request(amount=16_000, at=AT - timedelta(days=40)), Outcome.ALLOW)
    activity.record(make_request(amount=99_000, at=AT - timedelta(minutes=1)), Outcome.DENY)
    activity.record(make_request(amount=500, at=AT, type=PaymentType.MERCHANT), Outcome.ALLOW)
    context = activity.build(make_request(), POLICY)
    assert context.payer_usage == {
        Window.HOUR: Usage(1_000, 1),
        Window.DAY: Usage(3_000, 2),
        Window.WEEK: Usage(7_000, 3),
        Window.MONTH: Usage(15_000, 4),
    }


def test_per_recipient_usage_and_known_recipient() -> None:
    activity = InMemoryRiskActivity()
    activity.record(make_request(amount=1_000, payee_id="a", at=AT - timedelta(hours=2)), Outcome.ALLOW)
    activity.record(make_request(amount=3_000, payee_id="b", at=AT - timedelta(hours=2)), Outcome.ALLOW)
    to_a = activity.build(make_request(payee_id="a"), POLICY)
    assert to_a.recipient_usage[Window.DAY] == Usage(1_000, 1)
    assert to_a.known_recipient is True
    to_c = activity.build(make_request(payee_id="c"), POLICY)
    assert to_c.recipient_usage[Window.DAY] == Usage(0, 0)
    assert to_c.known_recipient is False


def test_device_first_seen_is_per_payer_and_kept_even_when_denied() -> None:
    activity = InMemoryRiskActivity()
    first = AT - timedelta(hours=3)
    activity.record(make_request(device_id="d9", at=first), Outcome.DENY)
    activity.record(make_request(device_id="d9", at=AT - timedelta(hours=1)), Outcome.ALLOW)
    assert activity.build(make_request(device_id="d9"), POLICY).device_first_seen == first
    assert activity.build(make_request(device_id="d9", payer_id="other"), POLICY).device_first_seen is None


def test_flag_inputs_follow_the_policy_windows() -> None:
    activity = InMemoryRiskActivity()
    for i, minutes in enumerate((10, 20, 90)):
        activity.record(make_request(payee_id=f"p{i}", at=AT - timedelta(minutes=minutes)), Outcome.ALLOW)
        activity.record(
            make_request(payer_id=f"s{i}", payee_id="mule", at=AT - timedelta(minutes=minutes)), Outcome.ALLOW
        )
    activity.record(make_request(type=PaymentType.CASH_IN, amount=7_000, at=AT - timedelta(minutes=100)), Outcome.ALLOW)
    activity.record(make_request(type=PaymentType.CASH_IN, amount=9_000, at=AT - timedelta(hours=3)), Outcome.ALLOW)
    context = activity.build(make_request(payee_id="mule"), POLICY)
    assert context.recent_recipients == {"p0", "p1"}  # fan-out window 60 min
    assert context.recent_senders_to_payee == {"s0", "s1"}  # fan-in window 60 min
    assert context.recent_cash_in == 7_000  # layering window 120 min
    assert context.recent_amounts == (1_000, 1_000, 1_000)  # p2p amounts within a day
    assert sum(context.hour_histogram) == 5
    assert sum(context.hour_amounts) == 3 * 1_000 + 7_000 + 9_000  # the payer's own payments only


async def test_the_engine_assesses_with_the_current_policy_and_the_store() -> None:
    activity = InMemoryRiskActivity()
    engine = RiskEngine(FixedPolicy(POLICY), activity)
    assert engine.policy_version == "test-1"
    for i in range(3):
        activity.record(make_request(payee_id=f"p{i}", at=AT - timedelta(minutes=5 * i)), Outcome.ALLOW)
    decision = await engine.assess(make_request(payee_id="p9"))
    assert decision.outcome is Outcome.REVIEW
    assert "flag.fan_out" in decision.rules
    assert decision.policy_version == "test-1"

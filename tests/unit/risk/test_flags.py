"""Each anomaly flag fires on its pattern and stays quiet just outside it; the score and its
thresholds turn flags into review or deny."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from kora.risk import Outcome, PaymentType, RiskContext, assess

from .factories import AT, make_policy, make_request

FLAGS: dict[str, Any] = {
    "new_device_high_amount": {"points": 40, "device_age_hours": 48, "min_amount": 5_000},
    "new_recipient_high_amount": {"points": 40, "min_amount": 5_000, "applies_to": ["p2p"]},
    "fan_out": {"points": 40, "window_minutes": 60, "distinct_recipients": 4, "applies_to": ["p2p"]},
    "fan_in_mule": {"points": 40, "window_minutes": 60, "distinct_senders": 4, "applies_to": ["p2p"]},
    "structuring": {"points": 40, "within_percent": 10, "min_prior": 2, "window": "day"},
    "layering": {"points": 40, "window_minutes": 120, "min_cash_in": 5_000, "cash_out_percent": 70,
                 "applies_to": ["cash_out"]},
    "unusual_hours": {"points": 40, "min_history": 20, "max_share_percent": 3, "neighbour_hours": 1,
                      "min_amount": 2_000},
}  # fmt: skip
POLICY = make_policy(flags=FLAGS)
# device_cooling is 24 h in the factory policy; a 36 h old device is out of cooling but still
# "new" for the flag (48 h), so the flag is tested without the cooled limits getting in the way.
CALM: dict[str, Any] = {"device_first_seen": AT - timedelta(days=30), "known_recipient": True}


def ctx(**kwargs: Any) -> RiskContext:
    return RiskContext(**{**CALM, **kwargs})


def fired(decision: Any, flag: str) -> bool:
    return f"flag.{flag}" in decision.rules


def test_new_device_high_amount() -> None:
    young = ctx(device_first_seen=AT - timedelta(hours=36))
    decision = assess(make_request(amount=6_000), young, POLICY)
    assert fired(decision, "new_device_high_amount")
    assert decision.outcome is Outcome.REVIEW
    assert decision.score == 40
    assert not fired(assess(make_request(amount=4_999), young, POLICY), "new_device_high_amount")
    assert not fired(assess(make_request(amount=6_000), ctx(), POLICY), "new_device_high_amount")
    never_seen = assess(make_request(amount=6_000), ctx(device_first_seen=None), POLICY)
    assert fired(never_seen, "new_device_high_amount")


def test_new_recipient_high_amount_only_for_its_payment_types() -> None:
    stranger = ctx(known_recipient=False)
    decision = assess(make_request(amount=5_000), stranger, POLICY)
    assert fired(decision, "new_recipient_high_amount")
    r = next(r for r in decision.reasons if r.rule == "flag.new_recipient_high_amount")
    assert (r.effect, r.points, r.limit, r.observed) == ("score", 40, 5_000, 5_000)
    assert not fired(assess(make_request(amount=4_999), stranger, POLICY), "new_recipient_high_amount")
    assert not fired(assess(make_request(amount=5_000), ctx(), POLICY), "new_recipient_high_amount")
    merchant = assess(make_request(amount=5_000, type=PaymentType.MERCHANT), stranger, POLICY)
    assert not fired(merchant, "new_recipient_high_amount")


def test_fan_out_counts_distinct_recipients_including_this_one() -> None:
    three = frozenset({"a", "b", "c"})
    assert fired(assess(make_request(payee_id="d"), ctx(recent_recipients=three), POLICY), "fan_out")
    assert not fired(assess(make_request(payee_id="a"), ctx(recent_recipients=three), POLICY), "fan_out")


def test_fan_in_counts_distinct_senders_to_the_payee() -> None:
    senders = frozenset({"s1", "s2", "s3"})
    decision = assess(make_request(payer_id="s4"), ctx(recent_senders_to_payee=senders), POLICY)
    assert fired(decision, "fan_in_mule")
    assert next(r for r in decision.reasons if r.rule == "flag.fan_in_mule").observed == 4
    assert not fired(assess(make_request(payer_id="s1"), ctx(recent_senders_to_payee=senders), POLICY), "fan_in_mule")


def test_structuring_needs_repeated_amounts_just_under_the_per_transaction_limit() -> None:
    # p2p per-transaction soft limit 10 000: the band is 9 000..10 000
    two_near = ctx(recent_amounts=(9_500, 9_900, 200))
    assert fired(assess(make_request(amount=9_000), two_near, POLICY), "structuring")
    assert not fired(assess(make_request(amount=8_999), two_near, POLICY), "structuring")
    assert not fired(assess(make_request(amount=9_500), ctx(recent_amounts=(9_500, 200)), POLICY), "structuring")


def test_layering_is_a_cash_out_of_most_of_a_recent_cash_in() -> None:
    cashed_in = ctx(recent_cash_in=8_000)
    assert fired(assess(make_request(amount=5_600, type=PaymentType.CASH_OUT), cashed_in, POLICY), "layering")
    assert not fired(assess(make_request(amount=5_599, type=PaymentType.CASH_OUT), cashed_in, POLICY), "layering")
    assert not fired(assess(make_request(amount=5_600, type=PaymentType.P2P), cashed_in, POLICY), "layering")
    small = ctx(recent_cash_in=4_999)
    assert not fired(assess(make_request(amount=4_999, type=PaymentType.CASH_OUT), small, POLICY), "layering")


def _daytime(count: int, amount: int) -> dict[str, tuple[int, ...]]:
    hours = [0] * 24
    spent = [0] * 24
    for i in range(count):
        hour = 9 + i % 9
        hours[hour] += 1
        spent[hour] += amount
    return {"hour_histogram": tuple(hours), "hour_amounts": tuple(spent)}


def test_unusual_hours_from_the_payers_spending_by_hour() -> None:
    night = AT.replace(hour=3)
    history = _daytime(30, 1_000)
    assert fired(assess(make_request(amount=2_000, at=night), ctx(**history), POLICY), "unusual_hours")
    assert not fired(
        assess(make_request(amount=2_000, at=AT.replace(hour=10)), ctx(**history), POLICY), "unusual_hours"
    )
    assert not fired(assess(make_request(amount=1_999, at=night), ctx(**history), POLICY), "unusual_hours")
    assert not fired(assess(make_request(amount=2_000, at=night), ctx(**_daytime(19, 1_000)), POLICY), "unusual_hours")
    # a neighbouring hour carrying more than 3 % of the spending makes 03:00 usual
    spent = list(history["hour_amounts"])
    spent[2] = 1_000
    usual = {**history, "hour_amounts": tuple(spent)}
    assert not fired(assess(make_request(amount=2_000, at=night), ctx(**usual), POLICY), "unusual_hours")


def test_score_thresholds_decide_review_and_deny() -> None:
    two = ctx(known_recipient=False, device_first_seen=AT - timedelta(hours=36))
    review = assess(make_request(amount=6_000), two, POLICY)
    assert (review.score, review.outcome) == (80, Outcome.REVIEW)
    three = ctx(known_recipient=False, device_first_seen=AT - timedelta(hours=36), recent_recipients=frozenset("abc"))
    deny = assess(make_request(amount=6_000, payee_id="z"), three, POLICY)
    assert (deny.score, deny.outcome) == (120, Outcome.DENY)
    assert {r.rule for r in deny.reasons} == {
        "flag.new_device_high_amount", "flag.new_recipient_high_amount", "flag.fan_out"
    }  # fmt: skip


def test_a_flag_below_the_review_threshold_is_kept_as_a_reason_but_allows() -> None:
    low = dict(FLAGS, new_recipient_high_amount={"points": 10, "min_amount": 5_000})
    decision = assess(make_request(amount=6_000), ctx(known_recipient=False), make_policy(flags=low))
    assert decision.outcome is Outcome.ALLOW
    assert decision.score == 10
    assert fired(decision, "new_recipient_high_amount")

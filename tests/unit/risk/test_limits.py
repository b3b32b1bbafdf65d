"""Every limit: per-transaction, amount per window, count per window, per-recipient — soft
sends to review, hard denies — and device cooling, currency and tier refusals."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kora.risk import Outcome, PaymentType, RiskContext, RiskRequestError, Threshold, Usage, Window, assess

from .factories import AT, make_policy, make_request

POLICY = make_policy()
# An old device: no cooling unless a test asks for it.
SEASONED = {"device_first_seen": AT - timedelta(days=30), "known_recipient": True}


def ctx(**kwargs: object) -> RiskContext:
    return RiskContext(**{**SEASONED, **kwargs})  # type: ignore[arg-type]


def reason(decision: object, rule: str) -> object:
    return next(r for r in decision.reasons if r.rule == rule)  # type: ignore[attr-defined]


def test_a_payment_under_every_limit_is_allowed_with_no_reason() -> None:
    decision = assess(make_request(amount=1_000), ctx(), POLICY)
    assert decision.outcome is Outcome.ALLOW
    assert decision.reasons == ()
    assert decision.score == 0
    assert decision.policy_version == "test-1"


@pytest.mark.parametrize(
    ("amount", "outcome", "limit"),
    [(10_000, Outcome.ALLOW, None), (10_001, Outcome.REVIEW, 10_000), (20_000, Outcome.REVIEW, 10_000),
     (20_001, Outcome.DENY, 20_000)],
)  # fmt: skip
def test_per_transaction_soft_reviews_and_hard_denies(amount: int, outcome: Outcome, limit: int | None) -> None:
    decision = assess(make_request(amount=amount), ctx(), POLICY)
    assert decision.outcome is outcome
    if limit is None:
        assert "limit.per_transaction" not in decision.rules
    else:
        r = reason(decision, "limit.per_transaction")
        assert (r.limit, r.observed, r.effect, r.window) == (limit, amount, outcome.label, None)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("window", "soft", "hard"),
    [(Window.HOUR, 30_000, 40_000), (Window.DAY, 50_000, 60_000), (Window.WEEK, 70_000, 80_000),
     (Window.MONTH, 90_000, 100_000)],
)  # fmt: skip
def test_amount_caps_in_each_window_count_what_was_already_used(window: Window, soft: int, hard: int) -> None:
    rule = f"limit.amount.{window.value}"
    at_soft = ctx(payer_usage={window: Usage(amount=soft - 1_000, count=1)})
    assert rule not in assess(make_request(amount=1_000), at_soft, POLICY).rules
    review = assess(make_request(amount=1_001), at_soft, POLICY)
    assert review.outcome is Outcome.REVIEW
    r = reason(review, rule)
    assert (r.limit, r.observed, r.window, r.effect) == (soft, soft + 1, window.value, "review")  # type: ignore[attr-defined]
    deny = assess(make_request(amount=1_001), ctx(payer_usage={window: Usage(amount=hard - 1_000)}), POLICY)
    assert deny.outcome is Outcome.DENY
    assert reason(deny, rule).limit == hard  # type: ignore[attr-defined]


@pytest.mark.parametrize(("window", "soft", "hard"), [(Window.HOUR, 3, 5), (Window.DAY, 8, 10)])
def test_count_caps_per_hour_and_day(window: Window, soft: int, hard: int) -> None:
    rule = f"limit.count.{window.value}"
    assert rule not in assess(make_request(), ctx(payer_usage={window: Usage(amount=1, count=soft - 1)}), POLICY).rules
    review = assess(make_request(), ctx(payer_usage={window: Usage(amount=1, count=soft)}), POLICY)
    assert review.outcome is Outcome.REVIEW
    assert reason(review, rule).observed == soft + 1  # type: ignore[attr-defined]
    deny = assess(make_request(), ctx(payer_usage={window: Usage(amount=1, count=hard)}), POLICY)
    assert deny.outcome is Outcome.DENY


def test_per_recipient_cap_counts_only_this_payee() -> None:
    rule = "limit.per_recipient.day"
    used_elsewhere = ctx(payer_usage={Window.DAY: Usage(amount=30_000, count=3)})
    assert rule not in assess(make_request(amount=5_000), used_elsewhere, POLICY).rules
    with_payee = ctx(
        payer_usage={Window.DAY: Usage(amount=30_000, count=3)},
        recipient_usage={Window.DAY: Usage(amount=30_000, count=3)},
    )
    review = assess(make_request(amount=5_000), with_payee, POLICY)
    assert review.outcome is Outcome.REVIEW
    assert (reason(review, rule).limit, reason(review, rule).observed) == (25_000, 35_000)  # type: ignore[attr-defined]
    deny = assess(make_request(amount=5_001), with_payee, POLICY)
    assert deny.outcome is Outcome.DENY


def test_cash_out_is_stricter_than_p2p_in_the_policy() -> None:
    amount = 8_000
    assert assess(make_request(amount=amount), ctx(), POLICY).outcome is Outcome.ALLOW
    cash_out = assess(make_request(amount=amount, type=PaymentType.CASH_OUT), ctx(), POLICY)
    assert cash_out.outcome is Outcome.REVIEW
    assert reason(cash_out, "limit.per_transaction").limit == 5_000  # type: ignore[attr-defined]


def test_a_new_device_has_its_amount_limits_cooled() -> None:
    # 6 000 is under the 10 000 soft limit, but above its 50 % while the device is cooling.
    for first_seen in (None, AT - timedelta(hours=23)):
        decision = assess(make_request(amount=6_000), ctx(device_first_seen=first_seen), POLICY)
        assert decision.outcome is Outcome.REVIEW
        r = reason(decision, "limit.per_transaction")
        assert (r.limit, r.cooled) == (5_000, True)  # type: ignore[attr-defined]
    cooled_window = assess(
        make_request(amount=1_000), ctx(device_first_seen=None, payer_usage={Window.DAY: Usage(amount=29_500)}), POLICY
    )
    # day: soft 50 000 / hard 60 000, cooled to 25 000 / 30 000: 30 500 crosses the cooled hard limit
    r = reason(cooled_window, "limit.amount.day")
    assert (r.limit, r.effect, r.cooled) == (30_000, "deny", True)  # type: ignore[attr-defined]


def test_device_cooling_ends_after_its_hours_and_does_not_touch_counts() -> None:
    after = ctx(device_first_seen=AT - timedelta(hours=24))
    assert assess(make_request(amount=6_000), after, POLICY).outcome is Outcome.ALLOW
    counts = assess(make_request(), ctx(device_first_seen=None, payer_usage={Window.HOUR: Usage(1, 2)}), POLICY)
    assert "limit.count.hour" not in counts.rules


def test_every_breached_limit_is_a_reason_and_the_most_severe_wins() -> None:
    context = ctx(payer_usage={Window.HOUR: Usage(amount=35_000, count=5)})
    decision = assess(make_request(amount=15_000), context, POLICY)
    assert decision.outcome is Outcome.DENY
    assert {"limit.per_transaction", "limit.amount.hour", "limit.count.hour"} <= decision.rules
    effects = {r.rule: r.effect for r in decision.reasons}
    assert effects["limit.per_transaction"] == "review"
    assert effects["limit.amount.hour"] == "deny"


def test_a_currency_or_tier_the_policy_does_not_cover_is_denied() -> None:
    currency = assess(make_request(currency="EUR"), ctx(), POLICY)
    assert (currency.outcome, currency.rules) == (Outcome.DENY, frozenset({"policy.currency"}))
    tier = assess(make_request(tier="tier9"), ctx(), POLICY)
    assert (tier.outcome, tier.rules) == (Outcome.DENY, frozenset({"policy.tier"}))


def test_decision_serialises_every_reason() -> None:
    decision = assess(make_request(amount=15_000), ctx(), POLICY)
    data = decision.as_dict()
    assert data["outcome"] == "review"
    assert data["policy_version"] == "test-1"
    assert data["reasons"] == [
        {"rule": "limit.per_transaction", "effect": "review", "limit": 10_000, "observed": 15_000,
         "window": None, "points": 0, "cooled": False}
    ]  # fmt: skip


@pytest.mark.parametrize(
    "changes",
    [{"amount": 0}, {"amount": -5}, {"amount": 10.0}, {"amount": True}, {"currency": "ZZZ"},
     {"at": AT.replace(tzinfo=None)}, {"payer_id": ""}, {"device_id": ""}, {"tier": ""}],
)  # fmt: skip
def test_a_request_the_assessment_cannot_read_is_refused(changes: dict[str, object]) -> None:
    with pytest.raises(RiskRequestError):
        make_request(**changes)  # type: ignore[arg-type]


def test_cooling_a_narrow_soft_band_keeps_the_hard_limit() -> None:
    assert Threshold(soft=10, hard=11).scaled(50) == Threshold(soft=None, hard=5)
    assert Threshold(soft=10_000, hard=20_000).scaled(50) == Threshold(soft=5_000, hard=10_000)
    assert Threshold(soft=7).scaled(50) == Threshold(soft=3)

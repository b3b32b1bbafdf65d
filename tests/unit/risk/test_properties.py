"""Properties of `assess` over generated requests and contexts (hypothesis)."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from kora.risk import DEFAULT_POLICY_PATH, Outcome, PaymentType, RiskContext, Usage, Window, assess, load_policy

from .factories import AT, make_policy, make_request

TEST_POLICY = make_policy()
SHIPPED = load_policy(DEFAULT_POLICY_PATH)

types = st.sampled_from(list(PaymentType))
usages = st.builds(Usage, amount=st.integers(0, 3_000_000), count=st.integers(0, 200))
contexts = st.builds(
    RiskContext,
    payer_usage=st.dictionaries(st.sampled_from(list(Window)), usages),
    recipient_usage=st.dictionaries(st.sampled_from(list(Window)), usages),
    device_first_seen=st.none() | st.integers(0, 24 * 60).map(lambda h: AT - timedelta(hours=h)),
    known_recipient=st.booleans(),
    recent_recipients=st.frozensets(st.sampled_from([f"p{i}" for i in range(10)])),
    recent_senders_to_payee=st.frozensets(st.sampled_from([f"s{i}" for i in range(10)])),
    recent_amounts=st.lists(st.integers(1, 2_000_000), max_size=6).map(tuple),
    recent_cash_in=st.integers(0, 2_000_000),
    hour_histogram=st.lists(st.integers(0, 20), min_size=24, max_size=24).map(tuple),
    hour_amounts=st.lists(st.integers(0, 400_000), min_size=24, max_size=24).map(tuple),
)


@given(
    amount=st.integers(1, 5_000),
    used=st.integers(0, 20_000),
    count=st.integers(0, 2),
    payment_type=types,
    tier=st.sampled_from(["tier0", "tier1"]),
)
def test_a_payment_under_every_cap_without_flags_is_always_allowed(
    amount: int, used: int, count: int, payment_type: PaymentType, tier: str
) -> None:
    # The factory policy has no flags; every window's usage stays under its soft cap.
    context = RiskContext(
        payer_usage={w: Usage(amount=used, count=count) for w in Window},
        recipient_usage={Window.DAY: Usage(amount=min(used, 15_000), count=count)},
        device_first_seen=AT - timedelta(days=10),
    )
    decision = assess(make_request(amount=amount, type=payment_type, tier=tier), context, TEST_POLICY)
    assert decision.outcome is Outcome.ALLOW
    assert decision.reasons == ()


@given(
    amount=st.integers(1, 1_000_000),
    extra=st.integers(1, 5_000_000),
    context=contexts,
    payment_type=types,
    tier=st.sampled_from(["tier0", "tier1", "tier2"]),
)
def test_adding_amount_never_turns_a_deny_into_an_allow(
    amount: int, extra: int, context: RiskContext, payment_type: PaymentType, tier: str
) -> None:
    smaller = assess(make_request(amount=amount, type=payment_type, tier=tier), context, SHIPPED)
    larger = assess(make_request(amount=amount + extra, type=payment_type, tier=tier), context, SHIPPED)
    if smaller.outcome is Outcome.DENY:
        assert larger.outcome is not Outcome.ALLOW
    if smaller.outcome is not Outcome.ALLOW and not smaller.rules & {"flag.structuring"}:
        assert larger.outcome >= Outcome.REVIEW


@given(amount=st.integers(1, 5_000_000), context=contexts, payment_type=types)
def test_the_outcome_is_the_most_severe_of_its_reasons_and_score(
    amount: int, context: RiskContext, payment_type: PaymentType
) -> None:
    decision = assess(make_request(amount=amount, type=payment_type, tier="tier1"), context, SHIPPED)
    assert decision.policy_version == SHIPPED.version
    assert decision.score == sum(r.points for r in decision.reasons)
    expected = max(
        [SHIPPED.score.outcome(decision.score)]
        + [Outcome[r.effect.upper()] for r in decision.reasons if r.effect != "score"]
    )
    assert decision.outcome is expected
    for reason in decision.reasons:
        if reason.rule.startswith("limit."):
            assert reason.limit is not None
            assert reason.observed > reason.limit

"""Every matching outcome and reason, the fee schedule, the fallback and the grace period."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta

import pytest

from kora.reconciliation import (
    Direction,
    FeeRule,
    InternalTxn,
    LineStatus,
    LineType,
    MatchKey,
    MatchResult,
    MatchRules,
    Outcome,
    Reason,
    ReportLine,
    Resolution,
    match,
)
from tests.unit.reconciliation.factories import AS_OF, START, line, txn

RULES = MatchRules(fees={LineType.CASH_IN: FeeRule(bps=100), LineType.CASH_OUT: FeeRule(bps=50, min_fee=25)})


def outcomes(results: list[MatchResult]) -> list[tuple[Outcome, tuple[Reason, ...]]]:
    return [(r.outcome, r.reasons) for r in results]


def test_matched_by_provider_txn_id_and_ready_to_settle() -> None:
    (result,) = match([line()], [txn()], rules=RULES, as_of=AS_OF)
    assert (result.outcome, result.matched_by, result.auto_resolution) == (
        Outcome.MATCHED,
        MatchKey.PROVIDER_TXN_ID,
        Resolution.SETTLE,
    )
    assert result.internal == txn()


def test_matched_by_our_reference_then_by_parent_id() -> None:
    (by_reference,) = match([line(provider_txn_id="other")], [txn()], rules=RULES, as_of=AS_OF)
    assert by_reference.matched_by is MatchKey.OUR_REFERENCE
    card = txn(type="card", provider_ref="auth_1", our_reference=None, captured_amount=10_000)
    capture = line(
        type=LineType.CARD, provider_txn_id="cap_1", provider_parent_id="auth_1", our_reference=None, fee=None
    )
    (by_parent,) = match([capture], [card], rules=RULES, as_of=AS_OF)
    assert (by_parent.outcome, by_parent.matched_by) == (Outcome.MATCHED, MatchKey.PROVIDER_PARENT_ID)


@pytest.mark.parametrize(
    ("report_line", "internal", "reasons"),
    [
        (line(amount=10_001, fee=100), txn(), (Reason.AMOUNT,)),
        (line(direction=Direction.OUT), txn(), (Reason.AMOUNT,)),
        (line(fee=120), txn(), (Reason.FEE,)),
        (line(currency="XAF"), txn(), (Reason.CURRENCY,)),
        (line(), txn(status="FAILED"), (Reason.STATUS,)),
        (line(status=LineStatus.FAILED, fee=0), txn(), (Reason.STATUS,)),
        (line(amount=9_000, fee=90), txn(status="FAILED"), (Reason.AMOUNT, Reason.STATUS)),
    ],
)
def test_mismatch_reasons(report_line: ReportLine, internal: InternalTxn, reasons: tuple[Reason, ...]) -> None:
    (result,) = match([report_line], [internal], rules=RULES, as_of=AS_OF)
    assert (result.outcome, result.reasons) == (Outcome.MISMATCH, reasons)
    assert result.reason is reasons[0]


def test_fee_schedule_minimum_and_unchecked_types() -> None:
    cash_out = txn(type="cash_out", amount=1_000)
    ok = line(type=LineType.CASH_OUT, amount=1_000, direction=Direction.OUT, fee=25)
    assert outcomes(match([ok], [cash_out], rules=RULES, as_of=AS_OF)) == [(Outcome.MATCHED, ())]
    below_minimum = line(type=LineType.CASH_OUT, amount=1_000, direction=Direction.OUT, fee=5)
    assert outcomes(match([below_minimum], [cash_out], rules=RULES, as_of=AS_OF)) == [(Outcome.MISMATCH, (Reason.FEE,))]
    assert outcomes(match([line(fee=999)], [txn()], rules=MatchRules(), as_of=AS_OF)) == [(Outcome.MATCHED, ())]
    assert FeeRule(bps=180, fixed=25).fee_for(6_000) == 133
    assert FeeRule(bps=100, max_fee=50).fee_for(1_000_000) == 50
    with pytest.raises(ValueError, match="non-negative"):
        FeeRule(bps=-1)


def test_failed_lines_match_failed_payments_without_settling() -> None:
    failed = line(status=LineStatus.FAILED, fee=0)
    (result,) = match([failed], [txn(status="FAILED", provider_ref="M1")], rules=RULES, as_of=AS_OF)
    assert (result.outcome, result.auto_resolution) == (Outcome.MATCHED, Resolution.NONE)


def test_reversal_lines() -> None:
    original = line()
    reversal = line(
        provider_txn_id="M1-R", type=LineType.REVERSAL, status=LineStatus.REVERSED, direction=Direction.OUT, fee=-100
    )
    matched = match([original, reversal], [txn(status="REVERSED")], rules=RULES, as_of=AS_OF)
    assert outcomes(matched) == [(Outcome.MATCHED, ()), (Outcome.MATCHED, ())]
    assert matched[1].matched_by is MatchKey.OUR_REFERENCE
    behind = match([original, reversal], [txn()], rules=RULES, as_of=AS_OF)
    assert outcomes(behind) == [(Outcome.MATCHED, ()), (Outcome.MISMATCH, (Reason.STATUS,))]
    assert behind[1].auto_resolution is Resolution.QUERY_STATUS
    wrong_fee = match([line(**{**_fields(reversal), "fee": 0})], [txn(status="REVERSED")], rules=RULES, as_of=AS_OF)
    assert outcomes(wrong_fee) == [(Outcome.MISMATCH, (Reason.FEE,))]
    no_refund = MatchRules(fees=RULES.fees, reversal_refunds_fee=False)
    assert outcomes(
        match([line(**{**_fields(reversal), "fee": 0})], [txn(status="REVERSED")], rules=no_refund, as_of=AS_OF)
    ) == [(Outcome.MATCHED, ())]


def test_chargeback_lines() -> None:
    card = txn(type="card", provider_ref="auth_1", captured_amount=8_000)
    chargeback = line(
        provider_txn_id="auth_1-CB1",
        provider_parent_id="auth_1",
        type=LineType.CHARGEBACK,
        status=LineStatus.CHARGED_BACK,
        amount=8_000,
        direction=Direction.OUT,
        fee=0,
    )
    assert outcomes(match([chargeback], [card], rules=RULES, as_of=AS_OF)) == [(Outcome.MISMATCH, (Reason.STATUS,))]
    charged = txn(type="card", provider_ref="auth_1", captured_amount=8_000, status="CHARGED_BACK")
    assert outcomes(match([chargeback], [charged], rules=RULES, as_of=AS_OF)) == [(Outcome.MATCHED, ())]
    too_much = line(**{**_fields(chargeback), "amount": 8_001})
    assert outcomes(match([too_much], [charged], rules=RULES, as_of=AS_OF)) == [(Outcome.MISMATCH, (Reason.AMOUNT,))]


def test_duplicates() -> None:
    twice = match([line(), line(line_number=3)], [txn()], rules=RULES, as_of=AS_OF)
    assert outcomes(twice) == [(Outcome.MATCHED, ()), (Outcome.MISMATCH, (Reason.DUPLICATE,))]
    assert twice[1].internal == txn()
    assert twice[1].auto_resolution is Resolution.REVIEW
    other_id = match([line(), line(provider_txn_id="M9", line_number=3)], [txn()], rules=RULES, as_of=AS_OF)
    assert outcomes(other_id) == [(Outcome.MATCHED, ()), (Outcome.MISMATCH, (Reason.DUPLICATE,))]


def test_missing_internal() -> None:
    unknown = match([line(provider_txn_id="M7", our_reference="ref-7")], [], rules=RULES, as_of=AS_OF)
    assert [(r.outcome, r.internal, r.auto_resolution) for r in unknown] == [
        (Outcome.MISSING_INTERNAL, None, Resolution.QUERY_STATUS)
    ]
    pending = txn(status="INITIATED", provider_ref=None, captured_at=None, settlement_due=None)
    (late,) = match([line()], [pending], rules=RULES, as_of=AS_OF)
    assert (late.outcome, late.internal, late.auto_resolution) == (
        Outcome.MISSING_INTERNAL,
        pending,
        Resolution.QUERY_STATUS,
    )
    (failed,) = match([line(provider_txn_id="M7", status=LineStatus.FAILED, fee=0)], [], rules=RULES, as_of=AS_OF)
    assert (failed.outcome, failed.auto_resolution) == (Outcome.MISSING_INTERNAL, Resolution.REVIEW)


def test_a_line_does_not_match_a_payment_of_another_type() -> None:
    refund = line(type=LineType.REFUND, provider_txn_id="ref_1", direction=Direction.OUT, fee=None)
    results = match([refund], [txn(type="card", provider_ref="auth_1")], rules=RULES, as_of=AS_OF)
    assert [r.outcome for r in results] == [Outcome.MISSING_INTERNAL, Outcome.MISSING_PROVIDER]


def test_missing_provider_only_after_settlement_and_grace() -> None:
    due = START + timedelta(days=1)
    internal = [txn(settlement_due=due)]
    for as_of, outcome in [
        (START + timedelta(hours=1), Outcome.PENDING),
        (due + timedelta(hours=23), Outcome.PENDING),
        (due + timedelta(days=1), Outcome.MISSING_PROVIDER),
    ]:
        (result,) = match([], internal, rules=RULES, as_of=as_of)
        assert (result.outcome, result.line) == (outcome, None)
    (waiting,) = match([], internal, rules=RULES, as_of=START)
    assert waiting.auto_resolution is Resolution.WAIT


def test_unreported_failed_or_unfinished_payments_are_left_out() -> None:
    internal = [txn(payment_id="a", status="FAILED"), txn(payment_id="b", status="INITIATED", captured_at=None)]
    assert match([], internal, rules=RULES, as_of=AS_OF) == []


def test_fallback_by_amount_within_the_window() -> None:
    unknown_ids = line(provider_txn_id="X1", our_reference=None, occurred_at=START + timedelta(minutes=90))
    internal = txn(provider_ref=None, our_reference="ref-1")
    (result,) = match([unknown_ids], [internal], rules=RULES, as_of=AS_OF)
    assert (result.outcome, result.matched_by) == (Outcome.MATCHED, MatchKey.FALLBACK)
    too_far = line(**{**_fields(unknown_ids), "occurred_at": START + timedelta(hours=3)})
    assert [r.outcome for r in match([too_far], [internal], rules=RULES, as_of=AS_OF)] == [
        Outcome.MISSING_INTERNAL,
        Outcome.MISSING_PROVIDER,
    ]
    off = MatchRules(fees=RULES.fees, fallback_window=None)
    assert match([unknown_ids], [internal], rules=off, as_of=AS_OF)[0].outcome is Outcome.MISSING_INTERNAL


def test_an_ambiguous_fallback_matches_nothing() -> None:
    unknown_ids = line(provider_txn_id="X1", our_reference=None)
    two = [txn(payment_id="a", provider_ref=None), txn(payment_id="b", provider_ref=None, our_reference="ref-2")]
    results = match([unknown_ids], two, rules=RULES, as_of=AS_OF)
    assert [r.outcome for r in results] == [
        Outcome.MISSING_INTERNAL,
        Outcome.MISSING_PROVIDER,
        Outcome.MISSING_PROVIDER,
    ]
    assert "ambiguous" in results[0].detail
    assert results[0].auto_resolution is Resolution.QUERY_STATUS
    one_payment_two_lines = [unknown_ids, line(provider_txn_id="X2", our_reference=None, line_number=3)]
    results = match(one_payment_two_lines, [txn(provider_ref=None)], rules=RULES, as_of=AS_OF)
    assert [r.outcome for r in results] == [
        Outcome.MISSING_INTERNAL,
        Outcome.MISSING_INTERNAL,
        Outcome.MISSING_PROVIDER,
    ]


def test_a_payment_known_under_another_provider_id_is_not_a_fallback_candidate() -> None:
    (first, second) = match(
        [line(provider_txn_id="X1", our_reference=None)], [txn(provider_ref="M1")], rules=RULES, as_of=AS_OF
    )
    assert (first.outcome, second.outcome) == (Outcome.MISSING_INTERNAL, Outcome.MISSING_PROVIDER)


def test_as_of_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        match([], [], rules=RULES, as_of=START.replace(tzinfo=None))


def _fields(report_line: ReportLine) -> dict[str, object]:
    return asdict(report_line)

"""The KPI domain: ranges, failure causes, exact percentiles (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kora.kpis import FailureCause, InvalidRange, failure_cause, parse_range
from kora.kpis.domain import nearest_rank, ratio

NOW = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)


def test_the_default_range_is_today_in_utc() -> None:
    window = parse_range(None, None, now=NOW)
    assert (window.start, window.end) == (datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 3, 11, tzinfo=UTC))
    assert window.whole_days


def test_dates_are_whole_days_with_to_included_and_datetimes_are_instants() -> None:
    days = parse_range("2026-03-01", "2026-03-03", now=NOW)
    assert (days.start, days.end) == (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC))
    assert (days.first_day.isoformat(), days.last_day.isoformat()) == ("2026-03-01", "2026-03-03")
    instants = parse_range("2026-03-10T08:00:00+02:00", "2026-03-10T09:00:00", now=NOW)
    assert instants.start == datetime(2026, 3, 10, 6, tzinfo=UTC)  # converted to UTC
    assert instants.end == datetime(2026, 3, 10, 9, tzinfo=UTC)  # no offset: UTC
    assert not instants.whole_days
    assert parse_range(None, "2026-03-05", now=NOW).start == datetime(2026, 3, 5, tzinfo=UTC)
    assert parse_range("2026-03-05T10:00:00Z", None, now=NOW).end == datetime(2026, 3, 6, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw_from", "raw_to"),
    [
        ("nope", None),
        ("2026-02-30", None),
        ("2026-03-10", "2026-03-09"),
        ("2026-01-01", "2026-04-03"),
        ("x" * 41, None),
    ],
)
def test_bad_ranges_are_refused(raw_from: str, raw_to: str | None) -> None:
    with pytest.raises(InvalidRange):
        parse_range(raw_from, raw_to, now=NOW)


def test_ninety_two_days_is_the_longest_range() -> None:
    window = parse_range("2026-01-01", "2026-04-02", now=NOW)  # both days included
    assert (window.end - window.start).days == 92


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        ("insufficient_funds", FailureCause.DECLINED),
        ("payer_not_found", FailureCause.DECLINED),
        ("provider_declined", FailureCause.DECLINED),
        ("do_not_honor", FailureCause.DECLINED),
        ("provider_unavailable:connect_error", FailureCause.PROVIDER_ERROR),
        ("provider_unresolved", FailureCause.PROVIDER_ERROR),
        ("rejected_400", FailureCause.PROVIDER_ERROR),
        ("acquirer_unavailable", FailureCause.PROVIDER_ERROR),
        ("voided", FailureCause.CANCELLED),
        ("authorization_expired", FailureCause.CANCELLED),
        ("risk_denied", FailureCause.RISK),
        ("risk_rejected", FailureCause.RISK),
        ("something_new", FailureCause.OTHER),
        (None, FailureCause.OTHER),
    ],
)
def test_failure_codes_read_as_causes(code: str | None, cause: FailureCause) -> None:
    assert failure_cause(code) is cause


def test_nearest_rank_percentiles() -> None:
    assert nearest_rank([], 50) is None
    assert nearest_rank([7200, 10800, 18000], 50) == 10800
    assert nearest_rank([7200, 10800, 18000], 95) == 18000
    assert nearest_rank(list(range(1, 101)), 99) == 99
    assert ratio(1, 3) == 0.333333
    assert ratio(1, 0) is None


@given(st.lists(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=200), st.integers(1, 100))
def test_nearest_rank_is_the_smallest_value_covering_the_percentile(values: list[int], q: int) -> None:
    ordered = sorted(values)
    found = nearest_rank(ordered, q)
    assert found is not None
    assert sum(v <= found for v in ordered) * 100 >= q * len(ordered)
    assert sum(v < found for v in ordered) * 100 < q * len(ordered)
    # The integer rank the SQL read side uses, (n * q + 99) // 100, is the same rank.
    assert ordered[(len(ordered) * q + 99) // 100 - 1] == found

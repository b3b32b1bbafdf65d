"""A reservation's status moves one way: reserved/held → committed or released; repeating a
move is a no-op, contradicting one is an error; only reserved, held and committed count."""

from __future__ import annotations

import pytest

from kora.risk import Outcome, ReservationError, ReservationStatus
from kora.risk.domain.reservation import committed, released

S = ReservationStatus


def test_each_outcome_has_its_status_and_only_live_reservations_count() -> None:
    assert [S.for_outcome(o) for o in Outcome] == [S.RESERVED, S.HELD, S.DENIED]
    assert {s for s in S if s.counts} == {S.RESERVED, S.HELD, S.COMMITTED}


@pytest.mark.parametrize("start", [S.RESERVED, S.HELD, S.COMMITTED])
def test_commit_from_a_live_reservation_or_again(start: ReservationStatus) -> None:
    assert committed(start) is S.COMMITTED


@pytest.mark.parametrize("start", [S.RELEASED, S.DENIED])
def test_commit_after_release_or_denial_is_refused(start: ReservationStatus) -> None:
    with pytest.raises(ReservationError):
        committed(start)


@pytest.mark.parametrize(("start", "end"), [(S.RESERVED, S.RELEASED), (S.HELD, S.RELEASED), (S.RELEASED, S.RELEASED),
                                            (S.DENIED, S.DENIED)])  # fmt: skip
def test_release_frees_a_live_reservation_and_leaves_a_denial_alone(
    start: ReservationStatus, end: ReservationStatus
) -> None:
    assert released(start) is end


def test_a_captured_payment_is_not_released() -> None:
    with pytest.raises(ReservationError):
        released(S.COMMITTED)

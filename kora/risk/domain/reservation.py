"""A payment's reservation against the payer's limits, and how its status may change.

An assessed payment is recorded with its decision: allowed → `reserved`, reviewed → `held`
(the money is held until a reviewer decides), denied → `denied`. A reserved or held payment
counts in every window until it is `released` (the payment failed, or a reviewer rejected it);
once `committed` (captured) it counts for good. Commit and release are idempotent: repeating
one is a no-op; contradicting one is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from kora.risk.domain.model import Decision, Outcome


class ReservationStatus(StrEnum):
    RESERVED = "reserved"
    HELD = "held"
    COMMITTED = "committed"
    RELEASED = "released"
    DENIED = "denied"

    @property
    def counts(self) -> bool:
        """Whether a payment in this status counts in the payer's windows."""
        return self in _COUNTED

    @classmethod
    def for_outcome(cls, outcome: Outcome) -> ReservationStatus:
        return {Outcome.ALLOW: cls.RESERVED, Outcome.REVIEW: cls.HELD, Outcome.DENY: cls.DENIED}[outcome]


_COUNTED = frozenset({ReservationStatus.RESERVED, ReservationStatus.HELD, ReservationStatus.COMMITTED})


class ReservationError(ValueError):
    """A reservation that does not exist, or a change its status forbids (commit a released
    payment, release a committed one, reuse a payment id for another request)."""


def committed(current: ReservationStatus) -> ReservationStatus:
    """The status after a commit (the payment was captured)."""
    if current in (ReservationStatus.RESERVED, ReservationStatus.HELD, ReservationStatus.COMMITTED):
        return ReservationStatus.COMMITTED
    raise ReservationError(f"a {current.value} payment cannot be committed")


def released(current: ReservationStatus) -> ReservationStatus:
    """The status after a release (the payment failed or was rejected). Releasing a denied
    payment changes nothing: it never counted."""
    if current in (ReservationStatus.RESERVED, ReservationStatus.HELD, ReservationStatus.RELEASED):
        return ReservationStatus.RELEASED
    if current is ReservationStatus.DENIED:
        return current
    raise ReservationError(f"a {current.value} payment cannot be released")


@dataclass(frozen=True, slots=True)
class Reservation:
    """The answer to assess-and-reserve: the decision, the reservation's status, and whether it
    was an earlier call's answer (the same payment id assessed again)."""

    payment_id: str
    decision: Decision
    status: ReservationStatus
    replayed: bool = False

"""Which behaviour a request gets: pure, deterministic functions of the request.

Order: an exact-amount rule of the provider, then a magic MSISDN (or card number) ending in
``0000`` + a two-digit code, then the provider's probabilistic mix drawn from a hash of
(seed, reference), else plain success. The table is in README.md.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from kora.simulator.config import ApiStyle, BehaviourMix


class Scenario(enum.StrEnum):
    SUCCEED = "succeed"
    DECLINE = "decline"
    TIMEOUT = "timeout"  # answer held past the caller's timeout, operation ends failed
    TIMEOUT_UNRECORDED = "timeout_unrecorded"  # answer held, then 500; nothing recorded
    LATE_SUCCESS = "late_success"  # answer held past the caller's timeout, operation succeeded
    LOST_CALLBACK = "lost_callback"
    DUPLICATE_CALLBACK = "duplicate_callback"
    STUCK_PENDING = "stuck_pending"
    REVERSAL = "reversal"  # succeeds, then reversed after reversal_after_seconds
    OMITTED_FROM_REPORT = "omitted_from_report"
    DUPLICATED_IN_REPORT = "duplicated_in_report"
    CHARGEBACK = "chargeback"  # card: a chargeback after capture


class Decline(enum.StrEnum):
    NOT_APPROVED = "not_approved"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    PARTY_NOT_FOUND = "party_not_found"
    EXPIRED = "expired"
    LIMIT_REACHED = "limit_reached"


@dataclass(frozen=True, slots=True)
class Behaviour:
    scenario: Scenario
    decline: Decline | None = None

    @property
    def code(self) -> str:
        return f"{self.scenario}:{self.decline}" if self.decline else str(self.scenario)


SUCCESS = Behaviour(Scenario.SUCCEED)

MAGIC_CODES: Mapping[str, Behaviour] = {
    "00": SUCCESS,
    "01": Behaviour(Scenario.DECLINE, Decline.NOT_APPROVED),
    "02": Behaviour(Scenario.DECLINE, Decline.INSUFFICIENT_FUNDS),
    "03": Behaviour(Scenario.DECLINE, Decline.PARTY_NOT_FOUND),
    "04": Behaviour(Scenario.DECLINE, Decline.EXPIRED),
    "05": Behaviour(Scenario.DECLINE, Decline.LIMIT_REACHED),
    "10": Behaviour(Scenario.TIMEOUT),
    "11": Behaviour(Scenario.TIMEOUT_UNRECORDED),
    "20": Behaviour(Scenario.LATE_SUCCESS),
    "30": Behaviour(Scenario.LOST_CALLBACK),
    "31": Behaviour(Scenario.DUPLICATE_CALLBACK),
    "40": Behaviour(Scenario.STUCK_PENDING),
    "50": Behaviour(Scenario.REVERSAL),
    "60": Behaviour(Scenario.OMITTED_FROM_REPORT),
    "61": Behaviour(Scenario.DUPLICATED_IN_REPORT),
    "70": Behaviour(Scenario.CHARGEBACK),
}
MAGIC_MARKER = "0000"

# The provider's own words for each decline.
_DECLINE_CODES: Mapping[ApiStyle, Mapping[Decline, str]] = {
    ApiStyle.MOMO: {
        Decline.NOT_APPROVED: "APPROVAL_REJECTED",
        Decline.INSUFFICIENT_FUNDS: "NOT_ENOUGH_FUNDS",
        Decline.PARTY_NOT_FOUND: "PAYER_NOT_FOUND",
        Decline.EXPIRED: "EXPIRED",
        Decline.LIMIT_REACHED: "PAYER_LIMIT_REACHED",
    },
    ApiStyle.WAVE: {
        Decline.NOT_APPROVED: "payment-cancelled",
        Decline.INSUFFICIENT_FUNDS: "insufficient-funds",
        Decline.PARTY_NOT_FOUND: "recipient-not-found",
        Decline.EXPIRED: "session-expired",
        Decline.LIMIT_REACHED: "recipient-limit-exceeded",
    },
    ApiStyle.CARD: {
        Decline.NOT_APPROVED: "do_not_honor",
        Decline.INSUFFICIENT_FUNDS: "insufficient_funds",
        Decline.PARTY_NOT_FOUND: "invalid_card",
        Decline.EXPIRED: "expired_card",
        Decline.LIMIT_REACHED: "exceeds_limit",
    },
}


def decline_code(style: ApiStyle, decline: Decline, *, payee: bool = False) -> str:
    """The provider-specific reason for ``decline`` (MoMo names the payee on disbursements)."""
    code = _DECLINE_CODES[style][decline]
    if payee and style is ApiStyle.MOMO:
        code = code.replace("PAYER", "PAYEE")
    return code


def magic_behaviour(party: str | None) -> Behaviour | None:
    """The behaviour a magic MSISDN or card number asks for: digits ending in ``0000NN``."""
    if party is None:
        return None
    digits = "".join(ch for ch in party if ch.isdigit())
    if len(digits) < 6 or digits[-6:-2] != MAGIC_MARKER:
        return None
    return MAGIC_CODES.get(digits[-2:])


def draw(seed: int, reference: str) -> float:
    """A uniform number in [0, 1) that depends only on (seed, reference)."""
    digest = hashlib.sha256(f"{seed}:{reference}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def mixed_behaviour(mix: BehaviourMix, seed: int, reference: str) -> Behaviour:
    point = draw(seed, reference)
    bands: tuple[tuple[float, Behaviour], ...] = (
        (mix.decline, Behaviour(Scenario.DECLINE, Decline.INSUFFICIENT_FUNDS)),
        (mix.timeout, Behaviour(Scenario.TIMEOUT)),
        (mix.late_success, Behaviour(Scenario.LATE_SUCCESS)),
        (mix.lost_callback, Behaviour(Scenario.LOST_CALLBACK)),
        (mix.duplicate_callback, Behaviour(Scenario.DUPLICATE_CALLBACK)),
        (mix.stuck_pending, Behaviour(Scenario.STUCK_PENDING)),
        (mix.reversal, Behaviour(Scenario.REVERSAL)),
    )
    upper = 0.0
    for probability, behaviour in bands:
        upper += probability
        if point < upper:
            return behaviour
    return SUCCESS


def select_behaviour(
    *,
    party: str | None,
    amount: int,
    reference: str,
    seed: int,
    mix: BehaviourMix,
    amount_rules: Mapping[int, str],
) -> Behaviour:
    """The behaviour for one request (see the module docstring for the order)."""
    if amount in amount_rules:
        code = amount_rules[amount]
        if code not in MAGIC_CODES:
            raise ValueError(f"unknown magic code {code!r}")
        return MAGIC_CODES[code]
    magic = magic_behaviour(party)
    if magic is not None:
        return magic
    return mixed_behaviour(mix, seed, reference)

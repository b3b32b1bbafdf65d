"""What the payment path needs to know of a risk decision, in the payments module's words.

The risk module decides (`kora.risk`); the payments module only acts on the verdict: `allow`
goes ahead, `review` holds the funds and waits for a risk analyst (the payment stays AUTHORIZED,
its `pending_operation` is `RISK_REVIEW`), `deny` fails the payment. The composition root
translates between the two modules (ADR 0027)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kora.payments.domain.model import PaymentError

# `Payment.pending_operation` of a payment held for a risk analyst: no provider is asked, the
# provider sweeper leaves it alone, only a review decision moves it on.
RISK_REVIEW = "risk_review"


class RiskOutcome(enum.StrEnum):
    ALLOW = "allow"
    REVIEW = "review"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class RiskVerdict:
    """The risk decision on one payment: its outcome, the rules that fired, the score and the
    policy version it was taken under (kept with the decision, so it can be explained and replayed)."""

    outcome: RiskOutcome
    rules: tuple[str, ...] = ()
    score: int = 0
    policy_version: str = ""

    def audit_details(self) -> dict[str, str | int | None]:
        """The verdict in the audit trail's shape (ids, codes and numbers); nothing when risk
        did not judge the payment (the engine off, or a type it does not judge)."""
        if not self.policy_version:
            return {}
        return {
            "risk_outcome": self.outcome.value,
            "risk_rules": ",".join(self.rules),
            "risk_score": self.score,
            "risk_policy_version": self.policy_version,
        }


ALLOWED = RiskVerdict(RiskOutcome.ALLOW)


class ReviewDecision(enum.StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class RiskDenied(PaymentError):
    """The risk policy refused the payment (a hard limit, or a score at the deny threshold)."""

    code = "risk_denied"


class ReviewNotFound(PaymentError):
    """No payment with this id is waiting for a risk review."""

    code = "risk_review_not_found"


class ReviewAlreadyDecided(PaymentError):
    """The payment's review was already decided (by this analyst or another)."""

    code = "risk_review_decided"

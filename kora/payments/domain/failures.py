"""Why a payment ended FAILED, in the words the payment success SLO counts: the customer's
doing (a decline for the payer's or payee's reasons, a merchant's void) is not held against
Kora; the provider failing or never answering, and Kora's own faults, are. Risk refusals are
counted apart: they are Kora's decision, right or wrong, and have their own alerts.

Failure codes are the providers' decline words as Kora records them (lower case, ``-`` as
``_``), Kora's own words (``provider_unresolved``...), and ``prefix:detail`` codes
(``provider_unavailable:timeout``). A code nobody classified yet counts as internal: it is
ours until someone shows otherwise, and it shows up on the SLO until then.
"""

from __future__ import annotations

import enum


class FailureCause(enum.StrEnum):
    CUSTOMER = "customer"
    PROVIDER = "provider"
    INTERNAL = "internal"
    RISK = "risk"


# Declines for the customer's (or the merchant's) reasons, from MoMo-, Wave- and card-style
# providers, and the ends of card authorizations the merchant let go.
_CUSTOMER_CODES = frozenset(
    {
        # MoMo-style (payer on collections, payee on disbursements)
        "approval_rejected",
        "not_enough_funds",
        "payer_not_found",
        "payee_not_found",
        "expired",
        "payer_limit_reached",
        "payee_limit_reached",
        # Wave-style
        "payment_cancelled",
        "insufficient_funds",
        "recipient_not_found",
        "session_expired",
        "recipient_limit_exceeded",
        # card issuers and the merchant's side of an authorization
        "do_not_honor",
        "invalid_card",
        "expired_card",
        "exceeds_limit",
        "invalid_currency",
        "card_declined",
        "authorization_declined",
        "authorization_expired",
        "authorization_voided",
        "voided",
    }
)
# The provider failed, reversed, or never told us how it ended.
_PROVIDER_CODES = frozenset(
    {
        "provider_declined",  # a failure the provider gave no reason for
        "failed",
        "processing_error",
        "reversed",
        "provider_unresolved",
        "authorization_unresolved",
        "refund_unresolved",
        "provider_unavailable",
        "acquirer_unavailable",
    }
)


def failure_cause(code: str | None) -> FailureCause:
    """The cause of a failure recorded with ``code`` (``None``: no code, so ours)."""
    if not code:
        return FailureCause.INTERNAL
    word = code.strip().lower().split(":", 1)[0]
    if word.startswith("risk"):
        return FailureCause.RISK
    if word in _CUSTOMER_CODES:
        return FailureCause.CUSTOMER
    if word in _PROVIDER_CODES:
        return FailureCause.PROVIDER
    return FailureCause.INTERNAL

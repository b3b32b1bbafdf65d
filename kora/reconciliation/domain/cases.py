"""Review cases: what a match run found that is neither MATCHED nor PENDING, and what people
(or the service, for the automatic rules) did about it. Pure: the state machine, who may do
what, and what a proposal must carry.

States and moves (ADR 0025)::

    awaiting_core --(escalate: the core could not settle it in time,
                     or a later run no longer hints query_status)------> open
    open          --(take, by a reviewer)------------------------------> investigating
    open | investigating | rejected --(propose)-----------------------> proposed
    proposed      --(approve, by another person)--> the approval's effect, in its transaction:
                      confirm_mismatch (event written) ----------------> resolved
                      accept_provider / no_action (note kept) ---------> closed
                      write_off / manual_credit / manual_debit --------> approved
    approved      --(the correction posted by the core)---------------> resolved
    approved      --(the core refuses the correction for good, a 4xx)--> investigating
    proposed      --(reject, by another person)-----------------------> rejected
    proposed      --(a later run names another payment, outcome, amount
                     or currency for the line: the proposal is withdrawn)--> investigating
    rejected      --(take)--------------------------------------------> investigating
    any state but approved, resolved, closed --(the line matches on a later run)--> closed (rematch)
    closed by a rematch --(the line is a discrepancy again on a later run)-------> open / awaiting_core

A comment changes no status (any state but resolved and closed).
``awaiting_core`` is the automatic rule at work (a late success: the core is asked about the
payment): it is not in the review queue. An ``approved`` money-moving case whose posting failed
for a passing reason (the core unreachable, a 5xx) stays ``approved`` and is retried; one the
core refused for good (a 4xx: unknown payment, not allowed for the payment's state...) goes back
to people (``investigating``, the core's code recorded). A proposal is tied to the payment and
amount it was made for: an approval posts exactly that. A machine never undoes what two people
approved, so a rematch leaves an approved case alone, and a run that finds other facts for it
only records that they moved.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class CaseStatus(enum.StrEnum):
    AWAITING_CORE = "awaiting_core"
    OPEN = "open"
    INVESTIGATING = "investigating"
    PROPOSED = "proposed"
    APPROVED = "approved"
    REJECTED = "rejected"
    RESOLVED = "resolved"
    CLOSED = "closed"

    @property
    def is_final(self) -> bool:
        return self in (CaseStatus.RESOLVED, CaseStatus.CLOSED)

    @property
    def needs_people(self) -> bool:
        """In the review queue: people have something to do."""
        return self in _QUEUE


_QUEUE = frozenset(
    {CaseStatus.OPEN, CaseStatus.INVESTIGATING, CaseStatus.PROPOSED, CaseStatus.REJECTED, CaseStatus.APPROVED}
)


class ProposalKind(enum.StrEnum):
    CONFIRM_MISMATCH = "confirm_mismatch"  # flag the payment in the core (an event)
    WRITE_OFF = "write_off"  # money: the provider-clearing gap to suspense
    MANUAL_CREDIT = "manual_credit"  # money: suspense to the payment's wallet
    MANUAL_DEBIT = "manual_debit"  # money: the payment's wallet to suspense
    ACCEPT_PROVIDER = "accept_provider"  # close with a note: the provider is right, nothing to move
    NO_ACTION = "no_action"  # close with a note

    @property
    def moves_money(self) -> bool:
        return self in (ProposalKind.WRITE_OFF, ProposalKind.MANUAL_CREDIT, ProposalKind.MANUAL_DEBIT)

    @property
    def needs_payment(self) -> bool:
        return self.moves_money or self is ProposalKind.CONFIRM_MISMATCH


class Action(enum.StrEnum):
    OPEN = "case.open"
    REOPEN = "case.reopen"
    UPDATE = "case.update"
    QUERY = "case.query_core"
    ESCALATE = "case.escalate"
    TAKE = "case.take"
    COMMENT = "case.comment"
    PROPOSE = "case.propose"
    APPROVE = "case.approve"
    REJECT = "case.reject"
    POST = "case.post"
    POST_FAILED = "case.post_failed"
    POST_REFUSED = "case.post_refused"  # the core refused the correction for good: back to people
    WITHDRAW = "case.withdraw"  # a re-run changed the facts a proposal was made for
    FACTS_MOVED = "case.facts_moved"  # a re-run found other facts for an approved case (kept)
    CLOSE = "case.close"


# Roles (the identity service issues them; the reconciliation service checks them).
REVIEWER = "recon_reviewer"
APPROVER = "recon_approver"
ADMIN = "admin"
SYSTEM = "system"  # the service itself (match runs, the automatic rules)

READERS = frozenset({REVIEWER, APPROVER, ADMIN})
_ALLOWED: dict[Action, frozenset[str]] = {
    Action.TAKE: frozenset({REVIEWER}),
    Action.COMMENT: frozenset({REVIEWER, APPROVER}),
    Action.PROPOSE: frozenset({REVIEWER}),
    Action.APPROVE: frozenset({APPROVER}),
    Action.REJECT: frozenset({APPROVER}),
    Action.POST: frozenset({APPROVER}),  # a retry of a failed posting
}

_MOVES: dict[Action, tuple[frozenset[CaseStatus], CaseStatus | None]] = {
    # action: (from, to); to None = unchanged
    Action.TAKE: (frozenset({CaseStatus.OPEN, CaseStatus.REJECTED}), CaseStatus.INVESTIGATING),
    Action.COMMENT: (frozenset(CaseStatus) - {CaseStatus.RESOLVED, CaseStatus.CLOSED}, None),
    Action.PROPOSE: (
        frozenset({CaseStatus.OPEN, CaseStatus.INVESTIGATING, CaseStatus.REJECTED}),
        CaseStatus.PROPOSED,
    ),
    Action.APPROVE: (frozenset({CaseStatus.PROPOSED}), CaseStatus.APPROVED),
    Action.REJECT: (frozenset({CaseStatus.PROPOSED}), CaseStatus.REJECTED),
    Action.POST: (frozenset({CaseStatus.APPROVED}), CaseStatus.RESOLVED),
    Action.ESCALATE: (frozenset({CaseStatus.AWAITING_CORE}), CaseStatus.OPEN),
    Action.POST_REFUSED: (frozenset({CaseStatus.APPROVED}), CaseStatus.INVESTIGATING),
    Action.WITHDRAW: (frozenset({CaseStatus.PROPOSED}), CaseStatus.INVESTIGATING),
    Action.FACTS_MOVED: (frozenset({CaseStatus.APPROVED}), None),
    Action.CLOSE: (frozenset(CaseStatus) - {CaseStatus.APPROVED, CaseStatus.RESOLVED, CaseStatus.CLOSED}, None),
}

CLOSED_BY_REMATCH = "resolved by rematch"
MAX_NOTE = 1000

# A free-text note may not carry a phone number or an account number: standalone runs of nine
# digits or more and international numbers are refused (amounts go in their own field, in minor
# units; a provider's id such as M1000000001 is not standalone and stays allowed).
_DIGIT_RUN = re.compile(r"(?<![A-Za-z0-9])\d{9,}(?![A-Za-z0-9])")
_INTERNATIONAL = re.compile(r"\+\s*\d")


class CaseError(Exception):
    """A case action refused; nothing changed. ``code`` is stable (the HTTP layer maps it)."""

    code = "case_error"


class CaseNotFound(CaseError):
    code = "case_not_found"


class NotAllowed(CaseError):
    """The principal's roles do not allow the action."""

    code = "role_not_allowed"


class SameAsProposer(CaseError):
    """Maker-checker: the approver of a proposal must be someone other than its proposer."""

    code = "maker_checker"


class InvalidTransition(CaseError):
    code = "invalid_transition"


class InvalidProposal(CaseError):
    code = "invalid_proposal"


class InvalidNote(CaseError):
    code = "invalid_note"


def check_role(action: Action, roles: frozenset[str]) -> None:
    allowed = _ALLOWED.get(action, frozenset())
    if not roles & allowed:
        raise NotAllowed(f"{action.value} needs one of the roles {', '.join(sorted(allowed))}")


def can_read(roles: frozenset[str]) -> bool:
    return bool(roles & READERS)


def next_status(action: Action, current: CaseStatus) -> CaseStatus:
    """The status after ``action`` on a case in ``current``; InvalidTransition when the state
    machine has no such move."""
    allowed_from, to = _MOVES[action]
    if current not in allowed_from:
        raise InvalidTransition(f"{action.value} is not possible on a case that is {current.value}")
    return current if to is None else to


def after_approval(kind: ProposalKind) -> CaseStatus:
    """Where an approved proposal leaves the case once the approval's transaction commits:
    the mismatch event is written in it (resolved), a note closes it, money waits for posting."""
    if kind is ProposalKind.CONFIRM_MISMATCH:
        return CaseStatus.RESOLVED
    if kind.moves_money:
        return CaseStatus.APPROVED
    return CaseStatus.CLOSED


def same_person(a: str, b: str) -> bool:
    """Whether two user ids name the same person, compared as the core compares a correction's
    proposer and approver: whatever the case, with or without a ``user:`` prefix (and around
    blanks). Never looser than the core, so the service never approves what the core refuses."""

    def bare(user_id: str) -> str:
        return user_id.strip().lower().removeprefix("user:").strip()

    return bare(a) == bare(b)


def check_checker(proposed_by: str | None, actor: str) -> None:
    """Maker-checker: the one who decides on a proposal did not make it (`same_person`)."""
    if proposed_by is not None and same_person(proposed_by, actor):
        raise SameAsProposer("the approver must be a different person from the proposer")


def check_note(note: str, *, required: bool = True) -> str:
    text = note.strip()
    if required and not text:
        raise InvalidNote("a note is required")
    if len(text) > MAX_NOTE:
        raise InvalidNote(f"a note is at most {MAX_NOTE} characters")
    if _DIGIT_RUN.search(text) or _INTERNATIONAL.search(text):
        raise InvalidNote("a note may not carry phone or account numbers (use the case's ids)")
    return text


@dataclass(frozen=True, slots=True)
class Proposal:
    """What a reviewer proposes; money in minor units."""

    kind: ProposalKind
    note: str
    amount: int | None = None
    currency: str | None = None


def check_proposal(proposal: Proposal, *, payment_id: str | None, case_currency: str | None) -> Proposal:
    """A proposal valid for the case: money-moving kinds carry an explicit positive amount (no
    default: the line's full amount would write off a whole payment for a small gap) in the
    case's currency and need a payment; returns the proposal completed."""
    note = check_note(proposal.note)
    if proposal.kind.needs_payment and payment_id is None:
        raise InvalidProposal(f"{proposal.kind.value} needs a payment: this case names none")
    if not proposal.kind.moves_money:
        if proposal.amount is not None:
            raise InvalidProposal(f"{proposal.kind.value} moves no money: no amount")
        return Proposal(proposal.kind, note)
    amount = proposal.amount
    if amount is None:
        raise InvalidProposal(f"{proposal.kind.value} moves money: give the amount, in minor units")
    currency = proposal.currency or case_currency
    if type(amount) is not int or amount <= 0:
        raise InvalidProposal("the amount is a positive integer of minor units")
    if currency is None or not re.fullmatch(r"[A-Z]{3}", currency):
        raise InvalidProposal("the currency is an ISO 4217 code")
    if case_currency is not None and currency != case_currency:
        raise InvalidProposal("the correction is in the case's currency")
    return Proposal(proposal.kind, note, amount, currency)


def case_subject(line_number: int | None, payment_id: str | None) -> str:
    """The case's key within its report: its line, else the payment the report does not list."""
    if line_number is not None:
        return f"line:{line_number}"
    if payment_id is None:
        raise ValueError("a case names a line or a payment")
    return f"payment:{payment_id}"

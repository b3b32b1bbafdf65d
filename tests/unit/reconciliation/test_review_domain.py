"""The review's pure domain: the case state machine, who may do what, what a proposal must
carry, notes without phone numbers, and the keyed audit hash chain."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kora.reconciliation.domain.audit_chain import GENESIS, AuditRecord, seal, verify
from kora.reconciliation.domain.cases import (
    ADMIN,
    APPROVER,
    REVIEWER,
    Action,
    CaseStatus,
    InvalidNote,
    InvalidProposal,
    InvalidTransition,
    NotAllowed,
    Proposal,
    ProposalKind,
    SameAsProposer,
    after_approval,
    case_subject,
    check_checker,
    check_note,
    check_proposal,
    check_role,
    next_status,
    same_person,
)

KEY = secrets.token_bytes(32)
AT = datetime(2026, 3, 13, 10, 0, tzinfo=UTC)


def test_the_happy_path_and_its_dead_ends() -> None:
    status = CaseStatus.OPEN
    for action, expected in [
        (Action.TAKE, CaseStatus.INVESTIGATING),
        (Action.COMMENT, CaseStatus.INVESTIGATING),
        (Action.PROPOSE, CaseStatus.PROPOSED),
        (Action.REJECT, CaseStatus.REJECTED),
        (Action.PROPOSE, CaseStatus.PROPOSED),
        (Action.APPROVE, CaseStatus.APPROVED),
        (Action.POST, CaseStatus.RESOLVED),
    ]:
        status = next_status(action, status)
        assert status is expected
    for action in (Action.COMMENT, Action.PROPOSE, Action.APPROVE, Action.CLOSE):
        with pytest.raises(InvalidTransition):
            next_status(action, CaseStatus.RESOLVED)
    with pytest.raises(InvalidTransition):
        next_status(Action.APPROVE, CaseStatus.OPEN)  # nothing proposed
    with pytest.raises(InvalidTransition):
        next_status(Action.PROPOSE, CaseStatus.AWAITING_CORE)  # the automatic rule has it
    with pytest.raises(InvalidTransition):
        next_status(Action.CLOSE, CaseStatus.APPROVED)  # a machine never undoes an approval
    assert next_status(Action.ESCALATE, CaseStatus.AWAITING_CORE) is CaseStatus.OPEN
    assert after_approval(ProposalKind.CONFIRM_MISMATCH) is CaseStatus.RESOLVED
    assert after_approval(ProposalKind.NO_ACTION) is CaseStatus.CLOSED
    assert after_approval(ProposalKind.MANUAL_DEBIT) is CaseStatus.APPROVED
    assert not CaseStatus.AWAITING_CORE.needs_people
    assert CaseStatus.APPROVED.needs_people  # approved, not posted yet


@given(st.lists(st.sampled_from(list(Action)), max_size=30))
def test_no_sequence_of_actions_leaves_a_final_state(actions: list[Action]) -> None:
    status = CaseStatus.OPEN
    for action in actions:
        if action in (Action.OPEN, Action.REOPEN, Action.UPDATE, Action.QUERY, Action.POST_FAILED):
            continue  # the service's own bookkeeping, not moves of the machine
        try:
            after = next_status(action, status)
        except InvalidTransition:
            continue
        assert not status.is_final
        status = after


def test_roles() -> None:
    check_role(Action.PROPOSE, frozenset({REVIEWER}))
    check_role(Action.APPROVE, frozenset({APPROVER}))
    check_role(Action.COMMENT, frozenset({APPROVER}))
    for action, roles in [
        (Action.APPROVE, {REVIEWER}),
        (Action.REJECT, {REVIEWER}),
        (Action.PROPOSE, {APPROVER}),
        (Action.APPROVE, {ADMIN}),
        (Action.TAKE, set()),
    ]:
        with pytest.raises(NotAllowed):
            check_role(action, frozenset(roles))
    with pytest.raises(SameAsProposer):
        check_checker("user-1", "user-1")
    check_checker("user-1", "user-2")
    check_checker(None, "user-1")


@pytest.mark.parametrize("approver", ["User-1", "user:user-1", "USER:User-1", " user-1 ", "user: USER-1"])
def test_maker_checker_sees_one_person_under_two_spellings(approver: str) -> None:
    # The core (kora.payments.domain.corrections.same_operator) ignores case and a `user:`
    # prefix: the service is never looser, so it never approves what the core will refuse.
    with pytest.raises(SameAsProposer):
        check_checker("user-1", approver)
    assert same_person("user-1", approver)
    assert not same_person("user-1", "user-12")


@pytest.mark.parametrize(
    ("a", "b"),
    [("u-1", "U-1"), ("user:u-1", "u-1"), ("USER:u-1", "user:U-1"), ("u-1", "u-2"), ("user:x", "userx"), ("a", " a")],
)
def test_maker_checker_is_never_looser_than_the_core(a: str, b: str) -> None:
    from kora.payments.domain.corrections import same_operator

    if same_operator(a, b):
        assert same_person(a, b)


def test_proposals() -> None:
    money = check_proposal(Proposal(ProposalKind.WRITE_OFF, " gap ", 500), payment_id="p-1", case_currency="XOF")
    assert (money.amount, money.currency, money.note) == (500, "XOF", "gap")
    note = check_proposal(Proposal(ProposalKind.NO_ACTION, "fine"), payment_id=None, case_currency="XOF")
    assert note.amount is None
    bad = [
        (Proposal(ProposalKind.CONFIRM_MISMATCH, "x"), None, "XOF"),  # no payment to flag
        (Proposal(ProposalKind.MANUAL_CREDIT, "x", 0), "p-1", "XOF"),
        # No default amount for money: the line's full amount would write off a whole payment.
        (Proposal(ProposalKind.WRITE_OFF, "x"), "p-1", "XOF"),
        (Proposal(ProposalKind.MANUAL_CREDIT, "x"), "p-1", "XOF"),
        (Proposal(ProposalKind.MANUAL_DEBIT, "x"), "p-1", "XOF"),
        (Proposal(ProposalKind.MANUAL_DEBIT, "x", 10, "EUR"), "p-1", "XOF"),
        (Proposal(ProposalKind.ACCEPT_PROVIDER, "x", 10), "p-1", "XOF"),
    ]
    for proposal, payment_id, currency in bad:
        with pytest.raises(InvalidProposal):
            check_proposal(proposal, payment_id=payment_id, case_currency=currency)


@pytest.mark.parametrize("text", ["", "   ", "call +225 07 07", "msisdn 2250707070707", "x" * 1001])
def test_notes_refuse_phone_numbers_and_noise(text: str) -> None:
    with pytest.raises(InvalidNote):
        check_note(text)


def test_notes_keep_amounts_and_ids() -> None:
    assert check_note("short by 500 XOF on M1000000001") == "short by 500 XOF on M1000000001"


def test_case_subjects() -> None:
    assert case_subject(12, "p-1") == "line:12"
    assert case_subject(None, "p-1") == "payment:p-1"
    with pytest.raises(ValueError, match="names a line or a payment"):
        case_subject(None, None)


def _chain(n: int) -> list[AuditRecord]:
    records, prev = [], GENESIS
    for position in range(1, n + 1):
        record = seal(
            KEY,
            AuditRecord(
                position,
                AT + timedelta(minutes=position),
                "user-1",
                REVIEWER,
                "case.take",
                "c-1",
                "open",
                "investigating",
                "corr-1",
                '{"a":1}',
                prev,
            ),
        )
        records.append(record)
        prev = record.hash
    return records


def test_a_chain_verifies_against_its_head() -> None:
    records = _chain(3)
    report = verify(KEY, records, head=(3, records[-1].hash))
    assert report.ok
    assert (report.records, report.head_position) == (3, 3)
    assert verify(KEY, [], head=None).ok
    assert not verify(KEY, records[:2], head=(3, records[-1].hash)).ok  # tail cut
    assert not verify(secrets.token_bytes(32), records, head=(3, records[-1].hash)).ok  # another key


@given(
    position=st.integers(min_value=0, max_value=3),
    name=st.sampled_from(["actor", "role", "action", "case_id", "before", "after", "details", "correlation_id"]),
)
def test_any_edit_breaks_the_chain_at_that_record(position: int, name: str) -> None:
    records = _chain(4)
    edited = replace(records[position], **{name: "tampered"})
    tampered = [*records[:position], edited, *records[position + 1 :]]
    report = verify(KEY, tampered, head=(4, records[-1].hash))
    assert not report.ok
    assert report.broken[0][0] == position + 1
    # Re-sealing the edit without re-sealing the rest breaks the next link instead.
    if position < 3:
        resealed = [*records[:position], seal(KEY, edited), *records[position + 1 :]]
        assert verify(KEY, resealed, head=(4, records[-1].hash)).broken[0][0] == position + 2

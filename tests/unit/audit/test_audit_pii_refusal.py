"""Audit records refuse PII: phone numbers in actor/action/subject, personal-data keys and
non-scalar values in details. A refusal never echoes the refused value."""

from __future__ import annotations

import pytest

from kora.audit import InvalidAuditRecordError
from kora.audit.domain import AuditDraft, looks_like_phone_number

USER = "user:0190f3a0-0000-7000-8000-000000000001"
PAYMENT = "payment:0190f3a0-0000-7000-8000-0000000000aa"


def draft(**overrides: object) -> AuditDraft:
    fields: dict[str, object] = {
        "actor": USER,
        "action": "payment.p2p.captured",
        "subject": PAYMENT,
        "outcome": "success",
        "correlation_id": "req-1",
        "details": {"amount": 5000, "currency": "XOF"},
    }
    fields.update(overrides)
    return AuditDraft.create(**fields)  # type: ignore[arg-type]


def test_a_well_formed_record_is_accepted() -> None:
    assert draft().details == '{"amount":5000,"currency":"XOF"}'


def test_the_error_is_a_value_error_with_a_stable_code() -> None:
    assert issubclass(InvalidAuditRecordError, ValueError)
    assert InvalidAuditRecordError.code == "invalid_audit_record"


@pytest.mark.parametrize("field", ["actor", "subject", "action"])
@pytest.mark.parametrize(
    "value",
    ["user:221771234567", "wallet:0771234567", "payment.to.22177123456", "user:+221 77 123 45 67"],
)
def test_a_phone_number_in_actor_subject_or_action_is_refused(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"{field} looks like it contains a phone number") as info:
        draft(**{field: value})
    assert "1234" not in str(info.value)


@pytest.mark.parametrize(
    "value",
    [
        "user:12345678-1234-7234-8234-123456789012",  # a UUID whose groups are all digits
        "payment:0190f3a0000070008000000000000aa1",  # uuid.hex
        "export:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",  # a digest
        "settlement:2026-01-01:orange",  # a date is not a phone number
        "service:payments",
        "system",
    ],
)
def test_opaque_ids_and_dates_are_not_mistaken_for_phone_numbers(value: str) -> None:
    assert not looks_like_phone_number(value)
    draft(actor=value, subject=value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"actor": ""}, "actor must be a non-empty string"),
        ({"subject": " payment:1"}, "surrounding whitespace"),
        ({"actor": "user:1\nadmin"}, "control characters"),
        ({"subject": "x" * 201}, "longer than 200"),
        ({"action": "Payment.Captured"}, "dotted lower-case"),
        ({"action": "captured"}, "dotted lower-case"),
        ({"outcome": "OK!"}, "lower-case code"),
        ({"correlation_id": ""}, "correlation_id must be a non-empty string"),
        ({"correlation_id": "r" * 129}, "longer than 128"),
    ],
)
def test_malformed_fields_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidAuditRecordError, match=message):
        draft(**overrides)


@pytest.mark.parametrize(
    "key",
    [
        "phone",
        "phone_number",
        "phoneNumber",
        "recipient_msisdn",
        "name",
        "user_name",
        "full-name",
        "password",
        "refresh_token",
        "token",
        "client_secret",
        "email",
        "pin",
        "new_pin",
        "otp",
    ],
)
def test_detail_keys_naming_personal_data_or_credentials_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="names personal data or a credential"):
        draft(details={key: "x"})


def test_a_denied_key_may_hold_a_flag_or_none_which_cannot_carry_personal_data() -> None:
    entry = draft(details={"password_rehashed": True, "email_verified": False, "phone": None})
    assert entry.details == '{"email_verified":false,"password_rehashed":true,"phone":null}'
    with pytest.raises(ValueError, match="names personal data"):
        draft(details={"pin": 1234})


@pytest.mark.parametrize(
    "key", ["amount", "currency", "provider", "payment_id", "reason", "shipping_fee", "risk.score"]
)
def test_ordinary_detail_keys_are_accepted(key: str) -> None:
    draft(details={key: "x"})


@pytest.mark.parametrize(
    "value", [1.5, {"nested": 1}, [1, 2], b"bytes", ("t",)], ids=["float", "dict", "list", "bytes", "tuple"]
)
def test_detail_values_other_than_str_int_bool_none_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match=r"must be str, int, bool or None"):
        draft(details={"value": value})


def test_scalar_detail_values_are_accepted() -> None:
    entry = draft(details={"s": "XOF", "i": 10_000_000, "b": False, "n": None})
    assert entry.details == '{"b":false,"i":10000000,"n":null,"s":"XOF"}'


def test_an_international_phone_number_as_a_detail_value_is_refused() -> None:
    with pytest.raises(ValueError, match="looks like a phone number"):
        draft(details={"counterparty": "+221 77 123 45 67"})


@pytest.mark.parametrize(
    ("details", "message"),
    [
        ({"": 1}, "short identifiers"),
        ({"1st": 1}, "short identifiers"),
        ({"k" * 65: 1}, "short identifiers"),
        ({"reason": "x" * 257}, "too long"),
        ({f"k{i}": i for i in range(33)}, "more than 32 keys"),
    ],
)
def test_malformed_details_are_refused(details: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidAuditRecordError, match=message):
        draft(details=details)

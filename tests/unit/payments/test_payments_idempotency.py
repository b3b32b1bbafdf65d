"""Idempotency rules (Stripe's semantics) as pure functions: key validation, request
fingerprints, and the decision for a key that already has a record."""

from __future__ import annotations

import string
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kora.payments import IdempotencyKeyInvalid, IdempotencyKeyMissing, IdempotencyKeyReused, Outcome
from kora.payments.domain.idempotency import (
    IdempotencyRecord,
    IdempotencyRequest,
    IdempotencyRequestInProgress,
    decide,
    fingerprint,
    validate_key,
)

AT = datetime(2026, 1, 1, tzinfo=UTC)
VISIBLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))


# ---------------------------------------------------------------- keys
@pytest.mark.parametrize("key", [None, ""])
def test_a_missing_key_is_refused(key: str | None) -> None:
    with pytest.raises(IdempotencyKeyMissing) as caught:
        validate_key(key)
    assert caught.value.code == "idempotency_key_missing"


@pytest.mark.parametrize("key", ["a" * 8, "a" * 255, str(uuid.uuid4()), "K0r4-!#$%&'()*+,./:;<=>?@[]^_`{|}~"])
def test_keys_of_8_to_255_visible_ascii_characters_are_accepted(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key",
    ["a" * 7, "a" * 256, "has space1", "tab\there1", "caf\u00e9-key-1", "\x00abcdefgh", "abcdefgh\x7f"],
)
def test_other_keys_are_invalid(key: str) -> None:
    with pytest.raises(IdempotencyKeyInvalid) as caught:
        validate_key(key)
    assert caught.value.code == "idempotency_key_invalid"


@given(st.text(alphabet=VISIBLE_ASCII, min_size=8, max_size=255))
def test_any_visible_ascii_key_of_valid_length_is_accepted(key: str) -> None:
    assert validate_key(key) == key


@given(st.text(min_size=1, max_size=300))
def test_a_key_is_accepted_exactly_when_it_is_8_to_255_visible_ascii(key: str) -> None:
    valid = 8 <= len(key) <= 255 and all(c in VISIBLE_ASCII for c in key)
    if valid:
        assert validate_key(key) == key
    else:
        with pytest.raises(IdempotencyKeyInvalid):
            validate_key(key)


def test_a_key_with_a_trailing_newline_is_invalid() -> None:
    with pytest.raises(IdempotencyKeyInvalid):
        validate_key("abcdefgh\n")


# ---------------------------------------------------------------- fingerprints
BODY: dict[str, Any] = {
    "amount": 2500,
    "currency": "XOF",
    "recipient_phone_number": "+221770000001",
    "note": None,
}


def test_a_fingerprint_is_a_stable_sha256_hex_digest() -> None:
    first = fingerprint("transfer", BODY)
    assert first == fingerprint("transfer", dict(BODY))
    assert first == fingerprint("transfer", dict(reversed(list(BODY.items()))))
    assert len(first) == 64
    assert set(first) <= set(string.hexdigits.lower())


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 2501},
        {"amount": "2500"},
        {"currency": "XAF"},
        {"recipient_phone_number": "+221770000002"},
        {"note": ""},
        {"extra": None},
    ],
)
def test_a_fingerprint_changes_with_any_field(change: dict[str, Any]) -> None:
    assert fingerprint("transfer", {**BODY, **change}) != fingerprint("transfer", BODY)


def test_a_fingerprint_depends_on_the_operation() -> None:
    body = {"amount": 100, "currency": "XOF", "provider": None}
    assert fingerprint("cash_in", body) != fingerprint("cash_out", body)


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10))
bodies = st.dictionaries(st.text(max_size=6), scalars, max_size=5)


@given(a=bodies, b=bodies)
def test_fingerprints_are_equal_exactly_when_requests_are(a: dict[str, Any], b: dict[str, Any]) -> None:
    same_request = a.keys() == b.keys() and all(type(a[k]) is type(b[k]) and a[k] == b[k] for k in a)
    assert (fingerprint("op", a) == fingerprint("op", b)) is same_request


# ---------------------------------------------------------------- decisions
def a_record(*, outcome: Outcome, body: dict[str, Any] | None, fp: str = "fp-1") -> IdempotencyRecord:
    return IdempotencyRecord(
        scope="user:u",
        key="key-00000001",
        fingerprint=fp,
        outcome=outcome,
        body=body,
        payment_id=None,
        created_at=AT,
        expires_at=AT + timedelta(hours=24),
    )


REQUEST = IdempotencyRequest("user:u", "key-00000001", "fp-1")


@pytest.mark.parametrize("outcome", list(Outcome))
def test_same_key_with_another_request_is_reused_whatever_the_state(outcome: Outcome) -> None:
    record = a_record(outcome=outcome, body={"id": "p"} if outcome is not Outcome.IN_FLIGHT else None, fp="other")
    with pytest.raises(IdempotencyKeyReused) as caught:
        decide(record, REQUEST)
    assert caught.value.code == "idempotency_key_reused"


def test_a_request_in_flight_is_in_progress() -> None:
    with pytest.raises(IdempotencyRequestInProgress) as caught:
        decide(a_record(outcome=Outcome.IN_FLIGHT, body=None), REQUEST)
    assert caught.value.code == "idempotency_request_in_progress"


def test_a_record_without_a_body_is_still_in_progress() -> None:
    with pytest.raises(IdempotencyRequestInProgress):
        decide(a_record(outcome=Outcome.SUCCEEDED, body=None), REQUEST)


@pytest.mark.parametrize(
    ("outcome", "body"),
    [
        (Outcome.SUCCEEDED, {"id": "p1", "status": "SETTLED"}),
        (Outcome.FAILED, {"code": "insufficient_funds", "detail": "short"}),
    ],
)
def test_a_completed_request_is_replayed(outcome: Outcome, body: dict[str, Any]) -> None:
    stored = decide(a_record(outcome=outcome, body=body), REQUEST)
    assert (stored.outcome, stored.body, stored.replayed) == (outcome, body, True)


def test_a_record_expires_at_its_deadline() -> None:
    record = a_record(outcome=Outcome.SUCCEEDED, body={})
    assert not record.is_expired(record.expires_at - timedelta(microseconds=1))
    assert record.is_expired(record.expires_at)

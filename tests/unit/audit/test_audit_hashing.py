"""The canonical serialization and keyed hash of audit records."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from kora.audit.domain import (
    GENESIS_HASH,
    AuditDraft,
    AuditEntry,
    audit_key_from_secret,
    canonical_details,
    chain_for,
    compute_hash,
    hash_message,
)

KEY = b"k" * 32
AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def make_entry(**overrides: object) -> AuditEntry:
    draft = AuditDraft.create(
        actor="user:0190f3a0-0000-7000-8000-000000000001",
        action="payment.p2p.captured",
        subject="payment:0190f3a0-0000-7000-8000-0000000000aa",
        outcome="success",
        correlation_id="req-1",
        details={"amount": 5000, "currency": "XOF"},
    )
    entry = draft.seal(
        key=KEY,
        id=uuid.UUID(int=1),
        chain=3,
        position=7,
        prev_hash="a" * 64,
        occurred_at=AT,
    )
    return replace(entry, **overrides) if overrides else entry  # type: ignore[arg-type]


def test_details_are_canonical_json_with_sorted_keys_and_no_spaces() -> None:
    details: dict[str, str | int | bool | None] = {"b": 1, "a": "x", "é": "ü", "c": None, "d": True}
    assert canonical_details(details) == '{"a":"x","b":1,"c":null,"d":true,"\\u00e9":"\\u00fc"}'
    assert canonical_details(None) == "{}"


def test_the_message_is_a_compact_json_array_of_the_fields_in_order() -> None:
    entry = make_entry()
    assert hash_message(
        chain=entry.chain,
        position=entry.position,
        occurred_at=entry.occurred_at,
        actor=entry.actor,
        action=entry.action,
        subject=entry.subject,
        outcome=entry.outcome,
        correlation_id=entry.correlation_id,
        details=entry.details,
        prev_hash=entry.prev_hash,
    ) == (
        b'[3,7,"2026-01-01T12:00:00.000000+00:00",'
        b'"user:0190f3a0-0000-7000-8000-000000000001","payment.p2p.captured",'
        b'"payment:0190f3a0-0000-7000-8000-0000000000aa","success","req-1",'
        b'"{\\"amount\\":5000,\\"currency\\":\\"XOF\\"}","' + b"a" * 64 + b'"]'
    )


def test_the_hash_is_hmac_sha256_of_the_message_under_the_key() -> None:
    entry = make_entry()
    message = hash_message(
        chain=3,
        position=7,
        occurred_at=AT,
        actor=entry.actor,
        action=entry.action,
        subject=entry.subject,
        outcome="success",
        correlation_id="req-1",
        details='{"amount":5000,"currency":"XOF"}',
        prev_hash="a" * 64,
    )
    assert entry.hash == hmac.new(KEY, message, hashlib.sha256).hexdigest()
    assert compute_hash(KEY, entry) == entry.hash
    assert compute_hash(b"another-key-of-32-bytes-long!!!!", entry) != entry.hash


@pytest.mark.parametrize(
    "change",
    [
        {"chain": 4},
        {"position": 8},
        {"occurred_at": AT + timedelta(microseconds=1)},
        {"actor": "user:someone-else"},
        {"action": "payment.p2p.reversed"},
        {"subject": "payment:other"},
        {"outcome": "failure"},
        {"correlation_id": None},
        {"details": '{"amount":5001,"currency":"XOF"}'},
        {"prev_hash": "b" * 64},
    ],
)
def test_any_covered_field_change_changes_the_hash(change: dict[str, object]) -> None:
    entry = make_entry()
    assert compute_hash(KEY, make_entry(**change)) != entry.hash


def test_the_same_instant_in_another_timezone_hashes_the_same() -> None:
    entry = make_entry()
    elsewhere = AT.astimezone(timezone(timedelta(hours=1)))
    assert compute_hash(KEY, replace(entry, occurred_at=elsewhere)) == entry.hash


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        compute_hash(KEY, make_entry(occurred_at=datetime(2026, 1, 1)))  # noqa: DTZ001


def test_genesis_hash_is_64_zeros() -> None:
    assert GENESIS_HASH == "0" * 64


def test_chain_is_crc32_of_the_subject_modulo_the_chain_count() -> None:
    subject = "payment:0190f3a0-0000-7000-8000-0000000000aa"
    assert chain_for(subject, 16) == zlib.crc32(subject.encode()) % 16
    assert chain_for(subject, 1) == 0
    assert {chain_for(f"payment:{i}", 16) for i in range(500)} == set(range(16))


@pytest.mark.parametrize("chains", [0, -1, 5000, True])
def test_a_bad_chain_count_is_refused(chains: int) -> None:
    with pytest.raises(ValueError, match="chains"):
        chain_for("x", chains)


def test_the_key_secret_is_urlsafe_base64_decoded() -> None:
    raw = bytes(range(250, 256)) + b"\xfb\xff" * 13
    padded = base64.urlsafe_b64encode(raw).decode()
    assert "-" in padded or "_" in padded
    assert audit_key_from_secret(padded) == raw
    assert audit_key_from_secret(padded.rstrip("=")) == raw


def test_a_key_secret_that_is_not_base64_is_used_as_raw_bytes() -> None:
    assert audit_key_from_secret("not base64 at all, but long!") == b"not base64 at all, but long!"


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        audit_key_from_secret(base64.urlsafe_b64encode(b"short").decode())

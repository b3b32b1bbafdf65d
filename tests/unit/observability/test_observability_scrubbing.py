from __future__ import annotations

import uuid

import pytest

from kora.kernel.ids import new_id
from kora.observability import is_sensitive_key, scrub, scrub_value

JWT = (
    "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiIwMTkzNmIyYyIsImV4cCI6MTczMjU1MDAwMH0"
    ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("cash-in from +2250701020304 accepted", "2250701020304"),
        ("cash-in from 2250701020304 accepted", "2250701020304"),
        ("retry 0701020304.", "0701020304"),
        ("phone=+225 07 01 02 03 04 unknown", "07 01 02 03 04"),
        ("call +1-555-123-4567", "555-123-4567"),
        ("card 4111111111111111 declined", "4111111111111111"),
        (f"token {JWT} expired", JWT),
        ("Authorization: Bearer abc.def-ghi_jkl", "abc.def-ghi_jkl"),
        ("sent bearer s3cr3t-value", "s3cr3t-value"),
        ("login password=hunter2!! failed", "hunter2!!"),
        ('{"password": "hunter2", "refresh_token": "rt-123"}', "hunter2"),
        ('{"password": "hunter2", "refresh_token": "rt-123"}', "rt-123"),
        ("api_key=ak_live_123 used", "ak_live_123"),
        ("pin: 1234", "1234"),
        (
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n-----END PRIVATE KEY-----",
            "MIIEvQIBADANBgkqhkiG9w0B",
        ),
        ("mail ada.lovelace@example.com", "ada.lovelace@example.com"),
    ],
)
def test_redacts_pii_and_secrets_in_text(text: str, secret: str) -> None:
    scrubbed = scrub(text)
    assert secret not in scrubbed
    assert "REDACTED" in scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "payment 550e8400-e29b-41d4-a716-446655440000 captured",
        "payment 12345678-1234-4234-8234-123456789012 captured",
        "GET /items/{item_id} 200 12.3ms",
        "amount 150000 XOF",
        "took 0.123456789s",
        "at 2024-11-25T10:00:00+01:00",
        "spinning top",
        "status 201",
    ],
)
def test_keeps_ordinary_text(text: str) -> None:
    assert scrub(text) == text


def test_keeps_every_uuid_shape() -> None:
    for value in [uuid.uuid4(), new_id(), uuid.UUID(int=12345678901234567890)]:
        for text in (str(value), value.hex):
            assert scrub(f"id {text}") == f"id {text}"


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "new_password",
        "newPassword",
        "refresh_token",
        "access_token",
        "client_secret",
        "Authorization",
        "phone",
        "phone_number",
        "msisdn",
        "display_name",
        "idempotency_key",
        "signing_key",
        "pin",
        "email",
    ],
)
def test_sensitive_keys(key: str) -> None:
    assert is_sensitive_key(key)
    assert scrub_value(key, "anything") == "[REDACTED]"


@pytest.mark.parametrize(
    "key", ["route", "status", "correlation_id", "trace_id", "monkey", "amount", "currency", "payment_id"]
)
def test_ordinary_keys(key: str) -> None:
    assert not is_sensitive_key(key)


def test_scrub_value_walks_containers_and_keeps_numbers() -> None:
    value = {
        "payment_id": "550e8400-e29b-41d4-a716-446655440000",
        "amount": 150000,
        "at": 1732550000,
        "note": "from +2250701020304",
        "party": {"phone": "+2250701020304", "display_name": "Ada"},
        "tries": ["call 0701020304", 3],
    }
    assert scrub_value("details", value) == {
        "payment_id": "550e8400-e29b-41d4-a716-446655440000",
        "amount": 150000,
        "at": 1732550000,
        "note": "from [REDACTED:number]",
        "party": {"phone": "[REDACTED]", "display_name": "[REDACTED]"},
        "tries": ["call [REDACTED:number]", 3],
    }
    assert scrub_value("pin", 1234) == "[REDACTED]"
    assert scrub_value("password", None) is None


def test_database_errors_lose_the_values_they_quote() -> None:
    sqlalchemy_error = (
        "(sqlite3.IntegrityError) UNIQUE constraint failed: users.display_name\n"
        "[SQL: INSERT INTO users (display_name, phone) VALUES (?, ?)]\n"
        "[parameters: ('Awa Koné', 'x')]\n"
        "(Background on this error at: https://sqlalche.me/e/20/gkpj)"
    )
    scrubbed = scrub(sqlalchemy_error)
    assert "Awa Koné" not in scrubbed
    assert "[SQL: INSERT INTO users (display_name, phone) VALUES (?, ?)]" in scrubbed
    postgres_detail = "DETAIL:  Key (display_name)=(Awa Koné) already exists."
    assert scrub(postgres_detail) == "DETAIL:  Key (display_name)=([REDACTED]) already exists."

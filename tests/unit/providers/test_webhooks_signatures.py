"""Wave-style webhook signatures: valid, forged, stale, future-dated, malformed, missing."""

from __future__ import annotations

import pytest

from kora.providers.webhooks import (
    Rejection,
    WebhookRejected,
    compute_signature,
    signature_header,
    verify_signature,
)

SECRET = "whsec_unit_test"
BODY = b'{"id":"EV_1","type":"checkout.session.completed","data":{}}'
NOW = 1_780_000_000


def rejected(header: str | None, body: bytes = BODY, *, now: int = NOW, secrets: tuple[str, ...] = (SECRET,)) -> str:
    with pytest.raises(WebhookRejected) as caught:
        verify_signature(header, body, secrets=secrets, now=now)
    return caught.value.reason.value


def test_a_valid_signature_is_accepted_and_names_the_delivery() -> None:
    verified = verify_signature(signature_header(SECRET, NOW, BODY), BODY, secrets=(SECRET,), now=NOW)
    assert verified.timestamp == NOW
    assert verified.signature == compute_signature(SECRET, NOW, BODY)


def test_any_current_secret_verifies_during_a_rotation() -> None:
    header = signature_header("whsec_old", NOW, BODY)
    assert verify_signature(header, BODY, secrets=("whsec_new", "whsec_old"), now=NOW).timestamp == NOW


def test_the_header_may_carry_several_signatures_and_unknown_schemes() -> None:
    good = compute_signature(SECRET, NOW, BODY)
    header = f"t={NOW},v0=legacy,v1={'0' * 64},v1={good}"
    assert verify_signature(header, BODY, secrets=(SECRET,), now=NOW).signature == good


def test_a_signature_with_another_secret_is_forged() -> None:
    assert rejected(signature_header("whsec_attacker", NOW, BODY)) == Rejection.FORGED


def test_a_changed_body_is_forged() -> None:
    header = signature_header(SECRET, NOW, BODY)
    assert rejected(header, BODY.replace(b"completed", b"payment_failed")) == Rejection.FORGED


def test_a_moved_timestamp_is_forged() -> None:
    signature = compute_signature(SECRET, NOW - 3600, BODY)
    assert rejected(f"t={NOW},v1={signature}") == Rejection.FORGED


def test_no_secret_configured_verifies_nothing() -> None:
    assert rejected(signature_header(SECRET, NOW, BODY), secrets=()) == Rejection.FORGED


def test_an_authentic_but_old_delivery_is_stale() -> None:
    assert rejected(signature_header(SECRET, NOW - 301, BODY)) == Rejection.STALE
    assert verify_signature(signature_header(SECRET, NOW - 300, BODY), BODY, secrets=(SECRET,), now=NOW)


def test_an_authentic_delivery_dated_in_the_future_is_refused() -> None:
    assert rejected(signature_header(SECRET, NOW + 301, BODY)) == Rejection.FUTURE
    assert verify_signature(signature_header(SECRET, NOW + 300, BODY), BODY, secrets=(SECRET,), now=NOW)


def test_the_tolerance_is_configurable() -> None:
    header = signature_header(SECRET, NOW - 30, BODY)
    with pytest.raises(WebhookRejected):
        verify_signature(header, BODY, secrets=(SECRET,), now=NOW, tolerance_seconds=10)


def test_a_missing_header_is_refused() -> None:
    assert rejected(None) == Rejection.MISSING_SIGNATURE
    assert rejected("") == Rejection.MISSING_SIGNATURE


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        f"t={NOW}",
        f"v1={'a' * 64}",
        f"t=abc,v1={'a' * 64}",
        f"t=-5,v1={'a' * 64}",
        f"t={NOW},t={NOW},v1={'a' * 64}",
        f"t={NOW},v1=nothex",
        f"t={NOW},v1={'A' * 64}",
        f"t={NOW},v1={'a' * 63}",
        f"t={NOW},v1={'a' * 64}," + "x=y," * 300,
        # Unicode digits pass str.isdigit(): "²" then breaks int() (a 500), "١٢٣" would parse.
        f"t=²,v1={'a' * 64}",
        f"t=١٧٨٠٠٠٠٠٠٠,v1={'a' * 64}",
        f"t={NOW},v1={'a' * 63}٣",
        f"t=1234567890123,v1={'a' * 64}",  # more than 12 digits
        f"t=,v1={'a' * 64}",
    ],
)
def test_malformed_headers_are_refused(header: str) -> None:
    assert rejected(header) == Rejection.MALFORMED_SIGNATURE


def test_stale_and_future_are_out_of_window_rejections() -> None:
    assert WebhookRejected(Rejection.STALE).out_of_window
    assert WebhookRejected(Rejection.FUTURE).out_of_window
    assert not WebhookRejected(Rejection.FORGED).out_of_window

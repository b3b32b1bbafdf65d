from __future__ import annotations

import hashlib
import hmac

import pytest

from kora.simulator import FeeRule, LatencyConfig, compute_signature, signature_header, verify_signature
from kora.simulator.amounts import BadAmount, format_major, parse_major
from kora.simulator.signing import parse_signature_header


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"id":"EV_1"}'
    expected = hmac.new(b"secret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert compute_signature("secret", 1_700_000_000, body) == expected
    assert signature_header("secret", 1_700_000_000, body) == f"t=1700000000,v1={expected}"


def test_verification_refuses_forged_stale_and_malformed() -> None:
    body = b"{}"
    header = signature_header("secret", 1000, body)
    assert verify_signature("secret", header, body, now=1100)
    assert not verify_signature("secret", header, b"{ }", now=1100)
    assert not verify_signature("other", header, body, now=1100)
    assert not verify_signature("secret", header, body, now=1000 + 301)
    assert not verify_signature("secret", "v1=abc", body, now=1000)
    assert verify_signature("secret", f"t=1000,v1=bad,{header.split(',')[1]}", body, now=1000)
    with pytest.raises(ValueError, match="malformed"):
        parse_signature_header("garbage")


@pytest.mark.parametrize(
    ("rule", "amount", "fee"),
    [
        (FeeRule(bps=100), 1500, 15),
        (FeeRule(bps=100), 1550, 16),  # half up
        (FeeRule(bps=50, min_fee=25), 1000, 25),
        (FeeRule(bps=180, fixed=25), 7000, 151),
        (FeeRule(bps=1000, max_fee=100), 5000, 100),
        (FeeRule(), 5000, 0),
    ],
)
def test_fee_rules(rule: FeeRule, amount: int, fee: int) -> None:
    assert rule.fee_for(amount) == fee


def test_amounts_in_major_units_round_trip_without_floats() -> None:
    assert parse_major("1500", "XOF") == 1500
    assert parse_major("10.50", "GHS") == 1050
    assert format_major(1050, "GHS") == "10.50"
    assert format_major(1500, "XOF") == "1500"
    assert format_major(-1500, "XOF", places=2) == "-1500.00"
    for bad, code in (
        ("1.5", "XOF"),
        ("0", "XOF"),
        ("-3", "XOF"),
        ("abc", "XOF"),
        (" 1", "XOF"),
        ("1", "ZZZ"),
        ("NaN", "XOF"),
    ):
        with pytest.raises(BadAmount):
            parse_major(bad, code)


def test_latency_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="max_ms"):
        LatencyConfig(min_ms=10, max_ms=5)

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from kora.identity import Principal, Role
from kora.identity.domain import (
    InvalidDeviceId,
    InvalidDisplayName,
    InvalidPhoneNumber,
    PasswordPolicy,
    PhoneNumber,
    ThrottleRule,
    WeakPassword,
    normalize_password,
    register_failure,
    validate_device_id,
    validate_display_name,
)

SN = PhoneNumber(e164="+221771234567", national_number="771234567")
policy = PasswordPolicy(common_passwords=frozenset({"password123", "qwertyuiop"}))


def test_a_long_uncommon_password_passes() -> None:
    policy.check("correct horse battery", phone=SN)


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short1!", "too_short"),
        ("x" * 129, "too_long"),
        ("Password123", "common_password"),
        ("QWERTYUIOP", "common_password"),
        ("me771234567!", "contains_phone_number"),
        ("me 77 123 45 67 ok", "contains_phone_number"),
        ("221771234567aa", "contains_phone_number"),
        ("+221-77-123-4567xy", "contains_phone_number"),
    ],
)
def test_the_policy_names_the_broken_rule(password: str, reason: str) -> None:
    with pytest.raises(WeakPassword) as caught:
        policy.check(password, phone=SN)
    assert reason in caught.value.reasons
    assert caught.value.code == "weak_password"
    assert password not in str(caught.value)


def test_min_length_is_configurable() -> None:
    PasswordPolicy(min_length=16).check("sixteen chars ok")
    with pytest.raises(WeakPassword):
        PasswordPolicy(min_length=16).check("fifteen chars o")
    with pytest.raises(ValueError, match="min_length"):
        PasswordPolicy(min_length=200)


def test_with_common_passwords_lower_cases_the_list() -> None:
    built = PasswordPolicy.with_common_passwords(["  Dragon2024Dragon ", "", "X"])
    assert built.violations("DRAGON2024DRAGON") == ("common_password",)


def test_passwords_are_nfkc_normalized() -> None:
    assert normalize_password("ｐａｓｓｗｏｒｄ") == "password"


def test_phone_number_refuses_bad_shapes_and_hides_itself() -> None:
    with pytest.raises(InvalidPhoneNumber):
        PhoneNumber(e164="221771234567", national_number="771234567")
    with pytest.raises(InvalidPhoneNumber):
        PhoneNumber(e164="+221771234567", national_number="999")
    assert "771234567" not in repr(SN)
    assert "771234567" not in f"{SN}"


def test_display_name_rules() -> None:
    assert validate_display_name("  Awa Diop ") == "Awa Diop"
    assert validate_display_name("   ") is None
    assert validate_display_name(None) is None
    with pytest.raises(InvalidDisplayName):
        validate_display_name("x" * 65)
    with pytest.raises(InvalidDisplayName):
        validate_display_name("bad\x00name")
    with pytest.raises(InvalidDisplayName):
        validate_display_name("rtl\u202eoverride")


def test_device_id_rules() -> None:
    assert validate_device_id("0b6f3c1e-ios:17.2") == "0b6f3c1e-ios:17.2"
    for bad in ("", "x" * 129, "has space", "semi;colon"):
        with pytest.raises(InvalidDeviceId):
            validate_device_id(bad)


def test_principal_roles() -> None:
    principal = Principal(user_id=uuid.uuid4(), roles=frozenset({Role.SUPPORT}), device_id="d", session_id=uuid.uuid4())
    assert principal.has_role(Role.SUPPORT)
    assert not principal.has_role(Role.ADMIN)
    assert principal.has_role("support")
    with pytest.raises(ValueError, match="superuser"):
        principal.has_role("superuser")
    assert principal.actor == f"user:{principal.user_id}"


T0 = datetime(2026, 1, 1, tzinfo=UTC)
RULE = ThrottleRule(max_failures=3, window=timedelta(minutes=15), lockout=timedelta(minutes=15))


def test_throttle_locks_at_the_limit_within_the_window() -> None:
    state = register_failure(None, now=T0, rule=RULE)
    state = register_failure(state, now=T0 + timedelta(minutes=1), rule=RULE)
    assert not state.is_locked(T0 + timedelta(minutes=1))
    state = register_failure(state, now=T0 + timedelta(minutes=2), rule=RULE)
    assert state.retry_after(T0 + timedelta(minutes=2)) == 15 * 60
    assert state.is_locked(T0 + timedelta(minutes=16))
    assert not state.is_locked(T0 + timedelta(minutes=17))


def test_throttle_window_expiry_restarts_the_count() -> None:
    state = register_failure(None, now=T0, rule=RULE)
    state = register_failure(state, now=T0 + timedelta(minutes=1), rule=RULE)
    state = register_failure(state, now=T0 + timedelta(minutes=20), rule=RULE)
    assert state.failures == 1
    assert not state.is_locked(T0 + timedelta(minutes=20))


def test_failures_during_a_lock_do_not_extend_it_and_after_it_count_from_one() -> None:
    state = None
    for minute in range(3):
        state = register_failure(state, now=T0 + timedelta(minutes=minute), rule=RULE)
    assert state is not None
    locked_until = state.locked_until
    state = register_failure(state, now=T0 + timedelta(minutes=5), rule=RULE)
    assert state.locked_until == locked_until
    state = register_failure(state, now=T0 + timedelta(minutes=30), rule=RULE)
    assert state.failures == 1
    assert not state.is_locked(T0 + timedelta(minutes=30))

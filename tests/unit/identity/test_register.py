from __future__ import annotations

import pytest

from kora.identity import (
    InvalidDisplayName,
    InvalidPhoneNumber,
    PhoneNumberTaken,
    Role,
    UserNotFound,
    WeakPassword,
)
from kora.kernel import new_id

from .fakes import OTHER_PHONE, PASSWORD, PHONE, World


async def test_register_creates_a_customer_and_opens_a_wallet(world: World) -> None:
    result = await world.service.register(
        phone_number=PHONE, password=PASSWORD, display_name="Awa Diop", correlation_id="corr-1"
    )
    user = world.state.users[result.user_id]
    assert user.roles == frozenset({Role.CUSTOMER})
    assert world.state.wallets[result.wallet_id] == (result.user_id, "XOF")
    assert user.phone_index == world.index.phone(PHONE)
    assert user.password_hash == f"v1${PASSWORD}"
    record = world.state.audit[-1]
    assert record["action"] == "auth.registered"
    assert record["actor"] == f"user:{result.user_id}"
    assert record["correlation_id"] == "corr-1"


async def test_pii_is_stored_encrypted_and_bound_to_its_row(world: World) -> None:
    result = await world.service.register(phone_number=PHONE, password=PASSWORD, display_name="Awa Diop")
    user = world.state.users[result.user_id]
    assert PHONE.encode() not in user.phone_ciphertext
    assert user.display_name_ciphertext is not None
    assert b"Awa" not in user.display_name_ciphertext
    profile = await world.service.profile(result.user_id)
    assert (profile.phone_number, profile.display_name) == (PHONE, "Awa Diop")
    assert PHONE not in repr(profile)


async def test_national_formatting_is_normalized_to_e164(world: World) -> None:
    result = await world.service.register(phone_number="+221 77 123 45 67", password=PASSWORD)
    assert world.state.users[result.user_id].phone_index == world.index.phone(PHONE)


async def test_a_duplicate_phone_number_is_refused_without_a_second_wallet(world: World) -> None:
    await world.service.register(phone_number=PHONE, password=PASSWORD)
    with pytest.raises(PhoneNumberTaken) as caught:
        await world.service.register(phone_number="+221 77-123-45-67", password="another good one")
    assert caught.value.code == "phone_number_taken"
    assert len(world.state.users) == 1
    assert len(world.state.wallets) == 1


async def test_registration_is_all_or_nothing_with_the_wallet(world: World) -> None:
    world.store.wallets_fail = True
    with pytest.raises(RuntimeError):
        await world.service.register(phone_number=PHONE, password=PASSWORD)
    assert world.state.users == {}
    assert world.state.audit == []


@pytest.mark.parametrize(
    ("phone", "password", "display_name", "error"),
    [
        ("+221771234567", "short", None, WeakPassword),
        ("+221771234567", "Password123", None, WeakPassword),
        ("+221771234567", "my number 771234567", None, WeakPassword),
        ("771234567", PASSWORD, None, InvalidPhoneNumber),
        ("+22177", PASSWORD, None, InvalidPhoneNumber),
        ("not a number", PASSWORD, None, InvalidPhoneNumber),
        ("+221771234567", PASSWORD, "x" * 65, InvalidDisplayName),
    ],
)
async def test_invalid_registrations_are_refused_before_anything_is_stored(
    world: World, phone: str, password: str, display_name: str | None, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await world.service.register(phone_number=phone, password=password, display_name=display_name)
    assert world.state.users == {}
    assert world.hasher.hashed == 0


async def test_audit_records_carry_no_pii_or_secret(world: World) -> None:
    await world.service.register(phone_number=PHONE, password=PASSWORD, display_name="Awa Diop")
    text = repr(world.state.audit)
    for secret in (PHONE, PHONE[1:], "771234567", PASSWORD, "Awa"):
        assert secret not in text


async def test_create_admin_has_the_admin_role_and_no_wallet(world: World) -> None:
    admin_id = await world.service.create_admin(PHONE, PASSWORD)
    assert world.state.users[admin_id].roles == frozenset({Role.ADMIN})
    assert world.state.wallets == {}
    assert world.state.audit[-1]["action"] == "auth.staff.created"
    assert world.state.audit[-1]["actor"] == "system"
    with pytest.raises(PhoneNumberTaken):
        await world.service.create_admin("+221 77 123 45 67", PASSWORD)
    with pytest.raises(ValueError, match="staff"):
        await world.service.create_staff(OTHER_PHONE, PASSWORD, Role.CUSTOMER)


async def test_create_admin_applies_the_password_policy(world: World) -> None:
    with pytest.raises(WeakPassword):
        await world.service.create_admin(PHONE, "password123")


async def test_resolve_user_by_phone_finds_customers_only(world: World) -> None:
    customer = await world.service.register(phone_number=PHONE, password=PASSWORD)
    await world.service.create_staff(OTHER_PHONE, PASSWORD, Role.SUPPORT)
    assert await world.service.resolve_user_by_phone("+221 77 123 45 67") == customer.user_id
    assert await world.service.resolve_user_by_phone(OTHER_PHONE) is None
    assert await world.service.resolve_user_by_phone("+221761234567") is None
    with pytest.raises(InvalidPhoneNumber):
        await world.service.resolve_user_by_phone("12")


async def test_profile_of_an_unknown_user(world: World) -> None:
    with pytest.raises(UserNotFound):
        await world.service.profile(new_id())

from __future__ import annotations

from datetime import timedelta

import pytest

from kora.identity import AccountLocked, InvalidCredentials, InvalidDeviceId, Role, TooManyAttempts

from .fakes import DEVICE, OTHER_PHONE, PASSWORD, PHONE, FakeHasher, World, build_world, make_settings

IP = "198.51.100.7"


async def login(world: World, *, phone: str = PHONE, password: str = PASSWORD, ip: str | None = IP):  # type: ignore[no-untyped-def]
    return await world.service.login(
        phone_number=phone, password=password, device_id=DEVICE, client_ip=ip, correlation_id="corr"
    )


async def test_login_returns_a_token_pair_that_authenticates(world: World) -> None:
    registration = await world.service.register(phone_number=PHONE, password=PASSWORD)
    pair = await login(world)
    assert pair.token_type == "Bearer"
    assert pair.expires_in == world.settings.access_token_ttl_seconds
    principal = await world.service.authenticate(pair.access_token, DEVICE)
    assert principal.user_id == registration.user_id
    assert principal.roles == frozenset({Role.CUSTOMER})
    assert principal.device_id == DEVICE
    assert principal.session_id in world.state.sessions
    assert world.actions()[-1] == "auth.login.succeeded"
    assert world.state.audit[-1]["actor"] == f"user:{registration.user_id}"


async def test_unknown_number_and_wrong_password_fail_identically(world: World) -> None:
    await world.service.register(phone_number=PHONE, password=PASSWORD)
    with pytest.raises(InvalidCredentials) as wrong_password:
        await login(world, password="not the password")
    with pytest.raises(InvalidCredentials) as unknown_number:
        await login(world, phone=OTHER_PHONE)
    with pytest.raises(InvalidCredentials) as garbage_number:
        await login(world, phone="garbage")
    assert wrong_password.value.code == unknown_number.value.code == garbage_number.value.code
    assert str(wrong_password.value) == str(unknown_number.value) == str(garbage_number.value)
    # one real verify for the known account, a dummy verify for each unknown one
    assert (world.hasher.verified, world.hasher.dummy_verified) == (1, 2)


async def test_login_failures_are_audited_without_pii(world: World) -> None:
    registration = await world.service.register(phone_number=PHONE, password=PASSWORD)
    with pytest.raises(InvalidCredentials):
        await login(world, password="wrong password!")
    with pytest.raises(InvalidCredentials):
        await login(world, phone=OTHER_PHONE)
    failed = [r for r in world.state.audit if r["action"] == "auth.login.failed"]
    assert [(r["subject"], r["details"]["reason"]) for r in failed] == [
        (f"user:{registration.user_id}", "bad_password"),
        ("anonymous", "unknown_account"),
    ]
    assert all(r["actor"] == "anonymous" and r["outcome"] == "failure" for r in failed)
    text = repr(world.state.audit) + repr(world.state.throttle)
    for secret in (PHONE[1:], OTHER_PHONE[1:], IP, "wrong password!", PASSWORD):
        assert secret not in text


async def test_the_account_locks_after_max_failures_even_for_the_right_password(world: World) -> None:
    await world.service.register(phone_number=PHONE, password=PASSWORD)
    for _ in range(world.settings.login_max_failures - 1):
        with pytest.raises(InvalidCredentials):
            await login(world, password="wrong password")
    with pytest.raises(AccountLocked) as locked:
        await login(world, password="wrong password")
    assert locked.value.retry_after_seconds == world.settings.login_lockout_seconds
    verified_before = world.hasher.verified
    with pytest.raises(AccountLocked):
        await login(world)
    assert world.hasher.verified == verified_before  # a locked account costs no hashing
    assert "auth.locked" in world.actions()
    assert world.state.audit[-1]["outcome"] == "denied"

    world.clock.advance(timedelta(seconds=world.settings.login_lockout_seconds))
    assert (await login(world)).access_token


async def test_unknown_numbers_lock_the_same_way(world: World) -> None:
    for _ in range(world.settings.login_max_failures - 1):
        with pytest.raises(InvalidCredentials):
            await login(world, phone=OTHER_PHONE)
    with pytest.raises(AccountLocked):
        await login(world, phone=OTHER_PHONE)
    with pytest.raises(AccountLocked):
        await login(world, phone="+225 07 01 02 03 04")


async def test_failures_outside_the_window_do_not_add_up(world: World) -> None:
    await world.service.register(phone_number=PHONE, password=PASSWORD)
    for _ in range(world.settings.login_max_failures + 2):
        with pytest.raises(InvalidCredentials):
            await login(world, password="wrong password")
        world.clock.advance(timedelta(seconds=world.settings.login_lockout_seconds // 2 + 1))
    assert (await login(world)).access_token


async def test_a_successful_login_forgets_the_account_failures(world: World) -> None:
    await world.service.register(phone_number=PHONE, password=PASSWORD)
    for _ in range(world.settings.login_max_failures - 1):
        with pytest.raises(InvalidCredentials):
            await login(world, password="wrong password")
    await login(world)
    for _ in range(world.settings.login_max_failures - 1):
        with pytest.raises(InvalidCredentials):
            await login(world, password="wrong password")
    assert (await login(world)).access_token


async def test_the_client_address_is_limited_across_accounts() -> None:
    world = build_world(settings=make_settings(login_ip_max_failures=4, login_max_failures=100))
    await world.service.register(phone_number=PHONE, password=PASSWORD)
    phones = ["+221761234567", "+221781234567", "+221701234567"]
    for phone in phones:
        with pytest.raises(InvalidCredentials):
            await login(world, phone=phone)
    with pytest.raises(TooManyAttempts) as throttled:
        await login(world, phone="+221771234568")
    assert throttled.value.code == "too_many_attempts"
    with pytest.raises(TooManyAttempts):
        await login(world)  # right credentials, same address
    assert (await login(world, ip="203.0.113.9")).access_token  # another address is fine


async def test_a_success_does_not_reset_the_address_budget() -> None:
    world = build_world(settings=make_settings(login_ip_max_failures=3, login_max_failures=100))
    await world.service.register(phone_number=PHONE, password=PASSWORD)
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await login(world, phone=OTHER_PHONE)
        await login(world)
    with pytest.raises(TooManyAttempts):
        await login(world, phone=OTHER_PHONE)


async def test_without_a_client_address_only_the_account_is_throttled(world: World) -> None:
    with pytest.raises(InvalidCredentials):
        await login(world, phone=OTHER_PHONE, ip=None)
    assert [key.split(":")[0] for key in world.state.throttle] == ["account"]


async def test_login_rehashes_a_password_hashed_with_old_parameters() -> None:
    world = build_world(hasher=FakeHasher(version=1))
    registration = await world.service.register(phone_number=PHONE, password=PASSWORD)
    world.hasher.version = 2  # new argon2 parameters deployed
    await login(world)
    assert world.state.users[registration.user_id].password_hash == f"v2${PASSWORD}"
    assert world.state.audit[-1]["details"]["password_rehashed"] is True
    await login(world)
    assert world.state.audit[-1]["details"]["password_rehashed"] is False


async def test_a_bad_device_id_is_refused(world: World) -> None:
    with pytest.raises(InvalidDeviceId):
        await world.service.login(phone_number=PHONE, password=PASSWORD, device_id="bad id", client_ip=IP)


async def test_an_overlong_password_is_just_a_failure(world: World) -> None:
    await world.service.register(phone_number=PHONE, password=PASSWORD)
    with pytest.raises(InvalidCredentials):
        await login(world, password="x" * 10_000)
    assert world.hasher.verified == 0

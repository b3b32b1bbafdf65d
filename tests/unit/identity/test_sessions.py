from __future__ import annotations

from datetime import timedelta

import jwt
import pytest

from kora.identity import (
    DeviceMismatch,
    InvalidRefreshToken,
    InvalidToken,
    RefreshTokenReused,
    TokenPair,
)
from kora.identity.tokens import hash_refresh_token

from .fakes import DEVICE, PASSWORD, PHONE, World, build_world, ed25519_pem, keyring_json, make_settings


async def logged_in(world: World) -> TokenPair:
    await world.service.register(phone_number=PHONE, password=PASSWORD)
    return await world.service.login(phone_number=PHONE, password=PASSWORD, device_id=DEVICE, client_ip=None)


async def test_refresh_rotates_the_token_within_the_session(world: World) -> None:
    first = await logged_in(world)
    second = await world.service.refresh(refresh_token=first.refresh_token, device_id=DEVICE)
    assert second.refresh_token != first.refresh_token
    old = world.state.tokens[hash_refresh_token(first.refresh_token)]
    new = world.state.tokens[hash_refresh_token(second.refresh_token)]
    assert old.used_at == world.clock.now()
    assert new.session_id == old.session_id
    a = await world.service.authenticate(first.access_token, DEVICE)
    b = await world.service.authenticate(second.access_token, DEVICE)
    assert a.session_id == b.session_id
    third = await world.service.refresh(refresh_token=second.refresh_token, device_id=DEVICE)
    assert third.refresh_token not in (first.refresh_token, second.refresh_token)
    assert world.actions().count("auth.token.refreshed") == 2


async def test_refresh_tokens_are_stored_only_as_hashes(world: World) -> None:
    pair = await logged_in(world)
    assert pair.refresh_token.encode() not in repr(world.state).encode()
    assert len(pair.refresh_token) >= 43  # 32 random bytes, urlsafe


async def test_reusing_a_refresh_token_revokes_the_whole_session(world: World) -> None:
    first = await logged_in(world)
    second = await world.service.refresh(refresh_token=first.refresh_token, device_id=DEVICE)
    with pytest.raises(RefreshTokenReused) as reused:
        await world.service.refresh(refresh_token=first.refresh_token, device_id=DEVICE)
    assert reused.value.code == "refresh_token_reused"
    with pytest.raises(InvalidRefreshToken):
        await world.service.refresh(refresh_token=second.refresh_token, device_id=DEVICE)
    with pytest.raises(InvalidToken):
        await world.service.authenticate(second.access_token, DEVICE)
    record = next(r for r in world.state.audit if r["action"] == "auth.refresh.reuse_detected")
    assert record["outcome"] == "denied"
    # presenting it again still says "reused", without a second revocation record
    with pytest.raises(RefreshTokenReused):
        await world.service.refresh(refresh_token=first.refresh_token, device_id=DEVICE)
    assert world.actions().count("auth.refresh.reuse_detected") == 1


async def test_losing_a_concurrent_rotation_counts_as_reuse(world: World) -> None:
    pair = await logged_in(world)
    tokens = world.store.state.tokens
    token_hash = hash_refresh_token(pair.refresh_token)
    original_mark_used = world.store.uow

    class RacingUow:
        """Another refresh spends the token between our read and our conditional update."""

        def __init__(self) -> None:
            self.inner = original_mark_used()

        async def __aenter__(self):  # type: ignore[no-untyped-def]
            uow = await self.inner.__aenter__()

            async def lose(token_hash: bytes, *, at):  # type: ignore[no-untyped-def]
                return False

            uow.refresh_tokens.mark_used = lose  # type: ignore[method-assign]
            return uow

        async def __aexit__(self, *exc):  # type: ignore[no-untyped-def]
            return await self.inner.__aexit__(*exc)

    world.service._uow = RacingUow  # type: ignore[assignment]
    with pytest.raises(RefreshTokenReused):
        await world.service.refresh(refresh_token=pair.refresh_token, device_id=DEVICE)
    assert world.store.state.sessions[tokens[token_hash].session_id].revoked_at is not None


@pytest.mark.parametrize("case", ["unknown", "other_device", "expired", "logged_out"])
async def test_invalid_refresh_tokens(world: World, case: str) -> None:
    pair = await logged_in(world)
    token, device = pair.refresh_token, DEVICE
    if case == "unknown":
        token = "x" * 43
    elif case == "other_device":
        device = "device-2"
    elif case == "expired":
        world.clock.advance(timedelta(seconds=world.settings.refresh_token_ttl_seconds))
    else:
        await world.service.logout(await world.service.authenticate(pair.access_token, DEVICE))
    with pytest.raises(InvalidRefreshToken) as caught:
        await world.service.refresh(refresh_token=token, device_id=device)
    assert caught.value.code == "invalid_refresh_token"


async def test_logout_revokes_the_session_refresh_and_access_tokens(world: World) -> None:
    pair = await logged_in(world)
    principal = await world.service.authenticate(pair.access_token, DEVICE)
    other = await world.service.login(phone_number=PHONE, password=PASSWORD, device_id="device-2", client_ip=None)
    await world.service.logout(principal, correlation_id="c")
    with pytest.raises(InvalidToken):
        await world.service.authenticate(pair.access_token, DEVICE)
    with pytest.raises(InvalidRefreshToken):
        await world.service.refresh(refresh_token=pair.refresh_token, device_id=DEVICE)
    # another device's session is untouched
    assert (await world.service.authenticate(other.access_token, "device-2")).session_id != principal.session_id
    assert world.state.audit[-1]["action"] == "auth.logout"


async def test_an_access_token_is_bound_to_its_device(world: World) -> None:
    pair = await logged_in(world)
    with pytest.raises(DeviceMismatch) as caught:
        await world.service.authenticate(pair.access_token, "device-2")
    assert caught.value.code == "device_mismatch"


async def test_an_expired_access_token_is_refused(world: World) -> None:
    pair = await logged_in(world)
    world.clock.advance(timedelta(seconds=world.settings.access_token_ttl_seconds - 1))
    await world.service.authenticate(pair.access_token, DEVICE)
    world.clock.advance(timedelta(seconds=1))
    with pytest.raises(InvalidToken):
        await world.service.authenticate(pair.access_token, DEVICE)


async def test_access_token_claims_and_header(world: World) -> None:
    pair = await logged_in(world)
    header = jwt.get_unverified_header(pair.access_token)
    assert header == {"alg": "EdDSA", "kid": "k1", "typ": "at+jwt"}
    claims = jwt.decode(pair.access_token, options={"verify_signature": False})
    assert set(claims) == {"iss", "aud", "sub", "sid", "did", "roles", "iat", "exp", "jti"}
    assert claims["iss"] == "kora"
    assert claims["aud"] == "kora-api"
    assert claims["did"] == DEVICE
    assert claims["roles"] == ["customer"]
    assert claims["exp"] - claims["iat"] == 600
    assert PHONE[1:] not in pair.access_token


async def test_tokens_from_another_issuer_audience_or_key_are_refused(world: World) -> None:
    pair = await logged_in(world)
    stranger_ring = make_settings().secrets["KORA_JWT_SIGNING_KEYS"]
    for settings in (
        make_settings(secrets={**world.settings.secrets, "KORA_JWT_SIGNING_KEYS": stranger_ring}),
        make_settings(secrets=world.settings.secrets, jwt_audience="other-api"),
        make_settings(secrets=world.settings.secrets, jwt_issuer="other-issuer"),
    ):
        other = build_world(settings=settings, store=world.store)
        with pytest.raises(InvalidToken):
            await other.service.authenticate(pair.access_token, DEVICE)


@pytest.mark.parametrize(
    "token",
    ["", "not.a.jwt", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."],
)
async def test_garbage_tokens_are_invalid(world: World, token: str) -> None:
    with pytest.raises(InvalidToken):
        await world.service.authenticate(token, DEVICE)


async def test_a_tampered_token_is_refused(world: World) -> None:
    pair = await logged_in(world)
    head, _body, signature = pair.access_token.split(".")
    forged = jwt.decode(pair.access_token, options={"verify_signature": False})
    forged["roles"] = ["admin"]
    forged_body = jwt.encode(forged, "k" * 32, algorithm="HS256").split(".")[1]
    with pytest.raises(InvalidToken):
        await world.service.authenticate(f"{head}.{forged_body}.{signature}", DEVICE)


async def test_key_rotation_keeps_old_tokens_valid_and_signs_with_the_new_kid() -> None:
    old_pem, new_pem = ed25519_pem(), ed25519_pem()
    before = build_world(settings=make_settings(secrets=_secrets(keyring_json(("old", old_pem)))))
    pair = await logged_in(before)

    ring = keyring_json(("new", new_pem), ("old", old_pem))
    after = build_world(settings=make_settings(secrets=_secrets(ring, like=before)), store=before.store)
    assert (await after.service.authenticate(pair.access_token, DEVICE)).user_id
    fresh = await after.service.login(phone_number=PHONE, password=PASSWORD, device_id=DEVICE, client_ip=None)
    assert jwt.get_unverified_header(fresh.access_token)["kid"] == "new"
    assert {key["kid"] for key in after.service.jwks()["keys"]} == {"new", "old"}

    dropped = build_world(
        settings=make_settings(secrets=_secrets(keyring_json(("new", new_pem)), like=before)),
        store=before.store,
    )
    with pytest.raises(InvalidToken):
        await dropped.service.authenticate(pair.access_token, DEVICE)
    assert (await dropped.service.authenticate(fresh.access_token, DEVICE)).user_id


def _secrets(ring: str, *, like: World | None = None) -> dict[str, str]:
    base = make_settings().secrets if like is None else like.settings.secrets
    return {**base, "KORA_JWT_SIGNING_KEYS": ring}


async def test_authenticate_checks_the_session_belongs_to_the_subject(world: World) -> None:
    pair = await logged_in(world)
    for session_id, session in list(world.state.sessions.items()):
        world.store.state.sessions[session_id] = type(session)(
            id=session.id,
            user_id=type(session.user_id)(int=session.user_id.int + 1),
            device_id=session.device_id,
            created_at=session.created_at,
        )
    with pytest.raises(InvalidToken):
        await world.service.authenticate(pair.access_token, DEVICE)

"""The crypto, token, phone and deny-list adapters (pure computation, no I/O)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from kora.identity import InvalidPhoneNumber, InvalidToken, Role
from kora.identity.adapters import (
    AesGcmPiiCipher,
    Argon2PasswordHasher,
    Ed25519Keyring,
    HmacBlindIndex,
    JwtEdDsaSigner,
    PhonenumbersNormalizer,
    PiiDecryptionError,
    load_common_passwords,
)
from kora.identity.domain import AccessClaims
from kora.platform.settings import ConfigurationError, Settings

from .fakes import ed25519_pem, keyring_json, new_key_b64, public_pem

CHEAP = {"time_cost": 1, "memory_cost": 8192, "parallelism": 1}


async def test_argon2id_hashes_and_verifies() -> None:
    hasher = Argon2PasswordHasher(**CHEAP)
    digest = await hasher.hash("correct horse battery")
    assert digest.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    assert await hasher.verify(digest, "correct horse battery")
    assert not await hasher.verify(digest, "wrong horse battery")
    assert not await hasher.verify("not a hash", "correct horse battery")
    assert not hasher.needs_rehash(digest)
    await hasher.verify_dummy("anything")


async def test_a_parameter_change_asks_for_a_rehash() -> None:
    old = await Argon2PasswordHasher(**CHEAP).hash("correct horse battery")
    stronger = Argon2PasswordHasher(time_cost=2, memory_cost=8192, parallelism=1)
    assert stronger.needs_rehash(old)
    assert await stronger.verify(old, "correct horse battery")  # old hashes still verify
    assert stronger.needs_rehash("garbage")


def test_default_parameters_are_rfc_9106_low_memory() -> None:
    hasher = Argon2PasswordHasher()
    assert hasher.needs_rehash("$argon2id$v=19$m=8192,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
    assert not hasher.needs_rehash("$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43)


def test_pii_round_trips_and_is_bound_to_its_context() -> None:
    cipher = AesGcmPiiCipher.from_setting(new_key_b64())
    sealed = cipher.encrypt("+221771234567", context="users.phone:1")
    assert b"221771234567" not in sealed
    assert cipher.encrypt("+221771234567", context="users.phone:1") != sealed  # random nonce
    assert cipher.decrypt(sealed, context="users.phone:1") == "+221771234567"
    with pytest.raises(PiiDecryptionError):
        cipher.decrypt(sealed, context="users.phone:2")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(PiiDecryptionError):
        cipher.decrypt(tampered, context="users.phone:1")


def test_pii_key_rotation_first_key_encrypts_all_keys_decrypt() -> None:
    old_key, new_key = new_key_b64(), new_key_b64()
    before = AesGcmPiiCipher.from_setting(old_key)
    sealed_before = before.encrypt("Awa", context="c")
    rotated = AesGcmPiiCipher.from_setting(f"{new_key}, {old_key}")
    assert rotated.decrypt(sealed_before, context="c") == "Awa"
    assert not rotated.is_current(sealed_before)
    sealed_after = rotated.encrypt("Awa", context="c")
    assert rotated.is_current(sealed_after)
    with pytest.raises(PiiDecryptionError):
        before.decrypt(sealed_after, context="c")
    with pytest.raises(PiiDecryptionError):
        AesGcmPiiCipher.from_setting(new_key).decrypt(sealed_before, context="c")


@pytest.mark.parametrize(
    "setting",
    [
        "",
        "not base64!!",
        base64.urlsafe_b64encode(b"short").decode(),
        base64.urlsafe_b64encode(b"x" * 48).decode(),
    ],
)
def test_bad_pii_keys_are_configuration_errors(setting: str) -> None:
    with pytest.raises(ConfigurationError):
        AesGcmPiiCipher.from_setting(setting)


def test_development_secrets_are_accepted_by_every_adapter(tmp_path: object) -> None:
    settings = Settings.from_env({"KORA_DEV_SECRETS_FILE": f"{tmp_path}/secrets.json"})
    AesGcmPiiCipher.from_setting(settings.secret("KORA_PII_ENCRYPTION_KEY"))
    HmacBlindIndex.from_setting(settings.secret("KORA_PII_INDEX_KEY"))
    Ed25519Keyring.from_json(settings.secret("KORA_JWT_SIGNING_KEYS"))


def test_blind_index_is_keyed_and_deterministic() -> None:
    key = new_key_b64()
    index = HmacBlindIndex.from_setting(key)
    assert index.phone("+221771234567") == HmacBlindIndex.from_setting(key).phone("+221771234567")
    assert len(index.phone("+221771234567")) == 32
    assert index.phone("+221771234567") != HmacBlindIndex.from_setting(new_key_b64()).phone("+221771234567")
    throttle_key = index.throttle_key("ip", "198.51.100.7")
    assert throttle_key.startswith("ip:")
    assert "198" not in throttle_key
    assert len(throttle_key) <= 80
    assert index.throttle_key("account", "ab") != index.throttle_key("ip", "ab")


def _claims(**overrides: object) -> AccessClaims:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    values: dict[str, object] = {
        "user_id": uuid.uuid4(),
        "session_id": uuid.uuid4(),
        "device_id": "d1",
        "roles": frozenset({Role.ADMIN, Role.SUPPORT}),
        "issued_at": now,
        "expires_at": now + timedelta(minutes=10),
        "token_id": "jti-1",
    }
    values.update(overrides)
    return AccessClaims(**values)  # type: ignore[arg-type]


def _signer(ring: str, audience: str = "kora-api") -> JwtEdDsaSigner:
    return JwtEdDsaSigner(Ed25519Keyring.from_json(ring), issuer="kora", audience=audience)


def test_signer_round_trips_claims() -> None:
    signer = _signer(keyring_json(("k1", ed25519_pem())))
    claims = _claims()
    assert signer.verify(signer.sign(claims)) == claims


def test_a_verify_only_public_key_verifies_old_tokens() -> None:
    old_pem = ed25519_pem()
    token = _signer(keyring_json(("old", old_pem))).sign(_claims())
    ring = json.dumps(
        [
            {"kid": "new", "private_key_pem": ed25519_pem()},
            {"kid": "old", "public_key_pem": public_pem(old_pem)},
        ]
    )
    rotated = _signer(ring)
    assert rotated.verify(token).token_id == "jti-1"
    assert rotated.verify(rotated.sign(_claims())).token_id == "jti-1"
    import jwt

    assert jwt.get_unverified_header(rotated.sign(_claims()))["kid"] == "new"


def test_jwks_lists_public_keys_only() -> None:
    signer = _signer(keyring_json(("k1", ed25519_pem()), ("k2", ed25519_pem())))
    keys = signer.jwks()["keys"]
    assert [key["kid"] for key in keys] == ["k1", "k2"]
    for key in keys:
        assert set(key) == {"kty", "crv", "x", "kid", "use", "alg"}
        assert (key["kty"], key["crv"], key["use"], key["alg"]) == ("OKP", "Ed25519", "sig", "EdDSA")
        assert len(base64.urlsafe_b64decode(key["x"] + "=")) == 32


def test_tokens_verify_with_the_published_jwks() -> None:
    import jwt

    signer = _signer(keyring_json(("k1", ed25519_pem())))
    token = signer.sign(_claims())
    jwk = jwt.PyJWK(signer.jwks()["keys"][0])
    claims = jwt.decode(
        token,
        jwk,
        algorithms=["EdDSA"],
        audience="kora-api",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["roles"] == ["admin", "support"]


def test_a_token_of_another_type_or_without_claims_is_refused() -> None:
    import jwt
    from cryptography.hazmat.primitives import serialization

    pem = ed25519_pem()
    signer = _signer(keyring_json(("k1", pem)))
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    base = {"iss": "kora", "aud": "kora-api", "sub": str(uuid.uuid4()), "iat": 1, "exp": 2}
    for headers, payload in (
        ({"kid": "k1"}, {**base, "sid": str(uuid.uuid4()), "did": "d", "roles": [], "jti": "j"}),
        ({"kid": "k1", "typ": "at+jwt"}, base),
        ({"kid": "k1", "typ": "at+jwt"}, {**base, "sid": "x", "did": "d", "roles": [], "jti": "j"}),
        (
            {"kid": "k1", "typ": "at+jwt"},
            {**base, "sid": str(uuid.uuid4()), "did": 1, "roles": [], "jti": "j"},
        ),
        (
            {"kid": "k1", "typ": "at+jwt"},
            {**base, "sid": str(uuid.uuid4()), "did": "d", "roles": ["god"], "jti": "j"},
        ),
    ):
        token = jwt.encode(payload, key, algorithm="EdDSA", headers=headers)  # type: ignore[arg-type]
        with pytest.raises(InvalidToken):
            signer.verify(token)


@pytest.mark.parametrize(
    "ring",
    [
        "not json",
        "[]",
        "{}",
        json.dumps([{"kid": "a"}]),
        json.dumps([{"private_key_pem": "x"}]),
        json.dumps([{"kid": "a", "private_key_pem": "not a pem"}]),
        "PUBLIC_ONLY",
        "DUPLICATE",
    ],
)
def test_bad_keyrings_are_configuration_errors(ring: str) -> None:
    pem = ed25519_pem()
    if ring == "PUBLIC_ONLY":
        ring = json.dumps([{"kid": "a", "public_key_pem": public_pem(pem)}])
    if ring == "DUPLICATE":
        ring = keyring_json(("a", pem), ("a", ed25519_pem()))
    with pytest.raises(ConfigurationError):
        Ed25519Keyring.from_json(ring)


def test_a_non_ed25519_key_is_refused() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    with pytest.raises(ConfigurationError, match="Ed25519"):
        Ed25519Keyring.from_json(keyring_json(("ec", pem)))


@pytest.mark.parametrize(
    ("raw", "e164", "national"),
    [
        ("+221771234567", "+221771234567", "771234567"),
        ("+221 77 123 45 67", "+221771234567", "771234567"),
        ("00221771234567", None, None),
        ("+2250701020304", "+2250701020304", "0701020304"),
        ("+33 6 12 34 56 78", "+33612345678", "612345678"),
    ],
)
def test_phone_numbers_are_normalized_to_e164(raw: str, e164: str | None, national: str | None) -> None:
    normalizer = PhonenumbersNormalizer()
    if e164 is None:
        with pytest.raises(InvalidPhoneNumber):
            normalizer.normalize(raw)
        return
    phone = normalizer.normalize(raw)
    assert (phone.e164, phone.national_number) == (e164, national)


def test_a_default_region_allows_national_input() -> None:
    assert PhonenumbersNormalizer(default_region="SN").normalize("77 123 45 67").e164 == "+221771234567"


@pytest.mark.parametrize("raw", ["", "   ", "hello", "+1", "+221 12", "+99912345678", "+221" + "7" * 40])
def test_invalid_phone_numbers(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber):
        PhonenumbersNormalizer().normalize(raw)


def test_the_bundled_common_password_list() -> None:
    common = load_common_passwords()
    assert len(common) >= 1000
    assert sum(1 for p in common if len(p) >= 10) >= 500
    for password in (
        "123456",
        "password",
        "qwertyuiop",
        "password123",
        "1234567890",
        "iloveyou",
        "azerty123",
    ):
        assert password in common
    assert all(p == p.lower() and p.strip() == p for p in common)


def test_verified_tokens_are_remembered_but_a_forged_one_never_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = JwtEdDsaSigner(
        Ed25519Keyring.from_json(keyring_json(("k1", ed25519_pem()))), issuer="kora", audience="kora-api", cache_size=2
    )
    tokens = [signer.sign(_claims()) for _ in range(3)]
    first = signer.verify(tokens[0])
    decodes: list[str] = []
    real_verify = signer._verify
    monkeypatch.setattr(signer, "_verify", lambda token: decodes.append(token) or real_verify(token))
    assert signer.verify(tokens[0]) == first  # remembered: no second signature check
    assert decodes == []
    head, payload, signature = tokens[0].split(".")
    forged = f"{head}.{payload}.{signature[:-2]}AA"
    with pytest.raises(InvalidToken):
        signer.verify(forged)
    with pytest.raises(InvalidToken):  # a refusal is not remembered as a success either
        signer.verify(forged)
    signer.verify(tokens[1])
    signer.verify(tokens[2])  # the cache holds two: the oldest goes
    signer.verify(tokens[0])
    assert decodes.count(tokens[0]) == 1

"""Service identity without I/O: the claim rules against a fixed clock (leeway edges), the key
directory's configuration checks, and the reader refusing what is not a service token of a
registered key (a user access token included)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from kora.identity import build_service_authenticator
from kora.identity.adapters.service_tokens import JwtServiceTokenReader, ServiceKeyDirectory
from kora.identity.adapters.tokens import Ed25519Keyring, JwtEdDsaSigner, KeyringEntry
from kora.identity.domain import AccessClaims, InvalidToken, Role
from kora.identity.domain.service_identity import (
    ServiceClaims,
    ServiceIdentity,
    ServiceScopeMissing,
    ServiceTokenInvalid,
    admit_service_claims,
    require_scope,
)
from kora.identity.service_auth import ServiceAuthenticator
from kora.kernel import FixedClock
from kora.platform.settings import ConfigurationError, Settings
from tests.support.service_auth import RECON, forge, identity_entry, new_service_key, signer

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
RECON_IDENTITY = ServiceIdentity(RECON, "recon-1", frozenset({"payments:read", "ledger:correct"}))


def claims(**changes: object) -> ServiceClaims:
    values: dict[str, object] = {
        "kid": "recon-1",
        "issuer": RECON,
        "subject": RECON,
        "audience": ("kora-core",),
        "scopes": frozenset({"payments:read"}),
        "issued_at": NOW,
        "expires_at": NOW + timedelta(minutes=2),
        "not_before": None,
        "token_id": "jti-1",
    }
    values.update(changes)
    return ServiceClaims(**values)  # type: ignore[arg-type]


def test_valid_claims_admit_the_service() -> None:
    caller = admit_service_claims(claims(), RECON_IDENTITY, now=NOW + timedelta(minutes=1))
    assert (caller.service, caller.actor, caller.token_id) == (RECON, f"service:{RECON}", "jti-1")
    assert require_scope(caller, "payments:read") is caller
    with pytest.raises(ServiceScopeMissing):
        require_scope(caller, "ledger:correct")


@pytest.mark.parametrize(
    ("changes", "now", "reason"),
    [
        ({"audience": ("kora-api",)}, NOW, "wrong_audience"),
        ({"issuer": "kora-other"}, NOW, "wrong_issuer"),
        ({"subject": "kora-other"}, NOW, "wrong_issuer"),
        ({"expires_at": NOW + timedelta(minutes=5, seconds=1)}, NOW, "lifetime_too_long"),
        ({"expires_at": NOW}, NOW, "lifetime_too_long"),
        ({}, NOW + timedelta(minutes=2, seconds=30), "expired"),  # exp + leeway reached
        ({}, NOW - timedelta(seconds=31), "not_yet_valid"),
        ({"not_before": NOW + timedelta(minutes=1)}, NOW, "not_yet_valid"),
        ({"scopes": frozenset({"payments:query"})}, NOW, "scope_not_granted"),
        ({"scopes": frozenset()}, NOW, "scope_not_granted"),
    ],
)
def test_claims_breaking_a_rule_are_refused_with_its_reason(
    changes: dict[str, object], now: datetime, reason: str
) -> None:
    with pytest.raises(ServiceTokenInvalid) as refused:
        admit_service_claims(claims(**changes), RECON_IDENTITY, now=now)
    assert (refused.value.reason, refused.value.service, refused.value.code) == (reason, RECON, "service_token_invalid")


def test_the_leeway_absorbs_small_clock_skew_both_ways() -> None:
    admit_service_claims(claims(), RECON_IDENTITY, now=NOW - timedelta(seconds=29))
    admit_service_claims(claims(), RECON_IDENTITY, now=NOW + timedelta(minutes=2, seconds=29))


@pytest.mark.parametrize(
    "setting",
    [
        "not json",
        '{"service": "x"}',
        '[{"service": "kora-reconciliation", "kid": "k1", "public_key": "AAAA", "scopes": ["payments:read"]}]',
        '[{"service": "Bad Name", "kid": "k1", "public_key": "%s", "scopes": ["payments:read"]}]',
        '[{"service": "kora-reconciliation", "kid": "k1", "public_key": "%s", "scopes": []}]',
        '[{"service": "kora-reconciliation", "kid": "k1", "public_key": "%s", "scopes": ["everything"]}]',
        '[{"service": "kora-reconciliation", "kid": "k1", "public_key": "%s", "scopes": ["a:b"], "private": 1}]',
    ],
)
def test_a_malformed_setting_refuses_to_start(setting: str) -> None:
    public = new_service_key().public_key()
    with pytest.raises(ConfigurationError):
        ServiceKeyDirectory.from_json(setting.replace("%s", public))


def test_a_kid_belongs_to_one_service_only() -> None:
    key = new_service_key("same")
    entries = [identity_entry(key), identity_entry(new_service_key("same"), "kora-other")]
    with pytest.raises(ConfigurationError, match="duplicate kid"):
        ServiceKeyDirectory.from_json(json.dumps(entries))
    assert ServiceKeyDirectory.from_json(None).services == frozenset()


def test_the_reader_checks_type_kid_and_signature_and_never_takes_a_user_token() -> None:
    key = new_service_key("recon-1")
    directory = ServiceKeyDirectory.from_json(json.dumps([identity_entry(key)]))
    reader = JwtServiceTokenReader(directory)
    identity, read = reader.read(signer(key).token("ledger:correct", "payments:read"))
    assert identity.service == RECON
    assert read.scopes == frozenset({"ledger:correct", "payments:read"})

    user_key = Ed25519Keyring([KeyringEntry("recon-1", key.private_key.public_key(), key.private_key)])
    user_signer = JwtEdDsaSigner(user_key, issuer="kora", audience="kora-api")
    at = datetime.now(UTC)
    access = user_signer.sign(
        AccessClaims(
            user_id=uuid.uuid4(),
            session_id=uuid.uuid4(),
            device_id="d1",
            roles=frozenset({Role.ADMIN}),
            issued_at=at,
            expires_at=at + timedelta(minutes=5),
            token_id="t1",
        )
    )
    # Same key, same kid: still refused, by its type. And a service token is no access token.
    with pytest.raises(ServiceTokenInvalid) as refused:
        reader.read(access)
    assert refused.value.reason == "wrong_type"
    with pytest.raises(InvalidToken):
        user_signer.verify(signer(key).token("payments:read"))
    hs256 = jwt.encode(
        {"iss": RECON}, "a-shared-secret-is-not-accepted-here", algorithm="HS256", headers={"kid": "recon-1"}
    )
    for token, reason in [
        ("", "malformed"),
        ("x" * 5000, "malformed"),
        (forge(key, headers={"kid": None}), "unknown_kid"),
        (hs256, "wrong_type"),
        (forge(new_service_key("recon-1")), "bad_signature"),
        (forge(key, claims={"scope": None}), "malformed"),
        (forge(key, claims={"iat": "yesterday"}), "malformed"),
    ]:
        with pytest.raises(ServiceTokenInvalid) as refused:
            reader.read(token)
        assert refused.value.reason == reason, token[:20]


def test_the_authenticator_judges_by_the_cores_clock() -> None:
    key = new_service_key("recon-1")
    reader = JwtServiceTokenReader(ServiceKeyDirectory.from_json(json.dumps([identity_entry(key)])))
    token = forge(key, issued=NOW)
    assert ServiceAuthenticator(reader, FixedClock(NOW)).authenticate(token, "payments:read").service == RECON
    late = ServiceAuthenticator(reader, FixedClock(NOW + timedelta(minutes=3)))
    with pytest.raises(ServiceTokenInvalid, match="expired"):
        late.authenticate(token, "payments:read")
    with pytest.raises(ServiceTokenInvalid, match="missing"):
        late.authenticate(None, "payments:read")


def test_the_setting_is_read_from_the_environment_or_a_file(tmp_path: Path) -> None:
    key = new_service_key("recon-9")
    path = tmp_path / "identities.json"
    path.write_text(json.dumps([identity_entry(key)]))
    settings = Settings.from_env(
        {"KORA_DEV_SECRETS_FILE": str(tmp_path / "dev.json"), "KORA_SERVICE_IDENTITIES_FILE": str(path)}
    )
    authenticator = build_service_authenticator(settings, FixedClock(datetime.now(UTC)))
    assert authenticator.services == frozenset({RECON})
    assert authenticator.authenticate(signer(key).token("payments:read"), "payments:read").kid == "recon-9"
    nobody = build_service_authenticator(Settings(), FixedClock(NOW))
    with pytest.raises(ServiceTokenInvalid, match="unknown_kid"):
        nobody.authenticate(signer(key).token("payments:read"), "payments:read")

"""The review settings: the audit key from the environment or a *_FILE, refused missing in
production, generated once into the developer's secrets file otherwise; the escalation delay."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import timedelta
from pathlib import Path

import pytest

from kora.platform.settings import ConfigurationError
from kora.reconciliation.service.review_settings import AUDIT_KEY, ReviewSettings


def test_the_key_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    raw = secrets.token_bytes(32)
    text = base64.urlsafe_b64encode(raw).decode()
    assert ReviewSettings.from_env({AUDIT_KEY: text}).audit_key == raw
    secret = tmp_path / "audit-key"
    secret.write_text(text + "\n")
    settings = ReviewSettings.from_env({f"{AUDIT_KEY}_FILE": str(secret), "KORA_RECON_ESCALATE_AFTER_HOURS": "6"})
    assert (settings.audit_key, settings.escalate_after, settings.generated_key) == (raw, timedelta(hours=6), False)


def test_production_refuses_to_start_without_the_key() -> None:
    with pytest.raises(ConfigurationError, match=AUDIT_KEY):
        ReviewSettings.from_env({"KORA_ENV": "production"})


def test_development_generates_the_key_once_and_keeps_other_secrets(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"KORA_RECON_REPORT_KEY": "kept"}))
    first = ReviewSettings.from_env({"KORA_DEV_SECRETS_FILE": str(path)})
    second = ReviewSettings.from_env({"KORA_DEV_SECRETS_FILE": str(path)})
    assert first.generated_key
    assert first.audit_key == second.audit_key
    assert json.loads(path.read_text())["KORA_RECON_REPORT_KEY"] == "kept"
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "env",
    [
        {AUDIT_KEY: base64.urlsafe_b64encode(b"short").decode()},
        {AUDIT_KEY: "not base64 !!"},
        {AUDIT_KEY: base64.urlsafe_b64encode(bytes(32)).decode(), "KORA_RECON_ESCALATE_AFTER_HOURS": "0"},
        {AUDIT_KEY: base64.urlsafe_b64encode(bytes(32)).decode(), "KORA_RECON_ESCALATE_AFTER_HOURS": "soon"},
    ],
)
def test_bad_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        ReviewSettings.from_env(env)

"""The review queue's settings, from the environment only (and `*_FILE` secrets).

- ``KORA_RECON_AUDIT_KEY``: the HMAC key of the review audit chain (urlsafe base64 of at least
  16 bytes). Required in production; in development generated once into the developer's
  secrets file (KORA_DEV_SECRETS_FILE, 0600, never committed), like the report key.
- ``KORA_RECON_ESCALATE_AFTER_HOURS``: how long the automatic rule (asking the core about a
  late success) may work on a case before it goes to people; 24 by default.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from kora.platform.settings import ConfigurationError, read_setting
from kora.reconciliation.service.settings import dev_secret

AUDIT_KEY = "KORA_RECON_AUDIT_KEY"
ESCALATE_AFTER = "KORA_RECON_ESCALATE_AFTER_HOURS"


@dataclass(frozen=True)
class ReviewSettings:
    audit_key: bytes
    escalate_after: timedelta = timedelta(hours=24)
    generated_key: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReviewSettings:
        env = os.environ if env is None else env
        text = read_setting(env, AUDIT_KEY)
        generated = False
        if not text:
            if env.get("KORA_ENV", "development") == "production":
                raise ConfigurationError(f"refusing to start in production without the secret {AUDIT_KEY}")
            text = _dev_key(Path(env.get("KORA_DEV_SECRETS_FILE", ".kora-dev-secrets.json")))
            generated = True
        hours = env.get(ESCALATE_AFTER, "24")
        try:
            escalate_after = timedelta(hours=float(hours))
        except ValueError as exc:
            raise ConfigurationError(f"{ESCALATE_AFTER} is a number of hours") from exc
        if escalate_after <= timedelta(0):
            raise ConfigurationError(f"{ESCALATE_AFTER} must be positive")
        return cls(audit_key=_decode(text), escalate_after=escalate_after, generated_key=generated)


def _decode(text: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError(f"{AUDIT_KEY} is urlsafe base64") from exc
    if len(key) < 16:
        raise ConfigurationError(f"{AUDIT_KEY} must decode to at least 16 bytes")
    return key


def _dev_key(path: Path) -> str:
    # One dev secrets file for the whole service, written the same way (kept entries, mode 0600).
    return dev_secret(path, AUDIT_KEY, lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())

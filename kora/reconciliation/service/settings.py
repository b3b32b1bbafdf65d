"""The reconciliation service's settings, from the environment only (and `*_FILE` secrets).

In production it refuses to start without KORA_RECON_REPORT_KEY or on SQLite. In development
a missing key is generated once and kept in the developer's secrets file (KORA_DEV_SECRETS_FILE,
0600, never committed) next to the core's, so stored reports stay readable across restarts.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kora.platform.settings import ConfigurationError, read_setting

DEFAULT_RECON_SQLITE_URL = "sqlite+aiosqlite:///./kora-recon.db"
REPORT_KEY = "KORA_RECON_REPORT_KEY"


@dataclass(frozen=True)
class ReconSettings:
    env: str
    database_url: str
    report_key: str
    generated_key: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReconSettings:
        env = os.environ if env is None else env
        kora_env = env.get("KORA_ENV", "development")
        database_url = read_setting(env, "KORA_RECON_DATABASE_URL") or DEFAULT_RECON_SQLITE_URL
        key = read_setting(env, REPORT_KEY)
        if kora_env == "production":
            if not key:
                raise ConfigurationError(f"refusing to start in production without the secret {REPORT_KEY}")
            if not database_url.startswith("postgresql"):
                raise ConfigurationError(
                    "production needs PostgreSQL (KORA_RECON_DATABASE_URL=postgresql+asyncpg://...)"
                )
        generated = False
        if not key:
            key = _dev_key(Path(env.get("KORA_DEV_SECRETS_FILE", ".kora-dev-secrets.json")))
            generated = True
        return cls(env=kora_env, database_url=database_url, report_key=key, generated_key=generated)


def _dev_key(path: Path) -> str:
    data: dict[str, str] = {}
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get(REPORT_KEY):
            return data[REPORT_KEY]
    # Every other entry is kept as it is: replacing a key would make data written with it unreadable.
    data[REPORT_KEY] = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through os.open: tighten it
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    return data[REPORT_KEY]

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kora.platform.settings import ConfigurationError, read_setting

DEFAULT_RECON_SQLITE_URL = "sqlite+aiosqlite:///./kora-recon.db"
REPORT_KEY = "KORA_RECON_REPORT_KEY"


SERVICE_KEY = "KORA_RECON_SERVICE_KEY"
SERVICE_NAME = "kora-reconciliation"


@dataclass(frozen=True)
class ReconSettings:
    env: str
    database_url: str
    report_key: str
    generated_key: bool = False
    # The core's service API (ADR 0023): where it is, and the service's own identity there. The
    # key (a secret: JSON {"kid", "private_key_pem"} of an Ed25519 key) signs the service's
    # tokens; its public half is registered in the core's KORA_SERVICE_IDENTITIES
    # (`kora recon service-key` prints the entry). Unset in production: no call to the core.
    core_url: str = "http://127.0.0.1:8000"
    service_name: str = SERVICE_NAME
    service_key: str | None = None
    generated_service_key: bool = False
    core_timeout_seconds: float = 5.0

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
        service_key = read_setting(env, SERVICE_KEY)
        generated_service_key = False
        if not service_key and kora_env != "production":
            service_key = _dev_secret(
                Path(env.get("KORA_DEV_SECRETS_FILE", ".kora-dev-secrets.json")), SERVICE_KEY, _new_service_key
            )
            generated_service_key = True
        return cls(
            env=kora_env,
            database_url=database_url,
            report_key=key,
            generated_key=generated,
            core_url=(env.get("KORA_RECON_CORE_URL") or "http://127.0.0.1:8000").rstrip("/"),
            service_name=env.get("KORA_RECON_SERVICE_NAME") or SERVICE_NAME,
            service_key=service_key or None,
            generated_service_key=generated_service_key,
            core_timeout_seconds=float(env.get("KORA_RECON_CORE_TIMEOUT_SECONDS", 5.0)),
        )


def _dev_key(path: Path) -> str:
    return _dev_secret(path, REPORT_KEY, lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())


def _new_service_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return json.dumps({"kid": "recon-dev-" + secrets.token_hex(4), "private_key_pem": pem.decode()})


def _dev_secret(path: Path, name: str, make: Callable[[], str]) -> str:
    data: dict[str, str] = {}
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get(name):
            return data[name]
    # Every other entry is kept as it is: replacing a key would make data written with it unreadable.
    data[name] = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through os.open: tighten it
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    return data[name]

"""The reconciliation service's settings, from the environment only (and `*_FILE` secrets).

In production it refuses to start without KORA_RECON_REPORT_KEY or on SQLite (and the worker
without KORA_RECON_EVENT_SIGNING_KEYS). In development a missing key is generated once and kept
in the developer's secrets file (KORA_DEV_SECRETS_FILE, 0600, never committed) next to the
core's, so stored reports stay readable and signed outcomes verifiable across restarts.
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
EVENT_SIGNING_KEYS = "KORA_RECON_EVENT_SIGNING_KEYS"
CORE_EVENT_SIGNING_KEYS = "KORA_EVENT_SIGNING_KEYS"
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
    core_timeout_seconds: float = 5.0

    # --- the worker (`kora recon worker`): its events, its bus, its match schedule ---------------
    # Ed25519 keys the service signs its outcome events with (JSON list of {kid, private_key_pem},
    # the first signs); the core trusts their public keys (`kora recon event-keys`).
    event_signing_keys: str | None = None
    # The core's public keys (JSON list of {kid, public_key_pem}): what the `recon` consumer
    # verifies `payment.status_changed` against. In development, derived from the core's dev key.
    event_verify_keys: str | None = None
    # `inprocess`: the core's embedded stream, a table of the core's database (core_database_url);
    # `nats`: JetStream, as this service's own NATS user (kora-recon).
    events_bus: str = "inprocess"
    core_database_url: str = "sqlite+aiosqlite:///./kora.db"
    nats_url: str = "nats://127.0.0.1:4222"
    nats_user: str | None = None
    nats_password: str | None = None
    nats_stream: str = "KORA_EVENTS"
    nats_dlq_stream: str = "KORA_DLQ"
    nats_namespace: str = ""
    # How often the worker matches the reports not matched yet and re-matches the open ones
    # (PENDING or MISSING_INTERNAL results) of reports imported within rematch_days.
    match_interval_seconds: float = 60.0
    rematch_days: int = 7
    relay_idle_seconds: float = 0.2
    dev_secrets_file: str = ".kora-dev-secrets.json"

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
        dev_path = Path(env.get("KORA_DEV_SECRETS_FILE", ".kora-dev-secrets.json"))
        if not key:
            key = dev_secret(dev_path, REPORT_KEY, _new_report_key)
            generated = True
        service_key = read_setting(env, SERVICE_KEY)
        signing = read_setting(env, EVENT_SIGNING_KEYS)
        verify = read_setting(env, "KORA_EVENT_VERIFY_KEYS")
        if kora_env != "production":  # the signing keys are generated when first needed
            verify = verify or _core_dev_verify_keys(dev_path)
        bus = env.get("KORA_EVENTS_BUS", "inprocess")
        if bus not in ("inprocess", "nats"):
            raise ConfigurationError("KORA_EVENTS_BUS must be `inprocess` or `nats`")
        return cls(
            env=kora_env,
            database_url=database_url,
            report_key=key,
            generated_key=generated,
            core_url=(env.get("KORA_RECON_CORE_URL") or "http://127.0.0.1:8000").rstrip("/"),
            service_name=env.get("KORA_RECON_SERVICE_NAME") or SERVICE_NAME,
            service_key=service_key or None,
            core_timeout_seconds=float(env.get("KORA_RECON_CORE_TIMEOUT_SECONDS", 5.0)),
            event_signing_keys=signing,
            event_verify_keys=verify,
            events_bus=bus,
            core_database_url=read_setting(env, "KORA_DATABASE_URL") or "sqlite+aiosqlite:///./kora.db",
            nats_url=env.get("KORA_NATS_URL", "nats://127.0.0.1:4222"),
            nats_user=read_setting(env, "KORA_NATS_USER"),
            nats_password=read_setting(env, "KORA_NATS_PASSWORD"),
            nats_stream=env.get("KORA_NATS_STREAM", "KORA_EVENTS"),
            nats_dlq_stream=env.get("KORA_NATS_DLQ_STREAM", "KORA_DLQ"),
            nats_namespace=env.get("KORA_NATS_NAMESPACE", ""),
            match_interval_seconds=float(env.get("KORA_RECON_MATCH_INTERVAL_SECONDS", "60")),
            rematch_days=int(env.get("KORA_RECON_REMATCH_DAYS", "7")),
            dev_secrets_file=str(dev_path),
        )

    @property
    def generated_service_key(self) -> bool:
        """True when the service's identity is (or would be) the development key."""
        return not self.service_key and self.env != "production"

    def require_service_key(self) -> str:
        """The service's identity key; in development generated once into the dev secrets file
        when none is configured (only when first needed: commands that never call the core write
        nothing); ConfigurationError in production without the secret."""
        if self.service_key:
            return self.service_key
        if self.env == "production":
            raise ConfigurationError(f"refusing to call the core without {SERVICE_KEY}")
        return dev_secret(Path(self.dev_secrets_file), SERVICE_KEY, _new_service_key)

    def require_event_keys(self) -> str:
        """The signing keys; in development generated once into the dev secrets file when none
        are configured; ConfigurationError in production without the secret."""
        if self.event_signing_keys:
            return self.event_signing_keys
        if self.env == "production":
            raise ConfigurationError(f"refusing to start the worker without the secret {EVENT_SIGNING_KEYS}")
        return dev_secret(Path(self.dev_secrets_file), EVENT_SIGNING_KEYS, _new_event_keys)


def _new_report_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def _new_event_keys() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = (
        Ed25519PrivateKey.generate()
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    return json.dumps([{"kid": "dev-recon-" + secrets.token_hex(4), "private_key_pem": pem}])


def _core_dev_verify_keys(path: Path) -> str | None:
    """Development: the core's public event keys, from the core's dev signing keys in the same
    secrets file (None until the core has generated them)."""
    if not path.exists():
        return None
    raw = json.loads(path.read_text(encoding="utf-8")).get(CORE_EVENT_SIGNING_KEYS)
    if not raw:
        return None
    from kora.events.signing import load_signing_keys, public_key_pem

    _, keys = load_signing_keys(raw)
    return json.dumps([{"kid": kid, "public_key_pem": public_key_pem(key)} for kid, key in keys.items()])


def _new_service_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return json.dumps({"kid": "recon-dev-" + secrets.token_hex(4), "private_key_pem": pem.decode()})


def dev_secret(path: Path, name: str, make: Callable[[], str]) -> str:
    """The development secret ``name`` from the dev secrets file, made once with ``make``."""
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

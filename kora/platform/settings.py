"""Settings from the environment only (and `*_FILE` secret files). Built by the composition
root, never at import time.

Secrets: in `production` the service refuses to start without them; in development Kora
generates ephemeral ones and says so in the log (`Settings.generated_secrets`).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets as _secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///./kora.db"


class ConfigurationError(RuntimeError):
    """The configuration cannot run safely (e.g. a production secret is missing)."""


def read_setting(env: Mapping[str, str], name: str) -> str | None:
    """`NAME` from the environment, or the contents of the file named by `NAME_FILE`."""
    value = env.get(name)
    if value:
        return value
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(f"{name}_FILE points to an unreadable file") from exc
    return None


# Secrets whose absence is fatal in production. The values are parsed by their owning module.
SECRET_NAMES = (
    "KORA_JWT_SIGNING_KEYS",  # JSON list of {"kid": ..., "private_key_pem": ...}; first one signs
    "KORA_PII_ENCRYPTION_KEY",  # urlsafe-base64 32-byte key(s), comma-separated, first one encrypts
    "KORA_PII_INDEX_KEY",  # key of the HMAC blind index used to look phone numbers up
    "KORA_AUDIT_KEY",  # HMAC key of the audit hash chain
    "KORA_EVENT_SIGNING_KEYS",  # JSON list of {"kid": ..., "private_key_pem": ...} (Ed25519); first one signs
)


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    database_url: str = DEFAULT_SQLITE_URL
    secrets: Mapping[str, str] = field(default_factory=dict)
    generated_secrets: tuple[str, ...] = ()
    idempotency_ttl_seconds: int = 24 * 3600
    access_token_ttl_seconds: int = 600
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    jwt_issuer: str = "kora"
    jwt_audience: str = "kora-api"
    login_max_failures: int = 5
    login_lockout_seconds: int = 900
    login_ip_max_failures: int = 50
    cors_origins: tuple[str, ...] = ()
    otel_exporter: str = "none"  # none | console | otlp
    otel_endpoint: str | None = None
    log_level: str = "INFO"
    log_json: bool = True
    db_pool_size: int = 20
    # Argon2id cost; production keeps RFC 9106's low-memory profile (t=3, 64 MiB).
    argon2_time_cost: int = 3
    audit_chains: int = 16
    session_check_seconds: int = 5
    group_commit_max: int = 64
    # The pending-payment sweeper (status queries): how often, from what age, and when to give up.
    sweep_interval_seconds: int = 30
    # A MoMo-style provider (e.g. `kora simulator`) at this base URL, registered as `momo`.
    provider_momo_url: str | None = None
    default_provider: str = "sandbox"
    # Routing and fallback: JSON {"collect"|"disburse": {"XOF"|"*": ["provider", ...]}}; unset: the default.
    provider_routing: str | None = None
    # Settlement lag per provider, JSON {"momo": 1}; J+1 for any provider not listed.
    provider_settlement_days: str | None = None
    # A card acquirer at this base URL, registered as `card`; its notifications (chargebacks) are
    # verified with KORA_PROVIDER_CARD_WEBHOOK_SECRET (comma-separated while rotating).
    provider_card_url: str | None = None
    # The card fee a merchant pays on a capture: basis points of the captured amount, rounded
    # half up, at least the minimum (minor units).
    card_fee_bps: int = 250
    card_fee_min: int = 0
    pending_min_age_seconds: int = 60
    pending_max_age_seconds: int = 24 * 3600
    otel_sample_ratio: float = 1.0
    argon2_memory_kib: int = 65536
    # Merchant payments: the fee in basis points of the amount (100 = 1 %), rounded half up to a
    # whole minor unit, and never below the minimum (minor units).
    merchant_fee_bps: int = 100
    merchant_fee_min: int = 0
    # A Wave-style provider at this base URL, registered as `wave`; its webhooks are verified with
    # the secret(s) KORA_PROVIDER_WAVE_WEBHOOK_SECRET (comma-separated while rotating).
    provider_wave_url: str | None = None
    # Where providers reach this service (MoMo's X-Callback-Url is built on it); unset: no callbacks.
    public_base_url: str | None = None
    # How far a signed webhook's timestamp may be from our clock, both ways.
    webhook_tolerance_seconds: int = 300
    # Anti-replay (ADR 0012): how far a debit request's X-Request-Timestamp may be from our clock.
    replay_window_seconds: int = 300
    # Events (ADR 0018): `inprocess` (the embedded default: a stream table in the same database)
    # or `nats` (JetStream at nats_url, with the credentials in KORA_NATS_USER/KORA_NATS_PASSWORD).
    events_bus: str = "inprocess"
    nats_url: str = "nats://127.0.0.1:4222"
    nats_user: str | None = None
    nats_password: str | None = None
    nats_stream: str = "KORA_EVENTS"
    nats_dlq_stream: str = "KORA_DLQ"
    # A prefix on every subject (e.g. `staging`), so environments can share one NATS cluster.
    nats_namespace: str = ""
    # The API process also runs the relay and the consumers (the embedded default); a
    # production deployment runs `kora relay` and `kora worker` instead.
    events_in_process: bool = True
    relay_batch_size: int = 1000
    relay_idle_seconds: float = 0.05
    consumer_max_deliver: int = 5
    # Public keys (JSON list of {"kid", "public_key_pem"}) of event producers other than this
    # process's own signing keys, e.g. in a consumer-only deployment.
    event_verify_keys: str | None = None
    # Service-to-service identity (ADR 0023): the services the core trusts, a JSON list of
    # {"service", "kid", "public_key" (base64url raw Ed25519), "scopes": [...]}. Public keys,
    # not secrets; unset: no service may call /v1/service.
    service_identities: str | None = None
    # The largest correction (write-off, manual credit or debit) a service may post, minor units.
    correction_max_amount: int = 1_000_000
    # The risk engine on the payment path (issue #6): the policy file (reloaded when it changes;
    # unset: the shipped kora/risk/policies/default.yaml) and the KYC tier customers are judged
    # under until identity records one per customer.
    risk_enabled: bool = True
    risk_policy_file: str | None = None
    risk_default_tier: str = "tier1"

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def secret(self, name: str) -> str:
        try:
            return self.secrets[name]
        except KeyError:
            raise ConfigurationError(f"secret {name} is not configured") from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        kora_env = env.get("KORA_ENV", "development")
        secrets: dict[str, str] = {}
        missing: list[str] = []
        for name in SECRET_NAMES:
            value = read_setting(env, name)
            if value:
                secrets[name] = value
            else:
                missing.append(name)
        if missing and kora_env == "production":
            raise ConfigurationError("refusing to start in production without secrets: " + ", ".join(missing))
        if missing:
            dev_path = Path(env.get("KORA_DEV_SECRETS_FILE", ".kora-dev-secrets.json"))
            generated = load_or_create_dev_secrets(dev_path)
            for name in missing:
                secrets[name] = generated[name]
        for name in _webhook_secret_names(env):  # optional: required only where a provider needs it
            value = read_setting(env, name)
            if value:
                secrets[name] = value
        database_url = read_setting(env, "KORA_DATABASE_URL") or DEFAULT_SQLITE_URL
        if kora_env == "production" and not database_url.startswith("postgresql"):
            raise ConfigurationError("production needs PostgreSQL (KORA_DATABASE_URL=postgresql+asyncpg://...)")
        origins = tuple(o.strip() for o in env.get("KORA_CORS_ORIGINS", "").split(",") if o.strip())
        return cls(
            env=kora_env,
            database_url=database_url,
            secrets=secrets,
            generated_secrets=tuple(missing),
            idempotency_ttl_seconds=int(env.get("KORA_IDEMPOTENCY_TTL_SECONDS", 24 * 3600)),
            access_token_ttl_seconds=int(env.get("KORA_ACCESS_TOKEN_TTL_SECONDS", 600)),
            refresh_token_ttl_seconds=int(env.get("KORA_REFRESH_TOKEN_TTL_SECONDS", 30 * 24 * 3600)),
            login_max_failures=int(env.get("KORA_LOGIN_MAX_FAILURES", 5)),
            login_lockout_seconds=int(env.get("KORA_LOGIN_LOCKOUT_SECONDS", 900)),
            login_ip_max_failures=int(env.get("KORA_LOGIN_IP_MAX_FAILURES", 50)),
            cors_origins=origins,
            otel_exporter=env.get("KORA_OTEL_EXPORTER", "none"),
            otel_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            log_level=env.get("KORA_LOG_LEVEL", "INFO"),
            log_json=env.get("KORA_LOG_JSON", "true").lower() != "false",
            db_pool_size=int(env.get("KORA_DB_POOL_SIZE", 20)),
            argon2_time_cost=int(env.get("KORA_ARGON2_TIME_COST", 3)),
            audit_chains=int(env.get("KORA_AUDIT_CHAINS", 16)),
            session_check_seconds=int(env.get("KORA_SESSION_CHECK_SECONDS", 5)),
            group_commit_max=int(env.get("KORA_GROUP_COMMIT_MAX", 64)),
            sweep_interval_seconds=int(env.get("KORA_SWEEP_INTERVAL_SECONDS", 30)),
            provider_momo_url=env.get("KORA_PROVIDER_MOMO_URL") or None,
            default_provider=env.get("KORA_DEFAULT_PROVIDER", "sandbox"),
            provider_routing=env.get("KORA_PROVIDER_ROUTING") or None,
            provider_settlement_days=env.get("KORA_PROVIDER_SETTLEMENT_DAYS") or None,
            provider_card_url=env.get("KORA_PROVIDER_CARD_URL") or None,
            card_fee_bps=int(env.get("KORA_CARD_FEE_BPS", 250)),
            card_fee_min=int(env.get("KORA_CARD_FEE_MIN", 0)),
            pending_min_age_seconds=int(env.get("KORA_PENDING_MIN_AGE_SECONDS", 60)),
            pending_max_age_seconds=int(env.get("KORA_PENDING_MAX_AGE_SECONDS", 24 * 3600)),
            otel_sample_ratio=float(env.get("KORA_OTEL_SAMPLE_RATIO", 1.0)),
            argon2_memory_kib=int(env.get("KORA_ARGON2_MEMORY_KIB", 65536)),
            merchant_fee_bps=int(env.get("KORA_MERCHANT_FEE_BPS", 100)),
            merchant_fee_min=int(env.get("KORA_MERCHANT_FEE_MIN", 0)),
            provider_wave_url=env.get("KORA_PROVIDER_WAVE_URL") or None,
            public_base_url=env.get("KORA_PUBLIC_BASE_URL") or None,
            webhook_tolerance_seconds=int(env.get("KORA_WEBHOOK_TOLERANCE_SECONDS", 300)),
            replay_window_seconds=int(env.get("KORA_REPLAY_WINDOW_SECONDS", 300)),
            events_bus=env.get("KORA_EVENTS_BUS", "inprocess"),
            nats_url=env.get("KORA_NATS_URL", "nats://127.0.0.1:4222"),
            nats_user=read_setting(env, "KORA_NATS_USER"),
            nats_password=read_setting(env, "KORA_NATS_PASSWORD"),
            nats_stream=env.get("KORA_NATS_STREAM", "KORA_EVENTS"),
            nats_dlq_stream=env.get("KORA_NATS_DLQ_STREAM", "KORA_DLQ"),
            nats_namespace=env.get("KORA_NATS_NAMESPACE", ""),
            events_in_process=env.get("KORA_EVENTS_IN_PROCESS", "true").lower() != "false",
            relay_batch_size=int(env.get("KORA_RELAY_BATCH_SIZE", 1000)),
            relay_idle_seconds=float(env.get("KORA_RELAY_IDLE_SECONDS", 0.05)),
            consumer_max_deliver=int(env.get("KORA_CONSUMER_MAX_DELIVER", 5)),
            event_verify_keys=read_setting(env, "KORA_EVENT_VERIFY_KEYS"),
            service_identities=read_setting(env, "KORA_SERVICE_IDENTITIES"),
            correction_max_amount=int(env.get("KORA_CORRECTION_MAX_AMOUNT", 1_000_000)),
            risk_enabled=env.get("KORA_RISK_ENABLED", "true").lower() != "false",
            risk_policy_file=env.get("KORA_RISK_POLICY_FILE") or None,
            risk_default_tier=env.get("KORA_RISK_DEFAULT_TIER", "tier1"),
        )


_WEBHOOK_SECRET = re.compile(r"(KORA_PROVIDER_[A-Z0-9_]+_WEBHOOK_SECRET)(_FILE)?")


def webhook_secret_name(provider: str) -> str:
    """The secret a provider's webhooks are signed with: KORA_PROVIDER_<NAME>_WEBHOOK_SECRET."""
    return f"KORA_PROVIDER_{provider.upper()}_WEBHOOK_SECRET"


def _webhook_secret_names(env: Mapping[str, str]) -> set[str]:
    return {match.group(1) for key in env if (match := _WEBHOOK_SECRET.fullmatch(key))}


def _new_dev_secrets() -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )

    def key() -> str:
        return base64.urlsafe_b64encode(_secrets.token_bytes(32)).decode()

    def ed25519_pem() -> str:
        return (
            Ed25519PrivateKey.generate()
            .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            .decode()
        )

    return {
        "KORA_JWT_SIGNING_KEYS": json.dumps([{"kid": "dev-" + _secrets.token_hex(4), "private_key_pem": pem}]),
        "KORA_EVENT_SIGNING_KEYS": json.dumps(
            [{"kid": "dev-events-" + _secrets.token_hex(4), "private_key_pem": ed25519_pem()}]
        ),
        "KORA_PII_ENCRYPTION_KEY": key(),
        "KORA_PII_INDEX_KEY": key(),
        "KORA_AUDIT_KEY": key(),
    }


def load_or_create_dev_secrets(path: Path) -> dict[str, str]:
    """Development only: secrets generated on first use and kept in a local 0600 file (never
    committed), so an embedded database stays readable across restarts."""
    data: dict[str, str] = {}
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        if all(name in data for name in SECRET_NAMES):
            return data
    # Only the missing ones are generated: replacing a PII or audit key would make the data
    # already written with it unreadable.
    data = {**_new_dev_secrets(), **data}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    return data

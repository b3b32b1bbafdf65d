"""Settings of the reconciliation API (`kora recon serve`), from the environment only, on top
of the service's own (ReconSettings: database and report key).

People's access tokens are issued by the core and verified here with the core's public keys,
from one of (KORA_RECON_USER_TOKEN_KEYS wins when both are set):

* KORA_RECON_USER_TOKEN_KEYS (or `_FILE`): the core's JWKS document as JSON, copied at deploy
  time. No network dependency at start or per request; a key rotation at the core needs this
  setting updated (add the new key before the core signs with it).
* KORA_RECON_USER_TOKEN_JWKS_URL: the core's `/.well-known/jwks.json`, fetched at first use,
  cached for KORA_RECON_USER_TOKEN_JWKS_TTL seconds (default 300) and fetched again early
  when a token names a kid not seen yet (at most every 30 s). Rotations need no redeploy;
  the core must be reachable (a failed refresh keeps the last keys).

Either way the service cannot see the core's session revocation (logout, refresh-token
reuse): an access token stays valid here until it expires. Core access tokens live
KORA_ACCESS_TOKEN_TTL_SECONDS (600 s by default), which bounds that window.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from kora.platform.settings import ConfigurationError, read_setting
from kora.reconciliation.service.review_settings import ReviewSettings
from kora.reconciliation.service.settings import ReconSettings

KEYS_SETTING = "KORA_RECON_USER_TOKEN_KEYS"
JWKS_URL_SETTING = "KORA_RECON_USER_TOKEN_JWKS_URL"
DEFAULT_MAX_UPLOAD_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ReconApiSettings:
    recon: ReconSettings
    review: ReviewSettings
    core_keys: str | None = None
    core_jwks_url: str | None = None
    core_jwks_ttl_seconds: int = 300
    core_issuer: str = "kora"
    core_audience: str = "kora-api"
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    log_level: str = "INFO"
    log_json: bool = True
    otel_exporter: str = "none"
    otel_endpoint: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReconApiSettings:
        env = os.environ if env is None else env
        recon = ReconSettings.from_env(env)
        review = ReviewSettings.from_env(env)
        keys = read_setting(env, KEYS_SETTING)
        url = env.get(JWKS_URL_SETTING) or None
        if url is not None and not url.startswith(("https://", "http://")):
            raise ConfigurationError(f"{JWKS_URL_SETTING} must be an http(s) URL")
        if recon.env == "production":
            if not keys and not url:
                raise ConfigurationError(
                    f"refusing to start in production without {KEYS_SETTING} or {JWKS_URL_SETTING}"
                )
            if not keys and url is not None and not url.startswith("https://"):
                raise ConfigurationError(f"{JWKS_URL_SETTING} must be https in production")
        max_upload = int(env.get("KORA_RECON_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES))
        if max_upload <= 0:
            raise ConfigurationError("KORA_RECON_MAX_UPLOAD_BYTES must be positive")
        return cls(
            recon=recon,
            review=review,
            core_keys=keys,
            core_jwks_url=url,
            core_jwks_ttl_seconds=int(env.get("KORA_RECON_USER_TOKEN_JWKS_TTL", 300)),
            core_issuer=env.get("KORA_RECON_USER_TOKEN_ISSUER", "kora"),
            core_audience=env.get("KORA_RECON_USER_TOKEN_AUDIENCE", "kora-api"),
            max_upload_bytes=max_upload,
            log_level=env.get("KORA_LOG_LEVEL", "INFO"),
            log_json=env.get("KORA_LOG_JSON", "true").lower() != "false",
            otel_exporter=env.get("KORA_OTEL_EXPORTER", "none"),
            otel_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        )

"""`kora recon service-key`: the entry to register this service's public key in the core."""

from __future__ import annotations

import json

import click


@click.command("service-key")
def service_key_command() -> None:
    """Print the KORA_SERVICE_IDENTITIES entry (and the JWK) for this service's key
    (KORA_RECON_SERVICE_KEY, or the development key): public material only, never the private
    key. Paste the entry into the core's KORA_SERVICE_IDENTITIES list."""
    from kora.reconciliation.adapters.service_token import ServiceKey
    from kora.reconciliation.service.settings import ReconSettings

    settings = ReconSettings.from_env()
    if not settings.service_key:
        raise click.ClickException("KORA_RECON_SERVICE_KEY is not set")
    key = ServiceKey.from_json(settings.service_key)
    entry = {
        "service": settings.service_name,
        "kid": key.kid,
        "public_key": key.public_key(),
        "scopes": ["payments:read", "payments:query", "ledger:correct"],
    }
    click.echo(json.dumps({"service_identity": entry, "jwk": key.jwk()}, indent=2))
    if settings.generated_service_key:
        click.echo("(a development key, generated into KORA_DEV_SECRETS_FILE: never use it in production)", err=True)

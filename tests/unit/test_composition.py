"""The composition root refuses unsafe provider set-ups in production."""

from __future__ import annotations

import pytest

from kora.bootstrap import Kora
from kora.platform.settings import ConfigurationError, Settings, _new_dev_secrets


def production(**extra: str) -> Settings:
    env = {"KORA_ENV": "production", "KORA_DATABASE_URL": "postgresql+asyncpg://db.invalid/kora"}
    env.update(_new_dev_secrets())
    env.update(extra)
    return Settings.from_env(env)


async def test_production_has_no_sandbox_provider() -> None:
    with pytest.raises(ConfigurationError, match="default provider"):
        Kora(production())


async def test_production_runs_with_a_real_provider_only() -> None:
    kora = Kora(production(KORA_PROVIDER_MOMO_URL="http://127.0.0.1:9", KORA_DEFAULT_PROVIDER="momo"))
    try:
        assert kora.providers.names == ("momo",)
    finally:
        await kora.aclose()

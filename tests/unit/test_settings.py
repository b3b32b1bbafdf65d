"""Settings: secrets from the environment or files; production refuses to run unsafely."""

from __future__ import annotations

from pathlib import Path

import pytest

from kora.platform.settings import SECRET_NAMES, ConfigurationError, Settings


def test_production_refuses_to_start_without_secrets() -> None:
    with pytest.raises(ConfigurationError, match="without secrets"):
        Settings.from_env({"KORA_ENV": "production", "KORA_DATABASE_URL": "postgresql+asyncpg://db/kora"})


def test_production_refuses_sqlite(tmp_path: Path) -> None:
    env = {name: "x" * 44 for name in SECRET_NAMES}
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        Settings.from_env({"KORA_ENV": "production", **env})


def test_secrets_can_come_from_files(tmp_path: Path) -> None:
    env = {"KORA_ENV": "production", "KORA_DATABASE_URL": "postgresql+asyncpg://db/kora"}
    for name in SECRET_NAMES:
        path = tmp_path / name
        path.write_text(f"value-of-{name}\n")
        env[f"{name}_FILE"] = str(path)
    settings = Settings.from_env(env)
    assert settings.secret("KORA_AUDIT_KEY") == "value-of-KORA_AUDIT_KEY"
    assert settings.generated_secrets == ()


def test_development_generates_secrets_once_and_keeps_them(tmp_path: Path) -> None:
    env = {"KORA_DEV_SECRETS_FILE": str(tmp_path / "dev.json")}
    first = Settings.from_env(env)
    second = Settings.from_env(env)
    assert set(first.generated_secrets) == set(SECRET_NAMES)
    assert first.secrets == second.secrets
    assert (tmp_path / "dev.json").stat().st_mode & 0o777 == 0o600

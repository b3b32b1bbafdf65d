"""ReconSettings refuses unsafe production configurations; `kora recon` migrates and imports."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from kora.platform.settings import ConfigurationError
from kora.reconciliation.cli import register
from kora.reconciliation.service.settings import ReconSettings
from kora.simulator.behaviour import Scenario
from kora.simulator.config import ApiStyle
from kora.simulator.reports import render_report
from tests.unit.reconciliation.factories import DAY, Simulation

KEY = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
PG = "postgresql+asyncpg://recon@db/recon"


@pytest.mark.parametrize(
    "env",
    [
        {"KORA_ENV": "production", "KORA_RECON_DATABASE_URL": PG},
        {"KORA_ENV": "production", "KORA_RECON_REPORT_KEY": KEY},
    ],
)
def test_production_refuses_no_key_or_sqlite(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        ReconSettings.from_env(env)


def test_production_reads_the_key_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(KEY + "\n")
    env = {"KORA_ENV": "production", "KORA_RECON_DATABASE_URL": PG, "KORA_RECON_REPORT_KEY_FILE": str(tmp_path / "key")}
    settings = ReconSettings.from_env(env)
    assert (settings.report_key, settings.generated_key) == (KEY, False)


def test_development_keeps_a_generated_key_beside_the_other_dev_secrets(tmp_path: Path) -> None:
    path = tmp_path / "dev.json"
    path.write_text(json.dumps({"KORA_AUDIT_KEY": "kept"}))
    first = ReconSettings.from_env({"KORA_DEV_SECRETS_FILE": str(path)})
    second = ReconSettings.from_env({"KORA_DEV_SECRETS_FILE": str(path)})
    assert first.generated_key
    assert first.report_key == second.report_key
    assert first.database_url == "sqlite+aiosqlite:///./kora-recon.db"
    assert json.loads(path.read_text())["KORA_AUDIT_KEY"] == "kept"
    assert path.stat().st_mode & 0o777 == 0o600


def test_cli_upgrades_and_imports_once(tmp_path: Path) -> None:
    main = click.Group("kora")
    register(main)
    sim = Simulation()
    sim.mobile("momo", "collection", 10_000, Scenario.SUCCEED)
    report = tmp_path / "momo.csv"
    report.write_text(render_report(ApiStyle.MOMO, sim.state.ledger.of_provider("momo"), DAY))
    env = {
        "KORA_RECON_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'recon.db'}",
        "KORA_RECON_REPORT_KEY": KEY,
        "KORA_LOG_LEVEL": "WARNING",
        "KORA_DEV_SECRETS_FILE": str(tmp_path / "dev-secrets.json"),  # the audit key, generated
    }
    runner = CliRunner()
    assert runner.invoke(main, ["recon", "db", "upgrade"], env=env).exit_code == 0
    args = ["recon", "import", "--provider", "momo", "--actor", "ops-1", str(report)]
    first = runner.invoke(main, args, env=env)
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout)
    assert (out["lines"], out["quarantined"], out["duplicate"]) == (1, 0, False)
    again = json.loads(runner.invoke(main, args, env=env).stdout)
    assert (again["report_id"], again["duplicate"]) == (out["report_id"], True)
    verified = runner.invoke(main, ["recon", "audit", "verify"], env=env)
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)["records"] == 2  # both imports, the re-import too, in the chain
    refused = runner.invoke(main, ["recon", "import", "--provider", "nope", "--actor", "x", str(report)], env=env)
    assert refused.exit_code != 0

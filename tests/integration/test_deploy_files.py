"""The deployment files, checked with the tools made for them (there is no Docker engine here):
docker-compose.yml against the Compose specification, deploy/Dockerfile with hadolint,
deploy/nats/nats.conf with nats-server's own test mode — and the wiring between them: each
Kora process connects to NATS as its own least-privilege user, and no secret is written down."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import service_unavailable

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NATS_USERS = {
    "kora-admin": "NATS_ADMIN_PASSWORD",
    "kora-relay": "NATS_RELAY_PASSWORD",
    "kora-notifications": "NATS_NOTIFICATIONS_PASSWORD",
    "kora-kpi": "NATS_KPI_PASSWORD",
    "kora-recon-feed": "NATS_RECON_FEED_PASSWORD",
    "kora-settlement": "NATS_SETTLEMENT_PASSWORD",
    "kora-recon": "NATS_RECON_PASSWORD",
}


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_the_compose_file_follows_the_compose_specification() -> None:
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), str(ROOT / "deploy" / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_nats_configuration_loads_with_its_passwords_and_not_without() -> None:
    binary = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )
    if binary is None:
        service_unavailable("nats-server binary not found (needed to check deploy/nats/nats.conf)")
        return
    config = str(ROOT / "deploy" / "nats" / "nats.conf")
    env = {**os.environ, **{var: "a-test-password-" + user for user, var in NATS_USERS.items()}}
    ok = subprocess.run([binary, "-c", config, "-t"], env=env, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    missing = {k: v for k, v in env.items() if k != "NATS_RELAY_PASSWORD"}
    refused = subprocess.run([binary, "-c", config, "-t"], env=missing, capture_output=True, text=True, check=False)
    assert refused.returncode != 0


def test_every_kora_process_connects_to_nats_as_its_own_user() -> None:
    services = _compose()["services"]
    users: dict[str, str] = {}
    for name, service in services.items():
        environment = service.get("environment") or {}
        if "KORA_NATS_USER" in environment:
            users[name] = environment["KORA_NATS_USER"]
            assert environment["KORA_NATS_PASSWORD"] == f"${{{NATS_USERS[users[name]]}:?set {NATS_USERS[users[name]]}}}"
    assert users["kora-relay"] == "kora-relay"
    assert users["kora-setup"] == "kora-admin"
    assert users["kora-recon-worker"] == "kora-recon"
    assert services["kora-recon-worker"]["command"][:3] == ["kora", "recon", "worker"]
    # The reconciliation service has its own database and never the core's.
    recon_env = services["kora-recon-worker"]["environment"]
    assert "KORA_DATABASE_URL" not in recon_env
    assert "@recon-postgres:5432/" in recon_env["KORA_RECON_DATABASE_URL"]
    for consumer in ("notifications", "kpi", "recon-feed", "settlement"):
        worker = services[f"kora-worker-{consumer}"]
        assert worker["command"][:4] == ["kora", "worker", "--consumer", consumer]
        assert users[f"kora-worker-{consumer}"] == f"kora-{consumer}"
    # The broker is started from the repository's configuration, with every user's password.
    nats = services["nats"]
    assert "./deploy/nats/nats.conf:/etc/nats/nats.conf:ro" in nats["volumes"]
    assert set(nats["environment"]) == set(NATS_USERS.values())


def test_no_secret_is_written_in_the_deployment_files() -> None:
    for name, service in _compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if any(word in key for word in ("PASSWORD", "SECRET", "KEY")) and not key.endswith("_FILE"):
                assert str(value).startswith("${"), f"{name}: {key} is written down"
            if key == "KORA_DATABASE_URL":
                assert "${POSTGRES_PASSWORD" in value
            if key == "KORA_RECON_DATABASE_URL":
                assert "${RECON_POSTGRES_PASSWORD" in value
    for line in (ROOT / "deploy" / "nats" / "nats.conf").read_text().splitlines():
        if re.match(r"\s*password\s*:", line):
            assert line.split(":", 1)[1].strip().startswith("$"), f"a literal password: {line.strip()}"


@pytest.mark.parametrize(
    "service",
    ["kora-relay", "kora-worker-notifications", "kora-worker-kpi", "kora-worker-settlement", "kora-recon-worker"],
)
def test_processes_expose_metrics_to_the_network_inside_the_stack(service: str) -> None:
    command = _compose()["services"][service]["command"]
    assert command[command.index("--metrics-host") + 1] == "0.0.0.0"


def test_every_kora_command_the_compose_file_runs_exists_with_its_options() -> None:
    """Each service's `kora ...` command resolves to a real command of the CLI, and its options
    parse (the command is not run): a renamed command or option fails here, not at `up`."""
    import click

    from kora.cli import main

    checked = []
    for name, service in _compose()["services"].items():
        command = service.get("command")
        if not command or command[0] != "kora":
            continue
        cmd: click.Command = main
        args = list(command[1:])
        path = ["kora"]
        while isinstance(cmd, click.Group) and args and not args[0].startswith("-"):
            sub = cmd.get_command(click.Context(cmd), args[0])
            assert sub is not None, f"{name}: no command {' '.join([*path, args[0]])!r}"
            path.append(args.pop(0))
            cmd = sub
        assert not isinstance(cmd, click.Group), f"{name}: {' '.join(path)!r} is a group, not a command"
        cmd.make_context(" ".join(path), args)  # raises on an unknown option or a bad value
        checked.append(name)
    assert {"kora-api", "kora-relay", "kora-recon-worker", "kora-recon-api", "kora-recon-setup"} <= set(checked)

"""The deployment files, checked with the tools made for them (there is no Docker engine here):
docker-compose.yml against the Compose specification, the Dockerfiles with hadolint,
deploy/nats/nats.conf with nats-server's own test mode — and the wiring between them: each
Kora process connects to NATS as its own least-privilege user, sends its traces and logs to the
collector, which forwards them to Tempo and Loki; every file the stack mounts is in the
repository; every image is pinned; and no secret is written down."""

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


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "console.Dockerfile"])
def test_the_dockerfiles_pass_hadolint(dockerfile: str) -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), str(ROOT / "deploy" / dockerfile)], capture_output=True, text=True, check=False
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


# --- the observability stack ---------------------------------------------------------------------

COLLECTOR_URL = "http://otel-collector:4318"
# One-shot jobs (they exit) and distroless images (no probe binary inside): no healthcheck.
NO_HEALTHCHECK = {"kora-setup", "kora-recon-setup", "tempo-init", "tempo", "loki", "otel-collector"}
# Ports the third-party services listen on (Kora's own are read from their commands).
LISTENING = {
    "postgres": {5432},
    "recon-postgres": {5432},
    "nats": {4222, 8222},
    "prometheus": {9090},
    "alertmanager": {9093},
    "otel-collector": {4317, 4318, 8888, 13133},
    "tempo": {3200, 4317, 4318},
    "loki": {3100},
    "grafana": {3000},
    "kora-console": {8501},
}
SCRAPE_JOBS = {"kora-api", "kora-worker", "kora-relay", "kora-recon-api", "kora-recon-worker", "kora-simulator"}


def _yaml(relative: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / relative).read_text())
    return data


def _present_or_awaited(relative: str) -> bool:
    """True when ``relative`` is in the repository."""
    return (ROOT / relative).exists()


def _bind_mounts() -> dict[str, list[tuple[str, str]]]:
    """service -> [(host path relative to the root, container path)] for every ./ bind mount."""
    mounts: dict[str, list[tuple[str, str]]] = {}
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes") or []:
            source, target = volume.split(":")[:2]
            if source.startswith("./"):
                mounts.setdefault(name, []).append((source.removeprefix("./"), target))
    return mounts


def _host_path(service: str, container_path: str) -> Path:
    """The repository file a container path of ``service`` comes from (through its bind mounts)."""
    for source, target in _bind_mounts()[service]:
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return ROOT / source / container_path.removeprefix(target).lstrip("/")
    raise AssertionError(f"{service}: {container_path} is not mounted from the repository")


def _host_port(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url if "://" in url else f"tcp://{url}")
    assert parts.hostname is not None, url
    assert parts.port is not None, url
    return parts.hostname, parts.port


def _listening(service: str) -> set[int]:
    command = [str(part) for part in _compose()["services"][service].get("command") or []]
    ports = {int(command[i + 1]) for i, arg in enumerate(command[:-1]) if arg in ("--port", "--metrics-port")}
    return ports | LISTENING.get(service, set())


def test_every_file_the_stack_mounts_or_builds_from_is_in_the_repository() -> None:
    services = _compose()["services"]
    referenced = {source for mounts in _bind_mounts().values() for source, _ in mounts}
    for service in services.values():
        build = service.get("build")
        if build:
            referenced.add(build["dockerfile"])
    referenced.add("dashboards/kora_console.py")  # what the console's command runs
    assert services["kora-console"]["command"][:3] == ["streamlit", "run", "dashboards/kora_console.py"]
    missing = sorted(path for path in referenced if not (ROOT / path).exists())
    assert not missing, f"mounted or built from, but not in the repository: {missing}"


def test_every_image_is_pinned_and_every_service_is_probed() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository, image
        assert tag not in {"", "latest"}, f"{name}: image {image!r} is not pinned"
        if tag == "dev":
            assert "build" in service or image in {s.get("image") for s in services.values() if "build" in s}, name
        else:
            assert any(ch.isdigit() for ch in tag), f"{name}: image {image!r} has no version"
        healthcheck = service.get("healthcheck") or {}
        if name in NO_HEALTHCHECK:
            continue
        assert healthcheck.get("test"), f"{name} has no healthcheck"
        assert not healthcheck.get("disable"), f"{name} has its healthcheck disabled"


def test_depends_on_conditions_match_what_the_dependency_can_report() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on an unknown service {dependency}"
            assert dependency != name
            condition = rule["condition"]
            target = services[dependency]
            if condition == "service_healthy":
                assert dependency not in NO_HEALTHCHECK, f"{name} waits for {dependency} to be healthy: it has no probe"
            elif condition == "service_completed_successfully":
                assert target.get("restart") == "no", f"{name} waits for {dependency} to exit, but it is a daemon"
            else:
                assert condition == "service_started"


def test_every_kora_process_sends_traces_and_logs_to_the_collector_under_its_own_name() -> None:
    from kora.observability import TelemetrySettings

    services = _compose()["services"]
    names: dict[str, str] = {}
    for name, service in services.items():
        command = service.get("command") or []
        if not command or command[0] != "kora" or service.get("restart") == "no":
            continue  # not a Kora process, or a one-shot set-up job
        environment = {key: str(value) for key, value in service["environment"].items()}
        assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == COLLECTOR_URL, name
        # The variables parse as the process will parse them (an unknown exporter would refuse to start).
        settings = TelemetrySettings.from_env("default", {**environment, "KORA_OTEL_SAMPLE_RATIO": "1.0"})
        assert (settings.trace_exporter, settings.log_exporter) == ("otlp", "otlp"), name
        names[name] = settings.service_name
        assert services["otel-collector"] in [services[d] for d in service["depends_on"]], f"{name}: no collector"
    assert len(set(names.values())) == len(names), f"two processes share a service name: {names}"
    assert {
        "kora-api",
        "kora-relay",
        "kora-worker-settlement",
        "kora-recon-api",
        "kora-recon-worker",
        "simulator",
    } <= set(names)
    assert services["kora-api"]["environment"]["KORA_OTEL_SAMPLE_RATIO"] == "${KORA_OTEL_SAMPLE_RATIO:-1.0}"


def test_the_collector_receives_otlp_and_exports_traces_to_tempo_and_logs_to_loki() -> None:
    services = _compose()["services"]
    collector = _yaml("deploy/otel-collector/config.yml")
    config_path = services["otel-collector"]["command"][0].removeprefix("--config=")
    assert _host_path("otel-collector", config_path) == ROOT / "deploy" / "otel-collector" / "config.yml"
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert _host_port(protocols["http"]["endpoint"])[1] == _host_port(COLLECTOR_URL)[1] == 4318
    assert _host_port(protocols["grpc"]["endpoint"])[1] == 4317
    pipelines = collector["service"]["pipelines"]
    assert set(pipelines) == {"traces", "logs"}
    for pipeline in pipelines.values():  # every component a pipeline names is configured
        assert set(pipeline["receivers"]) <= set(collector["receivers"])
        assert set(pipeline["processors"]) <= set(collector["processors"])
        assert set(pipeline["exporters"]) <= set(collector["exporters"])
        assert pipeline["processors"][0] == "memory_limiter"  # first, as its documentation requires
    assert set(collector["service"]["extensions"]) <= set(collector["extensions"])
    [traces_exporter] = pipelines["traces"]["exporters"]
    [logs_exporter] = pipelines["logs"]["exporters"]
    assert traces_exporter.split("/")[0] == "otlp"  # gRPC
    assert logs_exporter.split("/")[0] == "otlphttp"
    tempo_host, tempo_port = _host_port(collector["exporters"][traces_exporter]["endpoint"])
    loki_url = collector["exporters"][logs_exporter]["endpoint"]
    loki_host, loki_port = _host_port(loki_url)
    assert (tempo_host, loki_host) == ("tempo", "loki")
    assert loki_url.endswith("/otlp")  # Loki's native OTLP ingestion (/otlp/v1/logs)
    tempo = _yaml("deploy/tempo/tempo.yml")
    assert _host_port(tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])[1] == tempo_port
    loki = _yaml("deploy/loki/loki.yml")
    assert loki["server"]["http_listen_port"] == loki_port
    for service in (tempo_host, loki_host):
        assert service in services
        assert service in services["otel-collector"]["depends_on"]


def test_tempo_and_loki_keep_their_data_on_volumes_and_link_back_to_metrics_and_traces() -> None:
    services = _compose()["services"]
    tempo = _yaml("deploy/tempo/tempo.yml")
    tempo_volume = next(v.split(":")[1] for v in services["tempo"]["volumes"] if v.startswith("tempo-data:"))
    storage = tempo["storage"]["trace"]
    for path in (storage["wal"]["path"], storage["local"]["path"], tempo["metrics_generator"]["storage"]["path"]):
        assert path.startswith(tempo_volume + "/"), f"tempo writes {path} outside its volume"
    assert "tempo-data:/var/tempo" in services["tempo-init"]["volumes"]
    # Its metrics generator writes span metrics, with exemplars, into Prometheus.
    [remote_write] = tempo["metrics_generator"]["storage"]["remote_write"]
    assert _host_port(remote_write["url"]) == ("prometheus", 9090)
    assert remote_write["send_exemplars"] is True
    assert "--web.enable-remote-write-receiver" in services["prometheus"]["command"]

    loki = _yaml("deploy/loki/loki.yml")
    loki_volume = next(v.split(":")[1] for v in services["loki"]["volumes"] if v.startswith("loki-data:"))
    assert loki["common"]["path_prefix"] == loki_volume
    assert loki["limits_config"]["allow_structured_metadata"] is True  # OTLP attributes: trace_id, span_id
    [schema] = loki["schema_config"]["configs"]
    assert (schema["store"], schema["schema"]) == ("tsdb", "v13")  # what structured metadata needs
    assert loki["auth_enabled"] is False  # single tenant, reachable only inside the stack and on 127.0.0.1
    for name, service in services.items():
        for port in service.get("ports") or []:
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"


def test_prometheus_stores_exemplars_and_loads_the_repositorys_rules_and_targets() -> None:
    services = _compose()["services"]
    command = services["prometheus"]["command"]
    assert "--enable-feature=exemplar-storage" in command
    config_path = next(arg for arg in command if arg.startswith("--config.file=")).split("=", 1)[1]
    assert _host_path("prometheus", config_path) == ROOT / "deploy" / "prometheus" / "prometheus.yml"
    assert "./alerts:/etc/prometheus/alerts:ro" in services["prometheus"]["volumes"]
    if not _present_or_awaited("deploy/prometheus/prometheus.yml"):
        pytest.fail("deploy/prometheus/prometheus.yml is missing")
    config = _yaml("deploy/prometheus/prometheus.yml")
    # Rule files: container paths whose globs match the repository's alerts/ and alerts/slo/.
    globs = config.get("rule_files") or []
    matched = {
        str(p.relative_to(ROOT)) for g in globs for p in ROOT.glob(str(_host_path("prometheus", g).relative_to(ROOT)))
    }
    assert any(path.startswith("alerts/slo/") for path in matched), f"no SLO rules loaded by {globs}"
    assert any(path.startswith("alerts/") and "/slo/" not in path for path in matched), f"no alert rules in {globs}"
    # Alerts go to the stack's Alertmanager.
    targets = [t for am in config["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]]
    assert "alertmanager:9093" in targets
    # Every scrape target is a service of the stack, on a port it listens on.
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) >= SCRAPE_JOBS
    for job in jobs.values():
        for static in job.get("static_configs") or []:
            for target in static["targets"]:
                host, port = _host_port(target)
                assert host in services or host in {"localhost", "127.0.0.1"}, f"{job['job_name']}: unknown {host}"
                if host in services:
                    assert port in _listening(host), f"{job['job_name']}: {host} does not listen on {port}"
                if host == "simulator":
                    assert job.get("metrics_path") == "/_sim/metrics", "the simulator serves /_sim/metrics"


def test_grafana_is_provisioned_from_the_repository_with_no_password_in_it() -> None:
    grafana = _compose()["services"]["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert "./grafana/dashboards:/etc/grafana/dashboards:ro" in grafana["volumes"]
    if not _present_or_awaited("grafana/provisioning"):
        pytest.fail("grafana/provisioning is missing")
    services = _compose()["services"]
    providers = [
        provider
        for path in sorted((ROOT / "grafana" / "provisioning" / "dashboards").glob("*.y*ml"))
        for provider in yaml.safe_load(path.read_text()).get("providers", [])
    ]
    assert providers, "no dashboard provider"
    assert {provider["options"]["path"] for provider in providers} == {"/etc/grafana/dashboards"}
    datasources = [
        source
        for path in sorted((ROOT / "grafana" / "provisioning" / "datasources").glob("*.y*ml"))
        for source in yaml.safe_load(path.read_text()).get("datasources", [])
    ]
    kinds = {source["type"] for source in datasources}
    assert {"prometheus", "tempo", "loki"} <= kinds
    for source in datasources:
        if "url" in source:
            assert _host_port(source["url"])[0] in services, f"data source {source['name']}: {source['url']}"
    ini = (ROOT / "grafana" / "grafana.ini").read_text() if (ROOT / "grafana" / "grafana.ini").exists() else ""
    assert not re.search(r"^\s*admin_password\s*=\s*\S", ini, re.M), "grafana.ini holds the admin password"


def test_the_console_image_installs_the_extra_that_carries_streamlit() -> None:
    if not _present_or_awaited("dashboards/kora_console.py"):
        pytest.fail("dashboards/kora_console.py is missing")
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.startswith("streamlit") for req in extras.get("console", [])), "no `console` extra with streamlit"
    assert '".[console]"' in (ROOT / "deploy" / "console.Dockerfile").read_text()


def test_the_env_example_lists_every_required_variable_without_a_value() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    example: dict[str, str] = {}
    for line in (ROOT / "deploy" / "compose.env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            example[key.strip()] = value.strip()
    assert required <= set(example), f"not in deploy/compose.env.example: {sorted(required - set(example))}"
    for key, value in example.items():
        if any(word in key for word in ("PASSWORD", "SECRET", "KEYS", "IDENTITIES")):
            assert value == "", f"{key} has a value in the example"

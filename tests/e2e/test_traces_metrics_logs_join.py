"""The three signals join up, with the real processes: `kora serve` configured only by the
environment docker-compose.yml gives it, a real Prometheus (exemplar storage on, as in the
stack) scraping it, and a real OTLP/HTTP receiver standing in for the collector. A request sent
with a W3C trace context must come back as

- a Prometheus exemplar on its latency bucket carrying its trace id (metrics -> trace),
- a server span of that trace, exported over OTLP (the trace itself),
- log records carrying that trace id, exported over OTLP (trace -> logs),

and none of it may carry the phone number the request held."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import service_unavailable
from tests.support.net import free_port
from tests.support.otlp import OtlpReceiver, otlp_receiver

pytestmark = pytest.mark.e2e

PHONE = "+2250701020399"


def _wait_until(check: Callable[[], bool], what: str, timeout: float, logs: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{what} within {timeout}s; logs:\n" + logs.read_text()[-3000:])


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as running:
        yield running


def test_a_requests_latency_exemplar_leads_to_its_trace_and_its_logs(receiver: OtlpReceiver, tmp_path: Path) -> None:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        service_unavailable("prometheus binary not found (needed to check exemplar storage)")
        return
    api_port, prometheus_port = free_port(), free_port()
    api_log = tmp_path / "api.log"
    env = {
        **os.environ,
        "KORA_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'kora.db'}",
        "KORA_DEV_SECRETS_FILE": str(tmp_path / "secrets.json"),
        "KORA_ARGON2_TIME_COST": "1",
        "KORA_ARGON2_MEMORY_KIB": "8192",
        # What docker-compose.yml's x-telemetry-env gives every Kora process.
        "KORA_OTEL_EXPORTER": "otlp",
        "KORA_LOG_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_SERVICE_NAME": "kora-api",
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # export batches quickly, for the test
        "OTEL_BLRP_SCHEDULE_DELAY": "200",
    }
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        "scrape_configs:\n"
        f"  - {{job_name: kora-api, static_configs: [{{targets: ['127.0.0.1:{api_port}']}}]}}\n"
    )
    with api_log.open("w") as out:
        api = subprocess.Popen(
            [sys.executable, "-m", "kora", "serve", "--port", str(api_port)], env=env, stdout=out, stderr=out
        )
        prom = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
                "--enable-feature=exemplar-storage",
            ],
            stdout=out,
            stderr=out,
        )
        try:
            api_url, prom_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{prometheus_port}"
            _wait_until(lambda: httpx.get(f"{api_url}/readyz", timeout=1).status_code == 200, "API ready", 60, api_log)
            trace_id = uuid.uuid4().hex
            login = httpx.post(
                f"{api_url}/v1/auth/login",
                json={"phone_number": PHONE, "password": "not-the-password-1", "device_id": "device-12345"},
                headers={"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"},
                timeout=10,
            )
            assert login.status_code == 401

            def exemplar_stored() -> bool:
                answer = httpx.get(
                    f"{prom_url}/api/v1/query_exemplars",
                    params={
                        "query": 'kora_http_request_duration_seconds_bucket{route="/v1/auth/login"}',
                        "start": str(time.time() - 300),
                        "end": str(time.time() + 60),
                    },
                    timeout=2,
                ).json()
                return any(
                    exemplar["labels"].get("trace_id") == trace_id
                    for series in answer.get("data") or []
                    for exemplar in series["exemplars"]
                )

            _wait_until(exemplar_stored, "Prometheus stored the request's exemplar", 30, api_log)

            def exported() -> bool:
                spans = [span for _, span in receiver.spans() if span.trace_id.hex() == trace_id]
                logs = [record for _, record in receiver.logs() if record.trace_id.hex() == trace_id]
                return bool(spans) and bool(logs)

            _wait_until(exported, "the trace and its logs were exported", 15, api_log)
        finally:
            _stop(prom)
            _stop(api)  # flushes what is left

    spans = [(resource, span) for resource, span in receiver.spans() if span.trace_id.hex() == trace_id]
    assert {resource["service.name"] for resource, _ in spans} == {"kora-api"}
    assert any(span.kind == 2 for _, span in spans)  # SPAN_KIND_SERVER: the request itself
    logs = [record for resource, record in receiver.logs() if record.trace_id.hex() == trace_id]
    assert logs
    assert {record.span_id.hex() for record in logs} <= {span.span_id.hex() for _, span in spans}
    for form in (PHONE, PHONE.lstrip("+"), PHONE[4:]):
        assert form.encode() not in receiver.raw(), "a phone number left the process"

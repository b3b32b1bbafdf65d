"""The reconciliation service's `CoreClient` against the core's real app (ASGI), on SQLite and
PostgreSQL: its development key registered from `kora recon service-key`, the three port
operations end to end, refusals mapped to clear exceptions, and one trace and one correlation
id across both services."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner

from kora.kernel import SystemClock
from kora.observability import correlation_scope, get_tracer
from kora.reconciliation.adapters.core_client import CoreAuthRefused, CoreClient, CoreRefused, CoreUnavailable
from kora.reconciliation.adapters.service_token import ServiceKey
from kora.reconciliation.cli import register
from kora.reconciliation.service.ports import Correction
from kora.reconciliation.service.settings import ReconSettings
from tests.support.api import Customer
from tests.support.net import free_port
from tests.support.service_auth import ServiceHarness, core_with_services


def service_key_entry(env: dict[str, str]) -> dict[str, Any]:
    """What `kora recon service-key` prints for the key in `env` (public material only)."""
    main = click.Group("kora")
    register(main)
    printed = CliRunner().invoke(main, ["recon", "service-key"], env=env)
    assert printed.exit_code == 0, printed.output
    output = json.loads(printed.stdout)
    assert "private" not in printed.output.lower()
    assert output["jwk"]["x"] == output["service_identity"]["public_key"]
    entry: dict[str, Any] = output["service_identity"]
    return entry


@dataclass
class Setup:
    core: ServiceHarness
    client: CoreClient
    settings: ReconSettings
    alice: Customer
    payment_id: str


@pytest.fixture
async def setup(migrated_url: str, tmp_path: Path) -> AsyncIterator[Setup]:
    env = {"KORA_DEV_SECRETS_FILE": str(tmp_path / "recon-dev.json"), "KORA_RECON_CORE_URL": "http://kora.test"}
    settings = ReconSettings.from_env(env)
    assert settings.generated_service_key
    entry = service_key_entry(env)
    key = ServiceKey.from_json(settings.require_service_key())
    async with core_with_services(migrated_url, tmp_path, [entry], key) as core:
        client = CoreClient.from_settings(settings, clock=SystemClock(), client=core.client)
        alice = await core.api.customer(fund=6_000)
        items = (await core.client.get("/v1/payments", headers=alice.headers())).json()["items"]
        yield Setup(core, client, settings, alice, items[0]["id"])


def a_correction(payment_id: str, **changes: Any) -> Correction:
    values: dict[str, Any] = {
        "case_id": uuid.uuid4(),
        "payment_id": payment_id,
        "kind": "manual_credit",
        "amount": 250,
        "currency": "XOF",
        "reason": "provider_collected_twice",
        "proposed_by": f"user:{uuid.uuid4()}",
        "approved_by": f"user:{uuid.uuid4()}",
    }
    values.update(changes)
    return Correction(**values)


async def test_the_client_reads_queries_and_corrects_through_the_core(setup: Setup) -> None:
    client = setup.client
    payment = await client.payment(setup.payment_id)
    assert payment is not None
    assert (payment.type, payment.status, payment.amount, payment.currency, payment.provider) == (
        "cash_in",
        "CAPTURED",
        6_000,
        "XOF",
        "sandbox",
    )
    assert await client.payment(str(uuid.uuid4())) is None
    queried = await client.query_provider(setup.payment_id)
    assert queried is not None
    assert queried.status == "CAPTURED"
    assert await client.query_provider(str(uuid.uuid4())) is None

    correction = a_correction(setup.payment_id)
    posted = await client.post_correction(correction)
    again = await client.post_correction(correction)
    assert (posted.case_id, posted.replayed) == (correction.case_id, False)
    assert (again.transaction_id, again.replayed) == (posted.transaction_id, True)
    assert (await setup.core.api.balance(setup.alice))["balance"] == 6_250

    same = "user:" + str(uuid.uuid4())
    with pytest.raises(CoreRefused) as refused:
        await client.post_correction(
            a_correction(setup.payment_id, kind="write_off", proposed_by=same, approved_by=same)
        )
    assert (refused.value.status, refused.value.code) == (422, "maker_checker_violation")
    with pytest.raises(CoreRefused) as short:
        await client.post_correction(a_correction(setup.payment_id, kind="manual_debit", amount=6_000 + 1))
    assert short.value.code == "invalid_correction"


async def test_one_trace_and_one_correlation_id_span_both_services(setup: Setup, spans: Any) -> None:
    correlation = "recon-case-" + uuid.uuid4().hex[:12]
    with correlation_scope(correlation), get_tracer("tests.recon").start_as_current_span("recon.case") as case:
        correction = a_correction(setup.payment_id, kind="write_off", amount=100)
        await setup.client.post_correction(correction)
    trace_id = case.get_span_context().trace_id
    finished = spans.get_finished_spans()
    core_side = [s for s in finished if s.name in ("service.correction", "payments.correction")]
    assert {s.name for s in core_side} == {"service.correction", "payments.correction"}
    assert all(s.context.trace_id == trace_id for s in core_side), "the core's spans join the recon trace"
    client_span = next(s for s in finished if s.name == "core.correction")
    assert client_span.context.trace_id == trace_id
    async with setup.core.kora.engine.connect() as conn:
        from kora.audit import list_audit

        records = await list_audit(conn, correlation_id=correlation)
    assert [r.action for r in records] == ["ledger.correction.write_off"]
    assert records[0].actor == "service:kora-reconciliation"


async def test_refusals_and_outages_are_clear_exceptions(setup: Setup, tmp_path: Path) -> None:
    stranger = ReconSettings.from_env(
        {"KORA_DEV_SECRETS_FILE": str(tmp_path / "stranger.json"), "KORA_RECON_CORE_URL": "http://kora.test"}
    )
    unregistered = CoreClient.from_settings(stranger, clock=SystemClock(), client=setup.core.client)
    with pytest.raises(CoreAuthRefused) as refused:
        await unregistered.payment(setup.payment_id)
    assert (refused.value.status, refused.value.code) == (401, "service_token_invalid")

    down = CoreClient.from_settings(
        ReconSettings.from_env(
            {
                "KORA_DEV_SECRETS_FILE": str(tmp_path / "recon-dev.json"),
                "KORA_RECON_CORE_URL": f"http://127.0.0.1:{free_port()}",
            }
        ),
        clock=SystemClock(),
    )
    try:
        with pytest.raises(CoreUnavailable) as unavailable:
            await down.payment(setup.payment_id)
        assert unavailable.value.status is None
    finally:
        await down.aclose()

    def answer_500(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"code": "service_unavailable", "detail": "database down"})

    failing = CoreClient.from_settings(
        setup.settings, clock=SystemClock(), client=httpx.AsyncClient(transport=httpx.MockTransport(answer_500))
    )
    with pytest.raises(CoreUnavailable) as five_hundred:
        await failing.payment(setup.payment_id)
    assert (five_hundred.value.status, five_hundred.value.code) == (503, "service_unavailable")


def test_production_needs_the_service_key(tmp_path: Path) -> None:
    from kora.platform.settings import ConfigurationError

    settings = ReconSettings.from_env(
        {
            "KORA_ENV": "production",
            "KORA_RECON_DATABASE_URL": "postgresql+asyncpg://recon@db/recon",
            "KORA_RECON_REPORT_KEY": "k" * 44,
        }
    )
    assert settings.service_key is None
    with pytest.raises(ConfigurationError, match="KORA_RECON_SERVICE_KEY"):
        CoreClient.from_settings(settings, clock=SystemClock())

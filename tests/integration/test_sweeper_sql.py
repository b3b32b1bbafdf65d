"""The sweeper on real databases: a cash-out whose provider timed out stays AUTHORIZED with its
funds held; a late confirmation found by the status query captures it exactly once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from kora.bootstrap import Kora
from kora.kernel import FixedClock
from kora.payments import ProviderMoveCommand
from tests.fakes import ScriptedGateway, failed, succeeded
from tests.support.api import new_phone
from tests.support.api import test_settings as settings_for


async def test_late_answers_are_recorded_once(migrated_url: str, tmp_path: Path) -> None:
    clock = FixedClock()
    gateway = ScriptedGateway(answers=[succeeded(), TimeoutError(), TimeoutError()])
    kora = Kora(settings_for(migrated_url, tmp_path), clock=clock, providers=[gateway])
    try:
        registered = await kora.identity.register(phone_number=new_phone(), password="sweeper-pass-phrase-1")
        user = registered.user_id

        def command(amount: int, key: str) -> ProviderMoveCommand:
            return ProviderMoveCommand(user_id=user, amount=amount, currency="XOF", idempotency_key=key)

        funded = await kora.payments.cash_in(command(10_000, "sweep-fund-0001"))
        assert funded.body["status"] == "CAPTURED"
        late_ok = await kora.payments.cash_out(command(3_000, "sweep-out-0001"))
        late_no = await kora.payments.cash_out(command(2_000, "sweep-out-0002"))
        assert late_ok.body["status"] == late_no.body["status"] == "AUTHORIZED"
        assert (await kora.payments.wallet(user))["available_balance"] == 5_000

        gateway.status_answers = [succeeded(provider_ref="late"), failed("APPROVAL_REJECTED")]
        clock.advance(timedelta(minutes=5))
        counts = await kora.sweep_pending()
        assert (counts["confirmed"], counts["failed"]) == (1, 1)
        assert await kora.sweep_pending() == {
            "confirmed": 0,
            "failed": 0,
            "still_pending": 0,
            "gave_up": 0,
            "errors": 0,
        }

        wallet = await kora.payments.wallet(user)
        assert (wallet["balance"], wallet["available_balance"]) == (7_000, 7_000)
        replay = await kora.payments.cash_out(command(3_000, "sweep-out-0001"))
        assert (replay.replayed, replay.body["status"]) == (True, "CAPTURED")
        report = await kora.verify_ledger()
        assert report.ok, report.violations
        assert (await kora.verify_audit()).ok
    finally:
        await kora.aclose()

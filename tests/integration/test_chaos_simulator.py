"""Chaos: 2,000 mixed payments (P2P, merchant, cash-in, cash-out) against the provider simulator
running as its own process, while it injects 10 % timeouts, 5 % late successes, 2 % lost and
1 % duplicate callbacks (plus declines, a few stuck payments, and reversals where the API can say
so), with one provider in an outage for a stretch in the middle and ~6 % of clients retrying with
the same Idempotency-Key. Callbacks and webhooks reach Kora over HTTP; the sweeper does the rest.

Then: every payment is definite; no money moved twice (at a provider or in the ledger); the ledger
agrees with the simulator's own record, payment by payment; each wallet's balance is the sum of
its entries and of its payments; nothing is still held; provider clearing matches what each
provider confirmed; a reversal after a success is flagged; the ledger and audit chains verify.
Run with ``-s`` for the summary.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kora.observability import configure_logging
from kora.observability.testing import capture_logs, unconfigure_logging
from tests.integration.chaos import checks
from tests.integration.chaos.workload import fund, open_merchants, plan, register_customers, run_bounded
from tests.integration.chaos.world import SEED, World, chaos_world

pytestmark = pytest.mark.chaos

PAYMENTS = 2_000
IN_FLIGHT = 32  # payments in flight at once (a sliding window)
CUSTOMERS = 120
MERCHANTS = 3
FUNDING = 400_000  # XOF per customer, far more than the chaos spends
OUTAGE = ("mtn", 700, 1_100)  # the provider is down while these payments (of 2,000) start
RETRY_SHARE = 0.06


async def test_chaos_against_the_simulator_leaves_the_books_exact(migrated_postgres_url: str, tmp_path: Path) -> None:
    configure_logging(level="ERROR", json=False)  # -s shows the flagged contradictions and the summary
    try:
        with capture_logs("ERROR") as errors:
            async with chaos_world(migrated_postgres_url, tmp_path) as world:
                await _chaos(world, errors)
    finally:
        unconfigure_logging()


async def _chaos(world: World, errors: list[str]) -> None:
    rng = random.Random(SEED)
    started = time.perf_counter()
    customers = await register_customers(world.kora, CUSTOMERS, rng)
    merchants = await open_merchants(world.kora, MERCHANTS, rng)
    funding = await fund(world.kora, customers, FUNDING)
    await world.let_providers_finish()  # a funding cash-in still pending is resolved at the end
    await world.start_chaos()
    plans = plan(PAYMENTS, customers, merchants, rng, retry_share=RETRY_SHARE)
    provider, down_at, up_at = OUTAGE

    async def outage(index: int) -> None:
        if index in (down_at, up_at):
            await world.set_outage(provider, down=index == down_at)

    setup_done = time.perf_counter()
    try:
        done = await run_bounded(world.kora, plans, concurrency=IN_FLIGHT, before=outage)
    finally:
        await world.set_outage(provider, down=False)
    run_done = time.perf_counter()
    await world.let_providers_finish()
    pending_after_the_run = await world.unresolved()
    sweeps = await world.sweep_until_definite()

    facts = await checks.gather_facts(world.kora, await world.simulator_ledger())
    balances = {}
    for customer in customers:
        wallet = await world.kora.payments.wallet(customer.user_id)
        balances[wallet["wallet_id"]] = (wallet["balance"], wallet["available_balance"])
    ledger = await world.kora.verify_ledger()
    audit = await world.kora.verify_audit()

    report: dict[str, Any] = checks.summary(facts, done + funding)
    report |= {
        "seconds": {
            "setup": round(setup_done - started, 1),
            "payments": round(run_done - setup_done, 1),
            "total": round(time.perf_counter() - started, 1),
        },
        "pending_after_the_run": pending_after_the_run,
        "sweeper_passes": sweeps,
        "webhooks": world.webhook_outcomes(),
        "merchant_payments": "on" if merchants else "skipped (PaymentsService.pay_merchant absent)",
    }
    print("\nchaos summary:\n" + json.dumps(report, indent=2, default=str))

    problems = {
        "definite": checks.every_payment_is_definite(facts),
        "replays": checks.replays_named_the_same_payment(done),
        "simulator": checks.agrees_with_the_simulator(facts),
        "postings": checks.posted_once(facts),
        "wallets": checks.wallets_match_payments(facts, balances),
        "clearing": checks.clearing_matches_the_providers(facts),
    }
    assert not any(problems.values()), {name: found[:20] for name, found in problems.items() if found}
    assert ledger.ok, ledger.violations[:20]
    assert audit.ok, audit

    # The run exercised what it claims to: every injected behaviour happened, the outage turned
    # payments away, clients retried, and the sweeper had payments to resolve.
    behaviours = Counter(ops[0]["behaviour"] for ops in facts.truth.values())
    for injected in ("timeout", "late_success", "lost_callback", "duplicate_callback", "reversal"):
        assert behaviours[injected], f"no {injected} was injected"
    failures = Counter(p.failure_code for p in facts.payments.values())
    assert failures["provider_unavailable:breaker_open"] or failures["provider_unresolved"], failures
    assert len(done) == PAYMENTS
    assert sum(len(d.replay_ids) for d in done) > PAYMENTS * RETRY_SHARE / 2
    assert pending_after_the_run > 0

    # A reversal after a success is never silently ignored: each captured payment the provider
    # reversed is flagged in the audit trail and logged as an error.
    reversed_there = {ref for ref, ops in facts.truth.items() if ops[0]["status"] == "reversed"}
    captured_then_reversed = {ref for ref in reversed_there if facts.payments[ref].status == "CAPTURED"}
    assert captured_then_reversed <= facts.flagged
    logged = " ".join(line for line in errors if "contradicts the payment" in line)
    assert all(ref in logged for ref in captured_then_reversed)

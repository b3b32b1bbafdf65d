"""What must hold after the chaos run, checked from the database and the simulator's own record.

Each check returns the problems it found (empty: it holds), so a failure lists every broken
payment at once instead of stopping at the first.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from kora.audit.adapters.tables import audit_log
from kora.bootstrap import Kora
from kora.ledger.adapters.tables import ledger_accounts, ledger_entries, ledger_holds, ledger_transactions
from kora.payments.adapters.tables import payments
from tests.integration.chaos.workload import Done

DEFINITE = frozenset({"CAPTURED", "SETTLED", "FAILED"})
MONEY_MOVED = frozenset({"CAPTURED", "SETTLED"})
PROVIDER_TYPES = frozenset({"cash_in", "cash_out"})
POSTING_KIND = {"p2p": "p2p", "merchant": "merchant", "cash_in": "cash_in.capture", "cash_out": "cash_out.capture"}


@dataclass(frozen=True)
class Row:
    id: str
    type: str
    status: str
    amount: int
    fee: int
    provider: str | None
    failure_code: str | None
    payer_wallet_id: str | None
    payee_wallet_id: str | None


@dataclass
class Facts:
    """Everything the checks read, fetched once after the run."""

    payments: dict[str, Row]
    truth: dict[str, list[dict[str, Any]]]  # our payment id → the simulator's operations under it
    postings: dict[tuple[str, str], int]  # (payment id, transaction kind) → transactions
    flagged: set[str]  # payments whose provider answer contradicted them (audited)
    wallet_sums: dict[str, int]  # account id → credits - debits, for customer wallets
    clearing: dict[str, int]  # provider → debits - credits on its clearing account
    active_holds: int


async def gather_facts(kora: Kora, operations: list[dict[str, Any]]) -> Facts:
    truth: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for operation in operations:
        truth[operation["reference"]].append(operation)
    async with kora.engine.connect() as conn:
        rows = (await conn.execute(sa.select(payments))).mappings().all()
        found = {
            str(r["id"]): Row(
                str(r["id"]),
                r["type"],
                r["status"],
                r["amount"],
                r["fee"],
                r["provider"],
                r["failure_code"],
                str(r["payer_wallet_id"]) if r["payer_wallet_id"] else None,
                str(r["payee_wallet_id"]) if r["payee_wallet_id"] else None,
            )
            for r in rows
        }
        grouped = sa.select(ledger_transactions.c.payment_id, ledger_transactions.c.kind, sa.func.count()).group_by(
            ledger_transactions.c.payment_id, ledger_transactions.c.kind
        )
        postings = {(str(pid), kind): n for pid, kind, n in (await conn.execute(grouped)).all() if pid is not None}
        conflicting = sa.select(audit_log.c.subject).where(audit_log.c.action.like("%.conflicting_answer"))
        flagged = {s.removeprefix("payment:") for s in (await conn.scalars(conflicting)).all()}
        signed = sa.case(
            (ledger_entries.c.direction == "credit", ledger_entries.c.amount), else_=-ledger_entries.c.amount
        )
        sums = sa.select(ledger_accounts.c.id, ledger_accounts.c.kind, ledger_accounts.c.owner_ref, sa.func.sum(signed))
        sums = sums.join_from(ledger_accounts, ledger_entries).group_by(
            ledger_accounts.c.id, ledger_accounts.c.kind, ledger_accounts.c.owner_ref
        )
        wallet_sums: dict[str, int] = {}
        clearing: dict[str, int] = {}
        for account_id, kind, owner, total in (await conn.execute(sums)).all():
            if kind == "wallet":
                wallet_sums[str(account_id)] = int(total)
            elif kind == "provider_clearing":
                clearing[owner] = -int(total)
        holds = sa.select(sa.func.count()).select_from(ledger_holds).where(ledger_holds.c.status == "active")
        active_holds = int(await conn.scalar(holds) or 0)
    return Facts(found, dict(truth), postings, flagged, wallet_sums, clearing, active_holds)


def every_payment_is_definite(facts: Facts) -> list[str]:
    return [f"{p.id} ({p.type}) left {p.status}" for p in facts.payments.values() if p.status not in DEFINITE]


def replays_named_the_same_payment(done: list[Done]) -> list[str]:
    problems = []
    for item in done:
        for replayed in item.replay_ids:
            if replayed != item.payment_id:
                problems.append(f"{item.planned.kind} #{item.planned.index}: replay {replayed} != {item.payment_id}")
    return problems


def agrees_with_the_simulator(facts: Facts) -> list[str]:
    """Payment by payment: the provider has at most one operation under our id; it succeeded
    there ⇔ money moved here (same amount, same provider); a reversal there is either flagged
    here (captured, then contradicted) or ended the payment (failed before it was captured)."""
    problems = []
    for payment in facts.payments.values():
        if payment.type not in PROVIDER_TYPES:
            continue
        operations = facts.truth.get(payment.id, [])
        if len(operations) > 1:
            problems.append(f"{payment.id} sent twice: {[(o['provider'], o['status']) for o in operations]}")
            continue
        if not operations:  # never accepted anywhere (outage, breaker open, never landed)
            if payment.status != "FAILED":
                problems.append(f"{payment.id} {payment.status} but no provider has it")
            continue
        theirs = operations[0]
        if theirs["provider"] != payment.provider or theirs["amount"] != payment.amount:
            problems.append(f"{payment.id} is {payment.provider}/{payment.amount}, provider says {theirs}")
        moved = payment.status in MONEY_MOVED
        if theirs["status"] == "succeeded" and not moved:
            problems.append(f"{payment.id} succeeded at {theirs['provider']} but is {payment.status} here")
        elif theirs["status"] in ("failed", "pending") and moved:
            problems.append(f"{payment.id} {theirs['status']} at {theirs['provider']} but is {payment.status} here")
        elif theirs["status"] == "reversed" and moved and payment.id not in facts.flagged:
            problems.append(f"{payment.id} reversed at {theirs['provider']}, captured here and never flagged")
    ours = {p.id for p in facts.payments.values() if p.type in PROVIDER_TYPES}
    problems += [f"the provider has {ref} that Kora never asked for" for ref in facts.truth if ref not in ours]
    return problems


def posted_once(facts: Facts) -> list[str]:
    """Exactly one posting of its step for each payment that moved money, none for the others."""
    problems = [f"{pid} posted {kind} {n} times" for (pid, kind), n in facts.postings.items() if n > 1]
    for payment in facts.payments.values():
        expected = 1 if payment.status in MONEY_MOVED else 0
        kind = POSTING_KIND.get(payment.type)
        if kind is not None and facts.postings.get((payment.id, kind), 0) != expected:
            problems.append(f"{payment.id} ({payment.status}) has {facts.postings.get((payment.id, kind), 0)} {kind}")
    return problems


def wallets_match_payments(facts: Facts, balances: dict[str, tuple[int, int]]) -> list[str]:
    """Each wallet's balance (Kora's read), the sum of its entries, and what its payments say it
    must hold all agree; none is negative; nothing is still held."""
    expected: Counter[str] = Counter()
    for p in facts.payments.values():
        if p.status not in MONEY_MOVED:
            continue
        if p.payee_wallet_id and p.type in ("p2p", "cash_in"):
            expected[p.payee_wallet_id] += p.amount
        if p.payer_wallet_id and p.type in ("p2p", "cash_out", "merchant"):
            expected[p.payer_wallet_id] -= p.amount
    problems = []
    for wallet_id, (balance, available) in balances.items():
        entries = facts.wallet_sums.get(wallet_id, 0)
        if not balance == entries == expected[wallet_id]:
            problems.append(f"wallet {wallet_id}: balance {balance}, entries {entries}, payments {expected[wallet_id]}")
        if balance < 0 or available != balance:
            problems.append(f"wallet {wallet_id}: balance {balance}, available {available}")
    if facts.active_holds:
        problems.append(f"{facts.active_holds} holds still active")
    return problems


def clearing_matches_the_providers(facts: Facts) -> list[str]:
    """Per provider: what Kora's clearing account says the provider owes (collections minus
    disbursements) equals what the simulator says succeeded under our ids — plus the reversals
    Kora had already captured: flagged for a person, not yet booked back."""
    owed: Counter[str] = Counter()
    for operations in facts.truth.values():
        for op in operations:
            ours = facts.payments.get(op["reference"])
            flagged_reversal = op["status"] == "reversed" and ours is not None and ours.status in MONEY_MOVED
            if op["status"] == "succeeded" or flagged_reversal:
                owed[op["provider"]] += op["amount"] if op["kind"] in ("collection", "checkout") else -op["amount"]
    names = set(owed) | set(facts.clearing)
    return [
        f"{n}: clearing {facts.clearing.get(n, 0)} != provider {owed[n]}"
        for n in names
        if facts.clearing.get(n, 0) != owed[n]
    ]


def summary(facts: Facts, done: list[Done]) -> dict[str, Any]:
    outcomes = Counter(f"{p.type}:{p.status}" for p in facts.payments.values())
    behaviours = Counter(op["behaviour"] for ops in facts.truth.values() for op in ops)
    refusals = Counter(d.refusal for d in done if d.refusal)
    failures = Counter(p.failure_code for p in facts.payments.values() if p.status == "FAILED")
    return {
        "payments": len(facts.payments),
        "by_type_and_status": dict(sorted(outcomes.items())),
        "simulator_behaviours": dict(sorted(behaviours.items())),
        "failure_codes": dict(sorted(failures.items(), key=lambda kv: -kv[1])),
        "refused_before_a_payment": dict(refusals),
        "client_replays": sum(len(d.replay_ids) for d in done),
        "flagged_contradictions": len(facts.flagged),
    }

"""The chaos workload: customers and merchants, a deterministic plan of mixed payments, and a
driver that sends them in bounded concurrent batches, with client retries that reuse the
Idempotency-Key (after the answer, or while the first request is still running)."""

from __future__ import annotations

import asyncio
import enum
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from kora.bootstrap import Kora
from kora.identity import Role
from kora.payments import (
    IdempotencyRequestInProgress,
    Outcome,
    PaymentResult,
    ProviderMoveCommand,
    TransferCommand,
)
from kora.simulator import magic_behaviour
from tests.integration.chaos.world import MOMO_PROVIDERS, WAVE_PROVIDER

try:  # merchant payments land with another change; the workload uses them when they exist
    from kora.payments import MerchantPaymentCommand
except ImportError:  # pragma: no cover - depends on the checkout
    MerchantPaymentCommand = None  # type: ignore[assignment,misc]

PASSWORD = "chaos-pass-phrase-2026"


class Kind(enum.StrEnum):
    P2P = "p2p"
    MERCHANT = "merchant"
    CASH_IN = "cash_in"
    CASH_OUT = "cash_out"


class Retry(enum.StrEnum):
    NONE = "none"
    AFTER = "after"  # the client lost the answer and sends the same request again
    CONCURRENT = "concurrent"  # the client gave up waiting and re-sent while the first still runs


@dataclass(frozen=True)
class Party:
    user_id: uuid.UUID
    wallet_id: uuid.UUID


@dataclass(frozen=True)
class Planned:
    index: int
    kind: Kind
    payer: Party  # the customer who asks (cash-in: the one whose wallet is funded)
    amount: int
    key: str
    retry: Retry
    provider: str | None = None  # cash-in/out: a provider the client names; None: Kora routes
    recipient: Party | None = None  # P2P
    merchant_id: uuid.UUID | None = None  # merchant payments: the merchant's account


@dataclass
class Done:
    planned: Planned
    payment_id: str | None = None  # None: refused before any payment existed (e.g. no funds)
    refusal: str | None = None
    status: str | None = None  # as first answered (a pending payment ends later)
    replay_ids: list[str | None] = field(default_factory=list)
    in_progress: int = 0  # concurrent duplicates told "in progress" (the client retries later)


def customer_phone(rng: random.Random) -> str:
    """A unique-enough Côte d'Ivoire number that is *not* one of the simulator's magic numbers,
    so behaviours come from the seeded mix, not from the customer."""
    while True:
        phone = "+22507" + "".join(rng.choice("0123456789") for _ in range(8))
        if magic_behaviour(phone) is None:
            return phone


async def register_customers(kora: Kora, count: int, rng: random.Random) -> list[Party]:
    phones: set[str] = set()
    while len(phones) < count:
        phones.add(customer_phone(rng))
    sem = asyncio.Semaphore(16)

    async def one(phone: str) -> Party:
        async with sem:
            registered = await kora.identity.register(phone_number=phone, password=PASSWORD)
        return Party(registered.user_id, registered.wallet_id)

    return list(await asyncio.gather(*(one(p) for p in sorted(phones))))


async def open_merchants(kora: Kora, count: int, rng: random.Random) -> list[uuid.UUID]:
    if MerchantPaymentCommand is None or not hasattr(kora.payments, "pay_merchant"):
        return []
    accounts = []
    for party in await register_customers(kora, count, rng):
        await kora.identity.grant_role(party.user_id, Role.MERCHANT, actor="chaos-test")
        accounts.append(await kora.payments.open_merchant_account(party.user_id))
    return accounts


async def fund(kora: Kora, customers: list[Party], amount: int) -> list[Done]:
    """One cash-in each, through the routed providers while they behave (no injected chaos).
    Some may still be pending when their call returns (a busy machine): callbacks finish them."""
    plans = [
        Planned(-1 - i, Kind.CASH_IN, c, amount, f"fund-{c.user_id.hex}", Retry.NONE) for i, c in enumerate(customers)
    ]
    return await run_bounded(kora, plans, concurrency=25)


def plan(
    count: int, customers: list[Party], merchants: list[uuid.UUID], rng: random.Random, *, retry_share: float
) -> list[Planned]:
    kinds = [Kind.P2P, Kind.CASH_IN, Kind.CASH_OUT] + ([Kind.MERCHANT] if merchants else [])
    weights = [30, 30, 25] + ([15] if merchants else [])
    plans: list[Planned] = []
    for index in range(count):
        kind = rng.choices(kinds, weights)[0]
        payer = rng.choice(customers)
        roll = rng.random()
        retry = Retry.NONE if roll >= retry_share else Retry.AFTER if roll < retry_share / 2 else Retry.CONCURRENT
        common = {"index": index, "kind": kind, "payer": payer, "amount": rng.randint(100, 5_000), "retry": retry}
        key = f"chaos-{index:05d}-{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}"
        if kind is Kind.P2P:
            recipient = rng.choice([c for c in customers if c != payer])
            plans.append(Planned(key=key, recipient=recipient, **common))  # type: ignore[arg-type]
        elif kind is Kind.MERCHANT:
            plans.append(Planned(key=key, merchant_id=rng.choice(merchants), **common))  # type: ignore[arg-type]
        else:
            pick = rng.random()
            provider = WAVE_PROVIDER if pick < 0.2 else rng.choice(MOMO_PROVIDERS) if pick < 0.35 else None
            plans.append(Planned(key=key, provider=provider, **common))  # type: ignore[arg-type]
    return plans


def submit(kora: Kora, p: Planned) -> Awaitable[PaymentResult]:
    if p.kind is Kind.P2P:
        assert p.recipient is not None
        return kora.payments.transfer(
            TransferCommand(
                user_id=p.payer.user_id,
                amount=p.amount,
                currency="XOF",
                idempotency_key=p.key,
                recipient_wallet_id=p.recipient.wallet_id,
            )
        )
    if p.kind is Kind.MERCHANT:
        assert p.merchant_id is not None
        assert MerchantPaymentCommand is not None
        return kora.payments.pay_merchant(
            MerchantPaymentCommand(
                user_id=p.payer.user_id,
                merchant_id=p.merchant_id,
                amount=p.amount,
                currency="XOF",
                idempotency_key=p.key,
                reference=f"order-{p.index}",
            )
        )
    command = ProviderMoveCommand(
        user_id=p.payer.user_id, amount=p.amount, currency="XOF", idempotency_key=p.key, provider=p.provider
    )
    return kora.payments.cash_in(command) if p.kind is Kind.CASH_IN else kora.payments.cash_out(command)


def _read(done: Done, result: PaymentResult) -> None:
    if result.outcome is Outcome.FAILED:
        done.refusal = str(result.body.get("code"))
    else:
        done.payment_id = str(result.body["id"])
        done.status = str(result.body["status"])


async def run_one(kora: Kora, p: Planned) -> Done:
    done = Done(p)
    if p.retry is Retry.CONCURRENT:
        answers = await asyncio.gather(submit(kora, p), submit(kora, p), return_exceptions=True)
        results: list[PaymentResult] = []
        for answer in answers:
            if isinstance(answer, IdempotencyRequestInProgress):
                done.in_progress += 1
            elif isinstance(answer, BaseException):
                raise answer
            else:
                results.append(answer)
        assert results, "both copies of a request were told 'in progress'"
        results.sort(key=lambda r: r.replayed)  # the original first
        _read(done, results[0])
        done.replay_ids += [_id_of(r) for r in results[1:]]
    else:
        _read(done, await submit(kora, p))
    if p.retry is Retry.AFTER:
        replay = await submit(kora, p)
        assert replay.replayed, f"a retry with the same key was not a replay: {p.kind} {p.index}"
        done.replay_ids.append(_id_of(replay))
    return done


def _id_of(result: PaymentResult) -> str | None:
    return None if result.outcome is Outcome.FAILED else str(result.body["id"])


async def retry_in_progress(kora: Kora, done: list[Done]) -> None:
    """The clients told "in progress" come back once their first request has answered."""
    for item in done:
        for _ in range(item.in_progress):
            replay = await submit(kora, item.planned)
            assert replay.replayed
            item.replay_ids.append(_id_of(replay))


async def run_bounded(
    kora: Kora,
    plans: list[Planned],
    *,
    concurrency: int,
    before: Callable[[int], Awaitable[None]] | None = None,
) -> list[Done]:
    """Send `plans` in order with at most `concurrency` in flight (a sliding window, so a held
    provider answer only holds its own slot); `before(i)` runs before plan i starts."""
    slots = asyncio.Semaphore(concurrency)

    async def one(p: Planned) -> Done:
        try:
            return await run_one(kora, p)
        finally:
            slots.release()

    tasks: list[asyncio.Task[Done]] = []
    for index, planned in enumerate(plans):
        if before is not None:
            await before(index)
        await slots.acquire()
        tasks.append(asyncio.create_task(one(planned)))
    done = list(await asyncio.gather(*tasks))
    await retry_in_progress(kora, done)
    return done

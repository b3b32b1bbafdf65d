"""A labelled synthetic dataset: normal customers' payments plus injected fraud patterns.

Deterministic by seed. Each injected pattern is an *instance* (one fraud episode: a fan-out is
eight payments, a layering a cash-in then a cash-out) whose payments all carry the pattern's
label; normal payments carry none. The first `WARMUP_DAYS` build the customers' history (their
devices, contacts and usual hours) and are not scored; every pattern is injected after them.

The generator knows the policy only where a real fraudster does: structuring aims just under
the published per-transaction limit of the customer's tier. Everything else is the policy-blind
"world", so tuning the policy cannot bend the data.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import cycle
from pathlib import Path

from kora.risk.domain.model import PaymentType, RiskRequest
from kora.risk.domain.policy import Policy

PATTERNS = (
    "new_device_high_amount",
    "new_recipient_high_amount",
    "fan_out",
    "fan_in_mule",
    "structuring",
    "layering",
    "unusual_hours",
    "limit_breach",
)
START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 28
WARMUP_DAYS = 7
_TIERS = (("tier0", 0.3, 1), ("tier1", 0.5, 2), ("tier2", 0.2, 5))
_KINDS = (
    (PaymentType.P2P, 0.5),
    (PaymentType.MERCHANT, 0.25),
    (PaymentType.CASH_IN, 0.1),
    (PaymentType.CASH_OUT, 0.1),
    (PaymentType.CARD, 0.05),
)


@dataclass(frozen=True, slots=True)
class LabelledPayment:
    request: RiskRequest
    label: str | None = None
    instance: str | None = None

    def to_json(self) -> dict[str, object]:
        r = self.request
        return {
            "at": r.at.isoformat(),
            "payer": r.payer_id,
            "payee": r.payee_id,
            "amount": r.amount,
            "currency": r.currency,
            "type": r.type.value,
            "device": r.device_id,
            "tier": r.tier,
            "label": self.label,
            "instance": self.instance,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> LabelledPayment:
        request = RiskRequest(
            payer_id=str(data["payer"]),
            payee_id=str(data["payee"]),
            amount=int(str(data["amount"])),
            currency=str(data["currency"]),
            type=PaymentType(str(data["type"])),
            device_id=str(data["device"]),
            tier=str(data["tier"]),
            at=datetime.fromisoformat(str(data["at"])),
        )
        label, instance = data.get("label"), data.get("instance")
        return cls(request, None if label is None else str(label), None if instance is None else str(instance))


@dataclass(frozen=True, slots=True)
class Dataset:
    seed: int
    customers: int
    currency: str
    warmup_until: datetime
    payments: tuple[LabelledPayment, ...]

    def write(self, path: Path) -> None:
        """JSON lines: a header line, then one payment per line in time order."""
        header = {
            "seed": self.seed,
            "customers": self.customers,
            "currency": self.currency,
            "warmup_until": self.warmup_until.isoformat(),
        }
        with path.open("w", encoding="utf-8") as out:
            out.write(json.dumps(header) + "\n")
            for payment in self.payments:
                out.write(json.dumps(payment.to_json()) + "\n")

    @classmethod
    def read(cls, path: Path) -> Dataset:
        with path.open(encoding="utf-8") as source:
            header = json.loads(source.readline())
            payments = tuple(LabelledPayment.from_json(json.loads(line)) for line in source if line.strip())
        return cls(
            seed=int(header["seed"]),
            customers=int(header["customers"]),
            currency=str(header["currency"]),
            warmup_until=datetime.fromisoformat(header["warmup_until"]),
            payments=payments,
        )


@dataclass(slots=True)
class _Customer:
    id: str
    tier: str
    scale: int
    device: str
    first_hour: int
    last_hour: int
    rate: float
    contacts: list[str]


class _World:
    def __init__(self, rng: random.Random, currency: str) -> None:
        self.rng = rng
        self.currency = currency
        self.out: list[LabelledPayment] = []

    def pay(
        self,
        c: _Customer,
        payee: str,
        amount: int,
        kind: PaymentType,
        at: datetime,
        *,
        device: str | None = None,
        label: str | None = None,
        instance: str | None = None,
    ) -> None:
        request = RiskRequest(
            payer_id=c.id,
            payee_id=payee,
            amount=max(1, amount),
            currency=self.currency,
            type=kind,
            device_id=device or c.device,
            tier=c.tier,
            at=at,
        )
        self.out.append(LabelledPayment(request, label, instance))

    def amount(self, median: int, spread: float, ceiling: int) -> int:
        value = self.rng.lognormvariate(math.log(median), spread)
        return min(ceiling, max(100, round(value / 100) * 100))

    def daytime(self, c: _Customer, day: int) -> datetime:
        hour = self.rng.randint(c.first_hour, c.last_hour - 1)
        return START + timedelta(days=day, hours=hour, minutes=self.rng.randint(0, 59), seconds=self.rng.randint(0, 59))


def _customers(rng: random.Random, count: int) -> list[_Customer]:
    ids = [f"w{i:05d}" for i in range(count)]
    customers = []
    for cid in ids:
        tier, scale = next((t, s) for t, _, s in _pick(rng, _TIERS))
        others = [o for o in ids if o != cid]
        customers.append(
            _Customer(
                id=cid,
                tier=tier,
                scale=scale,
                device=f"dev-{cid}-1",
                first_hour=rng.randint(6, 9),
                last_hour=rng.randint(18, 21),
                rate=rng.uniform(0.6, 2.5),
                contacts=rng.sample(others, min(len(others), rng.randint(3, 8))),
            )
        )
    return customers


def _pick(rng: random.Random, table: tuple[tuple[str, float, int], ...]) -> Iterator[tuple[str, float, int]]:
    yield rng.choices(table, weights=[w for _, w, _ in table])[0]


def _normal_day(world: _World, c: _Customer, day: int, everyone: list[_Customer]) -> None:
    rng = world.rng
    for _ in range(rng.randint(0, round(2 * c.rate))):
        kind = rng.choices([k for k, _ in _KINDS], weights=[w for _, w in _KINDS])[0]
        at = world.daytime(c, day)
        night = rng.random() < 0.01
        if night:  # now and then a small payment late at night
            at = START + timedelta(days=day, hours=rng.randint(0, 4), minutes=rng.randint(0, 59))
        s = c.scale
        if kind is PaymentType.P2P:
            if rng.random() < 0.05 or night:  # someone new, a small amount
                payee = rng.choice(everyone).id
                amount = world.amount(3_000 * s, 0.6, 15_000 * s)
            else:
                payee = rng.choice(c.contacts)
                amount = world.amount(6_000 * s, 0.8, 45_000 * s)
        elif kind is PaymentType.MERCHANT:
            payee, amount = f"m{rng.randint(1, 40):03d}", world.amount(4_000 * s, 0.7, 40_000 * s)
        elif kind is PaymentType.CASH_IN:
            payee, amount = f"agent{rng.randint(1, 30):03d}", world.amount(15_000 * s, 0.6, 60_000 * s)
        elif kind is PaymentType.CASH_OUT:
            payee, amount = f"agent{rng.randint(1, 30):03d}", world.amount(8_000 * s, 0.6, 25_000 * s)
        else:
            payee, amount = f"card-m{rng.randint(1, 20):03d}", world.amount(5_000 * s, 0.7, 30_000 * s)
        if night:
            amount = min(amount, 5_000)
        world.pay(c, payee, amount, kind, at)


def _inject(world: _World, pattern: str, k: int, victims: Iterator[_Customer], policy: Policy) -> None:
    rng, instance = world.rng, f"{pattern}-{k}"
    day = rng.randint(WARMUP_DAYS + 1, DAYS - 2)
    c = next(victims)

    def pay(payee: str, amount: int, kind: PaymentType, at: datetime, device: str | None = None) -> None:
        world.pay(c, payee, amount, kind, at, device=device, label=pattern, instance=instance)

    at = world.daytime(c, day)
    if pattern == "new_device_high_amount":  # a taken-over account on the fraudster's phone
        pay(rng.choice(c.contacts), rng.randint(60_000, 95_000), PaymentType.P2P, at, device=f"dev-{c.id}-x{k}")
    elif pattern == "new_recipient_high_amount":  # a scam: a large first payment to a stranger
        pay(f"x-{instance}", rng.randint(60_000, 95_000), PaymentType.P2P, at)
    elif pattern == "fan_out":  # a drained account: small amounts to many new wallets
        for i in range(8):
            pay(f"x-{instance}-{i}", rng.randint(5_000, 20_000), PaymentType.P2P, at + timedelta(minutes=5 * i))
    elif pattern == "fan_in_mule":  # a mule wallet collecting from many victims
        mule = f"mule-{k}"
        for i in range(8):
            sender = next(victims)
            world.pay(
                sender, mule, rng.randint(10_000, 40_000), PaymentType.P2P, at + timedelta(minutes=6 * i),
                label=pattern, instance=instance,
            )  # fmt: skip
    elif pattern == "structuring":  # several amounts just under the published per-payment limit
        limits = policy.limits(c.tier, PaymentType.P2P)
        cap = limits.per_transaction.lowest() if limits else 100_000
        for i in range(4):
            amount = cap * rng.randint(92, 99) // 100
            pay(c.contacts[i % len(c.contacts)], amount, PaymentType.P2P, at + timedelta(minutes=70 * i))
    elif pattern == "layering":  # money in from one agent and straight out at another
        cash_in = rng.randint(100_000, 200_000)
        pay(f"agent{rng.randint(1, 30):03d}", cash_in, PaymentType.CASH_IN, at)
        out_at = at + timedelta(minutes=rng.randint(20, 90))
        pay(f"agent{rng.randint(1, 30):03d}", cash_in * rng.randint(80, 100) // 100, PaymentType.CASH_OUT, out_at)
    elif pattern == "unusual_hours":  # a taken-over account used at night
        night = START + timedelta(days=max(day, 20), hours=rng.randint(2, 3), minutes=rng.randint(0, 59))
        pay(rng.choice(c.contacts), rng.randint(25_000, 45_000), PaymentType.P2P, night)
    elif pattern == "limit_breach":
        kind = k % 3
        if kind == 0:  # one payment far above any tier's per-payment limit
            pay(rng.choice(c.contacts), 5_000_000, PaymentType.P2P, at)
        elif kind == 1:  # a burst of small merchant payments (a scripted card-testing style run)
            for i in range(60):
                pay(
                    f"m{rng.randint(1, 40):03d}",
                    rng.randint(1_000, 3_000),
                    PaymentType.MERCHANT,
                    at + timedelta(seconds=55 * i),
                )
        else:  # a day of large payments to one recipient
            payee = rng.choice(c.contacts)
            for i in range(12):
                pay(payee, 90_000 * c.scale, PaymentType.P2P, at + timedelta(minutes=30 * i))


def generate(*, seed: int, customers: int, policy: Policy, instances: int | None = None) -> Dataset:
    """A dataset of `customers` normal customers over `DAYS` days, with `instances` injected
    episodes of each pattern (default: one per 40 customers, at least 2). Deterministic by seed."""
    if customers < 20:
        raise ValueError("the dataset needs at least 20 customers")
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not security
    world = _World(rng, policy.currency)
    everyone = _customers(rng, customers)
    for c in everyone:
        for day in range(DAYS):
            _normal_day(world, c, day, everyone)
    per_pattern = instances if instances is not None else max(2, customers // 40)
    # Victims are drawn without repetition, so two episodes never share an account; the
    # night-time pattern needs a customer with a rich daytime history.
    pool = rng.sample(everyone, len(everyone))
    busy = sorted((c for c in pool if c.rate >= 1.5), key=lambda c: -c.rate)
    night_victims = cycle(busy[:per_pattern] or pool)
    victims = cycle([c for c in pool if c not in busy[:per_pattern]])
    for pattern in PATTERNS:
        for k in range(per_pattern):
            _inject(world, pattern, k, night_victims if pattern == "unusual_hours" else victims, policy)
    payments = sorted(world.out, key=lambda p: (p.request.at, p.request.payer_id))
    return Dataset(
        seed=seed,
        customers=customers,
        currency=policy.currency,
        warmup_until=START + timedelta(days=WARMUP_DAYS),
        payments=tuple(payments),
    )

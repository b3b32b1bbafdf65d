"""Customer notifications: an outbox of SMS and push messages, filled from events and emptied
by a dispatcher.

The consumer only queues: one `notifications` row per message, addressed to a user id, in the
transaction that records the event as processed. It stores no phone number and no name: the
real SMS/push gateway resolves the user's number or device from identity at send time, so a
number changed between the event and the send is honoured and this table holds no PII.

The dispatcher sends what is due, outside any database transaction (a gateway call never
holds a transaction open): it claims a batch (attempts + 1, due again after a lease), sends,
then marks each message sent, or due again with exponential backoff, or `failed` after
`max_attempts`. Delivery is at least once: a dispatcher that dies between the gateway's
answer and the mark sends that message again when the lease is over.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

import sqlalchemy as sa
import uuid6
from loguru import logger
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kora.events.consumers.payload import (
    PAYMENT_STATUS_CHANGED,
    PAYMENT_STATUS_CHANGED_SUBJECT,
    STAFF_ROLES,
    USER_REGISTERED,
    USER_REGISTERED_SUBJECT,
    PaymentChange,
)
from kora.events.consumers.tables import insert_for, notifications
from kora.events.domain import Envelope
from kora.events.ports import ConsumerSpec
from kora.kernel import Clock

# Template code → channel. Money movements go by SMS (it reaches every phone); the welcome
# message by push (the user has just installed the app).
TEMPLATES: Mapping[str, str] = {
    "p2p_sent": "sms",
    "p2p_received": "sms",
    "cash_in_received": "sms",
    "cash_out_sent": "sms",
    "merchant_paid": "sms",
    "refund_received": "sms",
    "payment_failed": "sms",
    "welcome": "push",
}

# Payment types a customer starts, and which party is that customer ("payer" or "payee").
_CUSTOMER_INITIATED = {"p2p": "payer", "cash_out": "payer", "merchant": "payer", "cash_in": "payee"}


@dataclass(frozen=True, slots=True)
class Message:
    user_id: uuid.UUID
    template: str
    params: Mapping[str, Any]

    @property
    def channel(self) -> str:
        return TEMPLATES[self.template]


def payment_messages(change: PaymentChange) -> list[Message]:
    """The messages a payment's status change warrants (ids, amounts and codes only)."""
    kind, reached = change.payment_type, set(change.reached)
    base = {"payment_id": str(change.payment_id), "currency": change.currency}
    moved = change.moved_amount
    out: list[tuple[uuid.UUID | None, str, dict[str, Any]]] = []
    if kind == "p2p" and "SETTLED" in reached:
        out.append((change.payer_user_id, "p2p_sent", {"amount": moved, "fee": change.fee}))
        out.append((change.payee_user_id, "p2p_received", {"amount": moved - change.fee}))
    elif kind == "cash_in" and "CAPTURED" in reached:
        out.append((change.payee_user_id or change.payer_user_id, "cash_in_received", {"amount": moved}))
    elif kind == "cash_out" and "CAPTURED" in reached:
        out.append((change.payer_user_id, "cash_out_sent", {"amount": moved, "fee": change.fee}))
    elif kind == "merchant" and "SETTLED" in reached:
        out.append((change.payer_user_id, "merchant_paid", {"amount": moved}))
    elif kind == "refund" and "SETTLED" in reached:
        out.append((change.payee_user_id, "refund_received", {"amount": moved}))
    if "FAILED" in reached and kind in _CUSTOMER_INITIATED:
        customer = change.payer_user_id if _CUSTOMER_INITIATED[kind] == "payer" else change.payee_user_id
        out.append((customer, "payment_failed", {"amount": change.amount, "reason": change.failure_code}))
    return [Message(user, template, {**base, **params}) for user, template, params in out if user is not None]


def registration_messages(payload: Mapping[str, Any]) -> list[Message]:
    roles = {str(r) for r in payload.get("roles") or ()}
    if roles & STAFF_ROLES:
        return []
    return [Message(uuid.UUID(str(payload["user_id"])), "welcome", {})]


class NotificationsConsumer:
    """Queues customer notifications from payment status changes and registrations."""

    spec = ConsumerSpec("notifications", (PAYMENT_STATUS_CHANGED_SUBJECT, USER_REGISTERED_SUBJECT))
    handles = frozenset({PAYMENT_STATUS_CHANGED, USER_REGISTERED})

    def __init__(self, *, clock: Clock, sender: NotificationSender) -> None:
        self._clock = clock
        self.sender = sender

    async def handle(self, event: Envelope, conn: AsyncConnection) -> None:
        if (event.type, event.version) == PAYMENT_STATUS_CHANGED:
            messages = payment_messages(PaymentChange.of(event.payload))
        else:
            messages = registration_messages(event.payload)
        if not messages:
            return
        now = self._clock.now()
        rows = [
            {
                "id": uuid6.uuid7(),
                "event_id": event.id,
                "user_id": m.user_id,
                "channel": m.channel,
                "template": m.template,
                "params": json.dumps(dict(m.params), sort_keys=True),
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for m in messages
        ]
        insert = insert_for(conn, notifications).on_conflict_do_nothing(
            index_elements=["event_id", "user_id", "template"]
        )
        await conn.execute(insert, rows)

    def dispatcher(self, engine: AsyncEngine, **options: Any) -> NotificationDispatcher:
        return NotificationDispatcher(engine, self.sender, self._clock, **options)


# -- sending ----------------------------------------------------------------------------------


class NotificationError(Exception):
    """A send the gateway refused or could not make. `code` is stored as the last error; a
    gateway's free text is not (it may echo the phone number)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class NotificationSender(Protocol):
    """The SMS/push gateway. The adapter resolves the user's phone number (or push token) from
    identity at send time; nothing upstream of it ever holds one."""

    async def send(self, user_id: uuid.UUID, channel: str, template: str, params: Mapping[str, Any]) -> None:
        """Send, or raise (preferably `NotificationError`)."""
        ...


@dataclass(frozen=True, slots=True)
class SentMessage:
    user_id: uuid.UUID
    channel: str
    template: str
    params: Mapping[str, Any]


@dataclass
class SimulatedSender:
    """An in-memory gateway for development and tests: records what it would have sent (user
    ids, templates, parameters: nothing a real gateway would add, such as the number), and
    fails on demand, deterministically."""

    sent: list[SentMessage] = field(default_factory=list)
    attempts: int = 0
    _fail_next: int = 0
    _failing_users: set[uuid.UUID] = field(default_factory=set)

    def fail_next(self, count: int = 1) -> None:
        """The next `count` sends fail."""
        self._fail_next += count

    def fail_for(self, user_id: uuid.UUID) -> None:
        """Every send to `user_id` fails (e.g. a number the operator no longer serves)."""
        self._failing_users.add(user_id)

    async def send(self, user_id: uuid.UUID, channel: str, template: str, params: Mapping[str, Any]) -> None:
        self.attempts += 1
        if self._fail_next > 0:
            self._fail_next -= 1
            raise NotificationError("simulated_failure")
        if user_id in self._failing_users:
            raise NotificationError("simulated_unreachable")
        self.sent.append(SentMessage(user_id, channel, template, dict(params)))


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: uuid.UUID
    user_id: uuid.UUID
    channel: str
    template: str
    params: Mapping[str, Any]
    attempts: int


class NotificationDispatcher:
    def __init__(
        self,
        engine: AsyncEngine,
        sender: NotificationSender,
        clock: Clock,
        *,
        max_attempts: int = 5,
        backoff_seconds: float = 30.0,
        max_backoff_seconds: float = 3600.0,
        lease_seconds: float = 300.0,
    ) -> None:
        self._engine = engine
        self._sender = sender
        self._clock = clock
        self.max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._lease = timedelta(seconds=lease_seconds)

    def backoff(self, attempts: int) -> timedelta:
        """The wait after failed attempt number `attempts`: doubling, capped."""
        return timedelta(seconds=min(self._backoff * 2 ** max(attempts - 1, 0), self._max_backoff))

    async def deliver_due(self, limit: int = 100) -> dict[str, int]:
        """Send up to `limit` due messages; counts of `sent`, `retried` (due again later) and
        `failed` (given up after `max_attempts`)."""
        counts = {"sent": 0, "retried": 0, "failed": 0}
        claimed_at = self._clock.now()
        for item in await self._claim(limit):
            if self._clock.now() >= claimed_at + self._lease / 2:
                # A slow gateway: past half the lease another dispatcher may soon claim the rest.
                # Leave them (their lease runs out, then anyone sends them) rather than race it.
                break
            try:
                await self._sender.send(item.user_id, item.channel, item.template, item.params)
            except Exception as exc:
                error = exc.code if isinstance(exc, NotificationError) else type(exc).__name__
                counts[await self._record_failure(item, error[:200])] += 1
            else:
                await self._record_sent(item)
                counts["sent"] += 1
        return counts

    async def _claim(self, limit: int) -> list[_Claimed]:
        n, now = notifications, self._clock.now()
        async with self._engine.begin() as conn:
            rows = (
                await conn.execute(
                    sa.select(n.c.id, n.c.user_id, n.c.channel, n.c.template, n.c.params, n.c.attempts)
                    .where(n.c.status == "pending", n.c.next_attempt_at <= now)
                    .order_by(n.c.next_attempt_at, n.c.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return []
            await conn.execute(
                n.update()
                .where(n.c.id.in_([r.id for r in rows]))
                .values(attempts=n.c.attempts + 1, next_attempt_at=now + self._lease)
            )
        return [_Claimed(r.id, r.user_id, r.channel, r.template, json.loads(r.params), r.attempts + 1) for r in rows]

    async def _record_sent(self, item: _Claimed) -> None:
        n, now = notifications, self._clock.now()
        async with self._engine.begin() as conn:
            # Only while the claim is still ours (a later claim bumped `attempts`).
            await conn.execute(
                n.update()
                .where(n.c.id == item.id, n.c.attempts == item.attempts)
                .values(status="sent", sent_at=now, last_error=None)
            )
        logger.info("notification sent", notification_id=str(item.id), template=item.template, attempts=item.attempts)

    async def _record_failure(self, item: _Claimed, error: str) -> str:
        n, now = notifications, self._clock.now()
        give_up = item.attempts >= self.max_attempts
        values: dict[str, object] = {"last_error": error}
        if give_up:
            values["status"] = "failed"
        else:
            values["next_attempt_at"] = now + self.backoff(item.attempts)
        async with self._engine.begin() as conn:
            await conn.execute(n.update().where(n.c.id == item.id, n.c.attempts == item.attempts).values(**values))
        outcome = "failed" if give_up else "retried"
        log = logger.warning if give_up else logger.info
        log(
            "notification not sent",
            notification_id=str(item.id),
            template=item.template,
            attempts=item.attempts,
            outcome=outcome,
            error=error,
        )
        return outcome

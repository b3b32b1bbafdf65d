"""Kora's own event consumers: customer notifications, the KPI projection and the
reconciliation feed. Each is an `EventHandler` run by a `ConsumerRunner`; each owns its tables
(`tables.py`, registered on the shared metadata when this package is imported)."""

from __future__ import annotations

from kora.events.consumers import tables  # noqa: F401  (registers the consumers' tables)
from kora.events.consumers.kpi import CustomerKpi, KpiConsumer, PaymentKpi, daily_kpis, daily_new_customers
from kora.events.consumers.notifications import (
    NotificationDispatcher,
    NotificationError,
    NotificationsConsumer,
    NotificationSender,
    SimulatedSender,
)
from kora.events.consumers.recon_feed import ReconFeedConsumer
from kora.events.runtime import EventHandler
from kora.kernel import Clock, SystemClock


def build_consumers(*, sender: NotificationSender, clock: Clock | None = None) -> list[EventHandler]:
    """The consumers named `notifications`, `kpi` and `recon-feed`. `sender` is the gateway the
    notifications consumer's dispatcher uses (`NotificationsConsumer.dispatcher(engine)`)."""
    clock = clock or SystemClock()
    return [NotificationsConsumer(clock=clock, sender=sender), KpiConsumer(), ReconFeedConsumer(clock=clock)]


__all__ = [
    "CustomerKpi",
    "KpiConsumer",
    "NotificationDispatcher",
    "NotificationError",
    "NotificationSender",
    "NotificationsConsumer",
    "PaymentKpi",
    "ReconFeedConsumer",
    "SimulatedSender",
    "build_consumers",
    "daily_kpis",
    "daily_new_customers",
]

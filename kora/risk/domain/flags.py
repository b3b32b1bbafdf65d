"""Anomaly flags: each a small pure function of the request, its context and its parameters
from the policy, returning the reason it fired (with its points) or None."""

from __future__ import annotations

from kora.risk.domain.model import Reason, RiskContext, RiskRequest
from kora.risk.domain.policy import (
    FanIn,
    FanOut,
    Layering,
    NewDeviceHighAmount,
    NewRecipientHighAmount,
    Policy,
    Structuring,
    TypeLimits,
    UnusualHours,
)


def _fired(rule: str, points: int, *, limit: int | None, observed: int, window: str | None = None) -> Reason:
    return Reason(rule=f"flag.{rule}", effect="score", limit=limit, observed=observed, window=window, points=points)


def _minutes(minutes: int) -> str:
    return f"{minutes}m"


def new_device_high_amount(request: RiskRequest, context: RiskContext, p: NewDeviceHighAmount) -> Reason | None:
    """A high amount from a device this payer has not used for long (or ever)."""
    if request.type not in p.applies_to or request.amount < p.min_amount:
        return None
    seen = context.device_first_seen
    if seen is not None and (request.at - seen).total_seconds() >= p.device_age_hours * 3600:
        return None
    return _fired("new_device_high_amount", p.points, limit=p.min_amount, observed=request.amount)


def new_recipient_high_amount(request: RiskRequest, context: RiskContext, p: NewRecipientHighAmount) -> Reason | None:
    """A first payment to this payee, above the threshold."""
    if request.type not in p.applies_to or context.known_recipient or request.amount < p.min_amount:
        return None
    return _fired("new_recipient_high_amount", p.points, limit=p.min_amount, observed=request.amount)


def fan_out(request: RiskRequest, context: RiskContext, p: FanOut) -> Reason | None:
    """Many distinct payees in a short window (a drained account, or a mule paying out)."""
    if request.type not in p.applies_to:
        return None
    distinct = len(context.recent_recipients | {request.payee_id})
    if distinct < p.distinct_recipients:
        return None
    return _fired(
        "fan_out", p.points, limit=p.distinct_recipients, observed=distinct, window=_minutes(p.window_minutes)
    )


def fan_in_mule(request: RiskRequest, context: RiskContext, p: FanIn) -> Reason | None:
    """Many distinct senders to one payee in a short window (a mule collecting)."""
    if request.type not in p.applies_to:
        return None
    distinct = len(context.recent_senders_to_payee | {request.payer_id})
    if distinct < p.distinct_senders:
        return None
    return _fired(
        "fan_in_mule", p.points, limit=p.distinct_senders, observed=distinct, window=_minutes(p.window_minutes)
    )


def structuring(request: RiskRequest, context: RiskContext, p: Structuring, limits: TypeLimits) -> Reason | None:
    """Repeated amounts just under the per-transaction limit (its lowest threshold)."""
    if request.type not in p.applies_to:
        return None
    cap = limits.per_transaction.lowest()
    floor = cap * (100 - p.within_percent) // 100

    def near(amount: int) -> bool:
        return floor <= amount <= cap

    if not near(request.amount):
        return None
    prior = sum(1 for amount in context.recent_amounts if near(amount))
    if prior < p.min_prior:
        return None
    return _fired("structuring", p.points, limit=cap, observed=prior + 1, window=p.window.value)


def layering(request: RiskRequest, context: RiskContext, p: Layering) -> Reason | None:
    """A cash-out taking most of a cash-in received just before."""
    if request.type not in p.applies_to or context.recent_cash_in < p.min_cash_in:
        return None
    if request.amount * 100 < context.recent_cash_in * p.cash_out_percent:
        return None
    return _fired(
        "layering", p.points, limit=context.recent_cash_in, observed=request.amount, window=_minutes(p.window_minutes)
    )


def unusual_hours(request: RiskRequest, context: RiskContext, p: UnusualHours) -> Reason | None:
    """A sizeable payment at an hour (± neighbours) that holds almost none of this payer's past
    spending, once the payer has enough history. Spending, not the count of payments: a
    customer who buys airtime at night now and then has not made the night usual for a large
    transfer."""
    if request.type not in p.applies_to or request.amount < p.min_amount:
        return None
    if sum(context.hour_histogram) < p.min_history:
        return None
    spent = context.hour_amounts
    total = sum(spent)
    hour = request.at.hour
    around = sum(spent[(hour + d) % 24] for d in range(-p.neighbour_hours, p.neighbour_hours + 1))
    if total == 0 or around * 100 > total * p.max_share_percent:
        return None
    return _fired("unusual_hours", p.points, limit=p.max_share_percent, observed=around * 100 // total)


def anomaly_flags(request: RiskRequest, context: RiskContext, policy: Policy, limits: TypeLimits) -> list[Reason]:
    """Every flag of the policy that fires on this request."""
    f = policy.flags
    found = [
        new_device_high_amount(request, context, f.new_device_high_amount) if f.new_device_high_amount else None,
        new_recipient_high_amount(request, context, f.new_recipient_high_amount)
        if f.new_recipient_high_amount
        else None,
        fan_out(request, context, f.fan_out) if f.fan_out else None,
        fan_in_mule(request, context, f.fan_in_mule) if f.fan_in_mule else None,
        structuring(request, context, f.structuring, limits) if f.structuring else None,
        layering(request, context, f.layering) if f.layering else None,
        unusual_hours(request, context, f.unusual_hours) if f.unusual_hours else None,
    ]
    return [reason for reason in found if reason is not None]

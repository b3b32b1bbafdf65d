"""How the SQL risk store reads a request's context: one statement per request
(`context_query`, bind parameters) or one for many (`contexts_query`: the same query as a
LATERAL subquery over a VALUES list of requests, PostgreSQL only), and the row it returns as a
`RiskContext` (`row_context`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from kora.platform.db import UtcDateTime
from kora.risk.adapters.tables import COUNTED, risk_devices, risk_payer_hours, risk_payments
from kora.risk.domain.model import PaymentType, RiskContext, RiskRequest, Usage, Window
from kora.risk.domain.policy import Policy

_p = risk_payments.c


def _int(value: Any) -> int:
    return 0 if value is None else int(value)  # PostgreSQL's sum(bigint) is numeric


def _literals(values: Iterable[str]) -> list[Any]:
    """An IN list written into the statement (constants, not an expanding parameter that would
    be re-rendered at every execution)."""
    return [sa.literal_column(f"'{value}'") for value in sorted(values)]


def _types(types: frozenset[PaymentType]) -> list[Any]:
    return _literals(t.value for t in types)


_COUNTED_LIST = _literals(COUNTED)
_COUNTED = _p.status.in_(_COUNTED_LIST)


def _listed(value: Any) -> list[Any]:
    """A list aggregate's value: PostgreSQL's array_agg (a list, None when empty) or SQLite's
    json_group_array (a JSON text)."""
    if value is None:
        return []
    return list(json.loads(value)) if isinstance(value, str) else list(value)


def context_query(policy: Policy, dialect: str, source: Any = None) -> sa.Select[Any]:
    """One row: the payer's usage per window (amount, count, and the same towards the payee)
    for the request's type, the cash-in within the layering window, whether the payer paid the
    payee before, the device's first sighting, the lists the flags need (recipients, senders
    to the payee, structuring amounts, the payer's hours) and the payment id's status if any.
    Subqueries read the table under their own alias so none correlates with the outer one."""

    def param(name: str) -> Any:
        if source is not None:  # one request per row of a VALUES list (`contexts_query`)
            return source.c[name]
        return sa.bindparam(name, type_=UtcDateTime) if name.startswith(("since", "earliest")) else sa.bindparam(name)

    # Subqueries read the request's VALUES row from the enclosing query (never their own copy).
    correlating: tuple[Any, ...] = () if source is None else (source,)

    def aggregate(expr: Any, *, distinct: bool = False) -> Any:
        arg = sa.distinct(expr) if distinct else expr
        return sa.func.array_agg(arg) if dialect == "postgresql" else sa.func.json_group_array(arg)

    flags = policy.flags
    same_type = _p.type == param("type")
    to_payee = _p.payee_id == param("payee")
    columns: list[Any] = []
    for window in Window:
        inside = sa.and_(same_type, _p.at > param(f"since_{window.value}"))
        columns += [
            sa.func.sum(sa.case((inside, _p.amount), else_=0)),
            sa.func.count(sa.case((inside, 1))),
            sa.func.sum(sa.case((sa.and_(inside, to_payee), _p.amount), else_=0)),
            sa.func.count(sa.case((sa.and_(inside, to_payee), 1))),
        ]
    if flags.layering:
        cash_in = sa.and_(_p.type == PaymentType.CASH_IN.value, _p.at > param("since_layering"))
        columns.append(sa.func.sum(sa.case((cash_in, _p.amount), else_=0)).label("cash_in"))
    else:
        columns.append(sa.literal_column("0").label("cash_in"))

    paid = risk_payments.alias("paid")
    columns.append(
        sa.exists()
        .where(paid.c.payer_id == param("payer"), paid.c.payee_id == param("payee"), paid.c.status.in_(_COUNTED_LIST))
        .correlate(*correlating)
        .label("known")
    )
    d = risk_devices.c
    columns.append(
        sa.select(d.first_seen_at)
        .where(d.payer_id == param("payer"), d.device_id == param("device"))
        .correlate(*correlating)
        .scalar_subquery()
        .label("device")
    )
    h = risk_payer_hours.c
    entry = sa.cast(h.hour, sa.String) + ":" + sa.cast(h.count, sa.String) + ":" + sa.cast(h.amount, sa.String)
    columns.append(
        sa.select(aggregate(entry))
        .where(h.payer_id == param("payer"))
        .correlate(*correlating)
        .scalar_subquery()
        .label("hours")
    )
    none: Any = sa.cast(sa.null(), sa.String)
    if flags.fan_out:
        r = risk_payments.alias("fan_out")
        columns.append(
            sa.select(aggregate(r.c.payee_id, distinct=True))
            .where(r.c.payer_id == param("payer"), r.c.status.in_(_COUNTED_LIST), r.c.at > param("since_fan_out"))
            .where(r.c.type.in_(_types(flags.fan_out.applies_to)))
            .correlate(*correlating)
            .scalar_subquery()
            .label("recipients")
        )
    else:
        columns.append(none.label("recipients"))
    if flags.fan_in_mule:
        f = risk_payments.alias("fan_in")
        columns.append(
            sa.select(aggregate(f.c.payer_id, distinct=True))
            .where(f.c.payee_id == param("payee"), f.c.status.in_(_COUNTED_LIST), f.c.at > param("since_fan_in"))
            .where(f.c.type.in_(_types(flags.fan_in_mule.applies_to)))
            .correlate(*correlating)
            .scalar_subquery()
            .label("senders")
        )
    else:
        columns.append(none.label("senders"))
    if flags.structuring:
        s = risk_payments.alias("structuring")
        columns.append(
            sa.select(aggregate(s.c.amount))
            .where(s.c.payer_id == param("payer"), s.c.status.in_(_COUNTED_LIST), s.c.type == param("type"))
            .where(s.c.at > param("since_structuring"))
            .correlate(*correlating)
            .scalar_subquery()
            .label("amounts")
        )
    else:
        columns.append(none.label("amounts"))
    e = risk_payments.alias("existing")
    columns.append(
        sa.select(e.c.status)
        .where(e.c.payment_id == param("payment_id"))
        .correlate(*correlating)
        .scalar_subquery()
        .label("existing")
    )
    query: sa.Select[Any] = sa.select(*columns).where(
        _p.payer_id == param("payer"), _COUNTED, _p.at > param("earliest")
    )
    return query if source is None else query.correlate(source)


def context_params(request: RiskRequest, policy: Policy, payment_id: str = "") -> dict[str, Any]:
    """The bind parameters (or VALUES columns) of one request's context under `policy`."""
    at, flags = request.at, policy.flags
    params: dict[str, Any] = {f"since_{w.value}": at - w.length for w in Window}
    layering = flags.layering.window_minutes if flags.layering else 0
    fan_out = flags.fan_out.window_minutes if flags.fan_out else 0
    fan_in = flags.fan_in_mule.window_minutes if flags.fan_in_mule else 0
    params.update(
        payer=request.payer_id,
        payee=request.payee_id,
        type=request.type.value,
        device=request.device_id,
        payment_id=payment_id,
        since_layering=at - timedelta(minutes=layering),
        since_fan_out=at - timedelta(minutes=fan_out),
        since_fan_in=at - timedelta(minutes=fan_in),
        since_structuring=at - (flags.structuring.window.length if flags.structuring else timedelta(0)),
        earliest=min(at - max(w.length for w in Window), at - timedelta(minutes=layering)),
    )
    return params


_TEXT = ("payer", "payee", "type", "device", "payment_id")
_TIMES = (
    *(f"since_{w.value}" for w in Window),
    "since_layering",
    "since_fan_out",
    "since_fan_in",
    "since_structuring",
    "earliest",
)


def contexts_query(policy: Policy, count: int) -> sa.Select[Any]:
    """One statement reading the contexts of `count` requests, one row each in order (column
    `idx`): PostgreSQL's LATERAL over the requests as rows of bind parameters `r<i>_<name>`
    (`contexts_params`). The statement depends only on the policy and `count`, so it is built
    and compiled once per batch size, not per batch."""
    rows = []
    for i in range(count):
        columns: list[Any] = [sa.literal(i, sa.Integer()).label("idx")]
        columns += [sa.bindparam(f"r{i}_{name}", type_=sa.String()).label(name) for name in _TEXT]
        columns += [sa.bindparam(f"r{i}_{name}", type_=UtcDateTime()).label(name) for name in _TIMES]
        rows.append(sa.select(*columns))
    source = sa.union_all(*rows).subquery("request") if count > 1 else rows[0].subquery("request")
    context = context_query(policy, "postgresql", source).lateral("context")
    return sa.select(source.c.idx, context).select_from(source.join(context, sa.true())).order_by(source.c.idx)


def contexts_params(requests: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The bind parameters of `contexts_query` for these requests' `context_params`."""
    return {f"r{i}_{name}": value for i, params in enumerate(requests) for name, value in params.items()}


def row_context(row: Any, *, offset: int = 0) -> tuple[RiskContext, str | None]:
    """A context row as the domain's `RiskContext`, and the status of the payment id if risk
    has seen it. `offset`: columns before the usage ones (`contexts_query`'s `idx`)."""
    usage = [_int(v) for v in row[offset : offset + 4 * len(Window)]]
    hours, hour_amounts = [0] * 24, [0] * 24
    for entry in _listed(row.hours):
        hour, count, amount = (int(part) for part in str(entry).split(":"))
        hours[hour], hour_amounts[hour] = count, amount
    context = RiskContext(
        payer_usage={w: Usage(amount=usage[4 * i], count=usage[4 * i + 1]) for i, w in enumerate(Window)},
        recipient_usage={w: Usage(amount=usage[4 * i + 2], count=usage[4 * i + 3]) for i, w in enumerate(Window)},
        device_first_seen=row.device,
        known_recipient=bool(row.known),
        recent_recipients=frozenset(str(v) for v in _listed(row.recipients)),
        recent_senders_to_payee=frozenset(str(v) for v in _listed(row.senders)),
        recent_amounts=tuple(int(v) for v in _listed(row.amounts)),
        recent_cash_in=_int(row.cash_in),
        hour_histogram=tuple(hours),
        hour_amounts=tuple(hour_amounts),
    )
    return context, row.existing

"""The console's pages. Each takes the KPI report (the API's JSON) and draws it; none shows a
person's data (the report has none: counts, amounts, providers, codes)."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from kora.kernel import currency
from kpi_console.prometheus import WINDOWS, PrometheusUnavailable, slos

# Outcomes in the colours people read them in.
OUTCOME_COLOURS = {
    "succeeded": "#2e9e5b",
    "declined": "#e8a33d",
    "failed": "#d64541",
    "provider_errors": "#d64541",
    "pending": "#f2c94c",
    "rerouted_away": "#8e7cc3",
    "cancelled": "#9e9e9e",
}


def _outcome_bars(data: pd.DataFrame, by: str) -> alt.Chart:
    present = [o for o in OUTCOME_COLOURS if o in set(data["outcome"])]
    scale = alt.Scale(domain=present, range=[OUTCOME_COLOURS[o] for o in present])
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X(f"{by}:N", title=None),
            y=alt.Y("payments:Q", stack=True),
            color=alt.Color("outcome:N", scale=scale, sort=present),
            order=alt.Order("outcome:N"),
        )
    )


def money(amount: int, code: str | None) -> str:
    """Minor units as the currency writes them (XOF has no decimals)."""
    if not code:
        return f"{amount:,}"
    try:
        exponent = currency(code).exponent
    except Exception:  # a currency the core does not know: show minor units
        return f"{amount:,} (minor units) {code}"
    return f"{amount / 10**exponent:,.{exponent}f} {code}"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.2f} %"


def money_flow(report: dict[str, Any]) -> None:
    st.header("Money flow")
    payments, success = report["payments"], report["success"]
    if not payments["by_currency"]:
        st.info("No payment was created in this range.")
    for row in payments["by_currency"]:
        cols = st.columns(4)
        cols[0].metric(f"Volume moved ({row['currency']})", money(row["volume"], row["currency"]))
        cols[1].metric("Payments", f"{row['count']:,}")
        cols[2].metric("Success rate", percent(row["success_rate"]))
        cols[3].metric("Fee revenue", money(row["fees"], row["currency"]))
    st.caption(
        f"{success['pending']} payment(s) still waiting for a provider's answer, {success['cancelled']} cancelled."
    )
    by_type = pd.DataFrame(payments["by_type"])
    if not by_type.empty:
        st.subheader("Volume by payment type")
        st.bar_chart(by_type, x="payment_type", y="volume", color="currency", horizontal=True)
        st.subheader("Outcomes by payment type")
        outcomes = by_type.melt(
            id_vars=["payment_type"],
            value_vars=["succeeded", "failed", "pending", "cancelled"],
            var_name="outcome",
            value_name="payments",
        )
        st.altair_chart(_outcome_bars(outcomes, "payment_type"), width="stretch", theme=None)
        st.dataframe(
            by_type[
                [
                    "payment_type",
                    "currency",
                    "count",
                    "succeeded",
                    "failed",
                    "pending",
                    "volume",
                    "fees",
                    "success_rate",
                ]
            ],
            hide_index=True,
        )
    daily = pd.DataFrame(report["daily"]["payments"])
    if not daily.empty:
        st.subheader("Captured per day")
        captured = daily[daily["status"] == "CAPTURED"].groupby(["day", "currency"], as_index=False)["amount"].sum()
        if not captured.empty:
            st.bar_chart(captured, x="day", y="amount", color="currency")
    customers = report["daily"]["new_customers"]
    if customers:
        st.metric("New customers", sum(c["count"] for c in customers))
    st.caption("Daily series: " + report["sources"]["daily"])


def error_budgets(report: dict[str, Any], prometheus_url: str | None, objective: float) -> None:
    st.header("Error budgets")
    success = report["success"]
    cols = st.columns(3)
    cols[0].metric("Payment success rate", percent(success["rate"]), help="succeeded / (succeeded + failed)")
    cols[1].metric("Objective", percent(objective))
    failed_share = None if success["rate"] is None else 1 - success["rate"]
    budget = 1 - objective
    burn = None if failed_share is None or budget <= 0 else failed_share / budget
    cols[2].metric("Budget burn (range)", "—" if burn is None else f"{burn:.2f}x", help="1x spends the budget exactly")
    causes = pd.DataFrame([{"cause": k, "payments": v} for k, v in success["failed_by_cause"].items()])
    if success["failed"]:
        st.subheader("Why payments failed")
        st.bar_chart(causes, x="cause", y="payments", horizontal=True)
        st.dataframe(pd.DataFrame(success["failed_by_code"]), hide_index=True)
    else:
        st.success("No failed payment in this range.")
    st.subheader("SLOs (Prometheus)")
    if not prometheus_url:
        st.info("Set KORA_CONSOLE_PROMETHEUS_URL to see the SLOs' error budgets and burn rates.")
        return
    try:
        found = slos(prometheus_url)
    except PrometheusUnavailable as exc:
        st.warning(f"SLO views unavailable: {exc}.")
        return
    if not found:
        st.warning("Prometheus has no slo:* series: are Kora's SLO recording rules loaded?")
        return
    rows = [
        {
            "service": s.service,
            "slo": s.name,
            "objective": s.objective,
            "budget remaining (30d)": s.budget_remaining,
            **{f"burn {w}": s.burn_rate(w) for w in ("5m", "1h", "6h", "1d", "30d")},
        }
        for s in found
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    burns = pd.DataFrame(
        [
            {"slo": s.name, "window": w, "burn rate": s.burn_rate(w)}
            for s in found
            for w in WINDOWS
            if s.burn_rate(w) is not None
        ]
    )
    if not burns.empty:
        chart = (
            alt.Chart(burns)
            .mark_bar()
            .encode(x=alt.X("window:N", sort=list(WINDOWS)), y="burn rate:Q", color="slo:N", xOffset="slo:N")
        )
        st.altair_chart(chart, width="stretch")


def settlement(report: dict[str, Any]) -> None:
    st.header("Settlement")
    data = report["settlement"]
    for total in data["unsettled_by_currency"] or [
        {"currency": None, "amount": 0, "count": 0, "overdue_amount": 0, "overdue_count": 0}
    ]:
        cols = st.columns(2)
        cols[0].metric(
            "Captured, not settled" + (f" ({total['currency']})" if total["currency"] else ""),
            money(total["amount"], total["currency"]),
            help=f"{total['count']} payment(s); as of {report['range']['as_of']}",
        )
        cols[1].metric(
            "Of which overdue",
            money(total["overdue_amount"], total["currency"]),
            help=f"{total['overdue_count']} payment(s)",
        )
    delays = pd.DataFrame(data["delays"])
    if delays.empty:
        st.info("No provider payment was settled in this range.")
    else:
        st.subheader("Settlement delay by provider (hours)")
        hours = delays.melt(
            id_vars=["provider"], value_vars=["p50_seconds", "p95_seconds", "p99_seconds"], var_name="percentile"
        )
        hours["hours"] = hours["value"] / 3600
        hours["percentile"] = hours["percentile"].str.replace("_seconds", "")
        chart = (
            alt.Chart(hours)
            .mark_bar()
            .encode(x="provider:N", y="hours:Q", color="percentile:N", xOffset="percentile:N")
        )
        st.altair_chart(chart, width="stretch")
        st.dataframe(delays, hide_index=True)
    settled = pd.DataFrame(data["settled"])
    if not settled.empty:
        st.subheader("Settled in the range")
        settled["by people"] = settled["count"] - settled["by_reconciliation"]
        st.bar_chart(settled, x="provider", y=["by_reconciliation", "by people"], stack=True)
    if data["unsettled"]:
        st.subheader("Waiting for settlement")
        st.dataframe(pd.DataFrame(data["unsettled"]), hide_index=True)


def reconciliation(report: dict[str, Any]) -> None:
    st.header("Reconciliation")
    data = report["reconciliation"]
    cols = st.columns(3)
    cols[0].metric("Payments reconciled", f"{data['reconciled_payments']:,}")
    cols[1].metric("Mismatch rate", percent(data["mismatch_rate"]))
    at_risk = data["amount_at_risk"]
    cols[2].metric("Amount at risk", " + ".join(money(a["amount"], a["currency"]) for a in at_risk) if at_risk else "0")
    outcome = pd.DataFrame(
        [
            {"outcome": "matched and settled", "payments": data["settled_by_reconciliation"]},
            {"outcome": "mismatch confirmed", "payments": data["mismatched_payments"]},
        ]
    )
    st.bar_chart(outcome, x="outcome", y="payments", horizontal=True)
    if data["mismatches"]:
        st.subheader("Confirmed mismatches")
        st.dataframe(pd.DataFrame(data["mismatches"]), hide_index=True)
    st.caption(report["sources"]["reconciliation"])


def providers(report: dict[str, Any]) -> None:
    st.header("Providers")
    table = pd.DataFrame(report["providers"])
    retries = report["retries"]
    cols = st.columns(2)
    cols[0].metric("Retry rate (fallback to another provider)", percent(retries["retry_rate"]))
    cols[1].metric("Payments through providers", f"{retries['provider_payments']:,}")
    if table.empty:
        st.info("No provider payment in this range.")
        return
    st.subheader("Error rate by provider")
    st.bar_chart(table, x="provider", y="error_rate", horizontal=True)
    st.subheader("Outcomes by provider")
    kinds = ["succeeded", "declined", "provider_errors", "pending", "rerouted_away"]
    outcomes = table[["provider", *kinds]].melt(
        id_vars=["provider"],
        value_vars=kinds,
        var_name="outcome",
        value_name="payments",
    )
    st.altair_chart(_outcome_bars(outcomes, "provider"), width="stretch", theme=None)
    st.dataframe(table, hide_index=True)
    if retries["reroutes"]:
        st.subheader("Fallbacks")
        st.dataframe(pd.DataFrame(retries["reroutes"]), hide_index=True)
    st.caption(report["sources"]["providers"] + " · " + report["sources"]["retries"])


PAGES = {
    "Money flow": "money",
    "Error budgets": "budgets",
    "Settlement": "settlement",
    "Reconciliation": "reconciliation",
    "Providers": "providers",
}

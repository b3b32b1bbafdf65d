"""Kora's KPI console for leadership: `streamlit run dashboards/kora_console.py` (or `make console`).

Environment: KORA_CONSOLE_API_URL (Kora's API, default http://127.0.0.1:8000),
KORA_CONSOLE_PROMETHEUS_URL (optional: SLO error budgets and burn rates),
KORA_CONSOLE_SUCCESS_OBJECTIVE (the payment success objective shown without Prometheus, 0.99).

Nothing but the sign-in form is drawn until a person with the role `leadership` or `admin` has
signed in; their tokens stay in this browser tab's session state only.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta

import streamlit as st
from kpi_console import pages
from kpi_console.client import ConsoleError, KoraClient, Session, SessionExpired

SESSION_KEY = "kora_session"


def settings() -> tuple[str, str | None, float]:
    api = os.environ.get("KORA_CONSOLE_API_URL", "http://127.0.0.1:8000")
    prometheus = os.environ.get("KORA_CONSOLE_PROMETHEUS_URL") or None
    objective = float(os.environ.get("KORA_CONSOLE_SUCCESS_OBJECTIVE", "0.99"))
    return api, prometheus, objective


def sign_in_form(client: KoraClient) -> None:
    st.title("Kora console")
    with st.form("sign-in"):
        phone = st.text_input("Phone number", key="sign_in_phone")
        password = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in")
    if not submitted:
        return
    try:
        session = client.sign_in(phone.strip(), password)
    except ConsoleError as exc:
        st.error(str(exc))
        return
    if not session.allowed:
        client.sign_out(session)
        st.error("This console is for leadership and administrators only.")
        return
    st.session_state[SESSION_KEY] = session
    for key in ("sign_in_phone", "sign_in_password"):  # no credential kept past sign-in
        st.session_state.pop(key, None)
    st.rerun()


def chosen_range() -> tuple[str, str]:
    today = datetime.now(UTC).date()
    picked = st.sidebar.date_input(
        "Range (UTC days)", value=(today, today), min_value=today - timedelta(days=365), max_value=today, key="range"
    )
    days = list(picked) if isinstance(picked, tuple | list) else [picked]
    start: date = days[0] if days else today
    end: date = days[-1] if days else today
    return start.isoformat(), end.isoformat()


def main() -> None:
    st.set_page_config(page_title="Kora console", page_icon="📊", layout="wide")
    api, prometheus, objective = settings()
    client = KoraClient(api)
    try:
        session: Session | None = st.session_state.get(SESSION_KEY)
        if session is None:
            sign_in_form(client)
            return
        page = st.sidebar.radio("Page", list(pages.PAGES), key="page")
        date_from, date_to = chosen_range()
        if st.sidebar.button("Sign out", key="sign_out"):
            client.sign_out(session)
            del st.session_state[SESSION_KEY]
            st.rerun()
        try:
            report, session = client.kpis(session, date_from, date_to)
        except SessionExpired as exc:
            del st.session_state[SESSION_KEY]
            st.warning(str(exc))
            st.rerun()
            return
        except ConsoleError as exc:
            st.error(str(exc))
            return
        st.session_state[SESSION_KEY] = session  # perhaps refreshed
        st.sidebar.caption(f"{report['range']['from']} → {report['range']['to']} · as of {report['range']['as_of']}")
        if page == "Money flow":
            pages.money_flow(report)
        elif page == "Error budgets":
            pages.error_budgets(report, prometheus, objective)
        elif page == "Settlement":
            pages.settlement(report)
        elif page == "Reconciliation":
            pages.reconciliation(report)
        else:
            pages.providers(report)
    finally:
        client.close()


main()

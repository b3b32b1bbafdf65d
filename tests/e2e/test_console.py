"""The KPI console (dashboards/kora_console.py) under Streamlit's AppTest, against a real Kora
API on a real port holding a known day: the sign-in gate (nothing but the form before it, wrong
passwords and roles refused), every page drawn from the API's numbers without an exception,
tokens refreshed and sessions ended, and the SLO views from a real Prometheus when one is set."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import service_unavailable
from tests.e2e.console_world import ConsoleWorld, Person, console_world
from tests.support.net import free_port

pytestmark = pytest.mark.e2e

streamlit_testing = pytest.importorskip("streamlit.testing.v1")
AppTest = streamlit_testing.AppTest

APP = Path(__file__).resolve().parents[2] / "dashboards" / "kora_console.py"
PAGES = ["Money flow", "Error budgets", "Settlement", "Reconciliation", "Providers"]


@pytest.fixture(scope="module")
def kora_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleWorld]:
    yield from console_world(tmp_path_factory.mktemp("console-api"))


@pytest.fixture
def app(kora_api: ConsoleWorld, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("KORA_CONSOLE_API_URL", kora_api.url)
    monkeypatch.delenv("KORA_CONSOLE_PROMETHEUS_URL", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception
    return at


def sign_in(at: Any, person: Person, password: str | None = None) -> Any:
    at.text_input(key="sign_in_phone").input(person.phone_number)
    at.text_input(key="sign_in_password").input(password or person.password)
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    return at


def assert_only_the_form(at: Any) -> None:
    assert [t.value for t in at.title] == ["Kora console"]
    assert [w.label for w in at.text_input] == ["Phone number", "Password"]
    assert len(at.button) == 1
    for drawn in (at.header, at.subheader, at.metric, at.dataframe, at.radio, at.sidebar.radio, at.caption):
        assert len(drawn) == 0
    assert "kora_session" not in at.session_state


def metric(at: Any, label: str) -> str:
    [found] = [m for m in at.metric if m.label == label]
    return str(found.value)


def test_nothing_but_the_sign_in_form_before_sign_in(app: Any) -> None:
    assert_only_the_form(app)


def test_a_wrong_password_is_refused(app: Any, kora_api: ConsoleWorld) -> None:
    sign_in(app, kora_api.leader, password="not-the-password-1")
    assert [e.value for e in app.error] == ["Sign-in refused: check the phone number and the password."]
    assert len(app.metric) == 0
    assert "kora_session" not in app.session_state


def test_a_customer_is_refused(app: Any, kora_api: ConsoleWorld) -> None:
    sign_in(app, kora_api.customer)
    assert [e.value for e in app.error] == ["This console is for leadership and administrators only."]
    assert len(app.metric) == 0
    assert "kora_session" not in app.session_state


@pytest.mark.parametrize("who", ["leader", "admin"])
def test_every_page_renders_the_days_numbers(app: Any, kora_api: ConsoleWorld, who: str) -> None:
    sign_in(app, getattr(kora_api, who))
    assert "kora_session" in app.session_state
    assert "sign_in_password" not in app.session_state  # the password is not kept
    assert list(app.sidebar.radio(key="page").options) == PAGES
    drawn: dict[str, Any] = {}
    for page in PAGES:
        app.sidebar.radio(key="page").set_value(page).run()
        assert not app.exception, (page, app.exception)
        assert [h.value for h in app.header] == [page]
        assert not app.error, [e.value for e in app.error]
        drawn[page] = {m.label: m.value for m in app.metric}
    assert drawn["Money flow"]["Volume moved (XOF)"] == "43,111 XOF"
    assert drawn["Money flow"]["Success rate"] == "75.00 %"
    assert drawn["Money flow"]["Payments"] == "9"
    assert drawn["Error budgets"]["Payment success rate"] == "75.00 %"
    assert drawn["Error budgets"]["Budget burn (range)"] == "25.00x"  # 25 % failed against a 1 % budget
    assert drawn["Settlement"]["Captured, not settled (XOF)"] == "1,000 XOF"
    assert drawn["Settlement"]["Of which overdue"] == "0 XOF"
    assert drawn["Reconciliation"]["Mismatch rate"] == "33.33 %"
    assert drawn["Reconciliation"]["Amount at risk"] == "20,000 XOF"
    assert drawn["Reconciliation"]["Payments reconciled"] == "3"
    assert drawn["Providers"]["Retry rate (fallback to another provider)"] == "25.00 %"
    # Charts where people would rather look than read (Vega-Lite specs of st.*_chart / altair).
    charts = {}
    for page in PAGES:
        app.sidebar.radio(key="page").set_value(page).run()
        charts[page] = len(app.get("vega_lite_chart"))
    assert charts == {"Money flow": 3, "Error budgets": 1, "Settlement": 2, "Reconciliation": 1, "Providers": 2}


def test_an_expired_access_token_is_refreshed_and_an_ended_session_signs_out(app: Any, kora_api: ConsoleWorld) -> None:
    sign_in(app, kora_api.leader)
    session = app.session_state["kora_session"]
    first = session.access_token
    session.expires_at = time.time()  # as if its lifetime were over
    app.run()
    assert not app.exception
    refreshed = app.session_state["kora_session"]
    assert refreshed.access_token != first
    assert refreshed.refresh_token != session.refresh_token
    assert metric(app, "Payments") == "9"

    # Signed out elsewhere (the session revoked): the next refresh is refused → the form again.
    httpx.post(f"{kora_api.url}/v1/auth/logout", headers=refreshed.headers()).raise_for_status()
    refreshed.expires_at = time.time()
    app.run()
    assert not app.exception
    assert_only_the_form(app)


def test_signing_out_shows_the_form_again(app: Any, kora_api: ConsoleWorld) -> None:
    sign_in(app, kora_api.leader)
    app.sidebar.button(key="sign_out").click().run()
    assert not app.exception
    assert_only_the_form(app)


def test_error_budgets_without_prometheus_say_how_to_get_them(app: Any, kora_api: ConsoleWorld) -> None:
    sign_in(app, kora_api.leader)
    app.sidebar.radio(key="page").set_value("Error budgets").run()
    assert [i.value for i in app.info] == [
        "Set KORA_CONSOLE_PROMETHEUS_URL to see the SLOs' error budgets and burn rates."
    ]


SLO_RULES = """
groups:
  - name: sloth-slo-sli-recordings-kora-payment-success
    interval: 1s
    rules:
      - record: slo:objective:ratio
        expr: vector(0.995)
        labels: {sloth_service: kora, sloth_slo: payment-success}
      - record: slo:error_budget:ratio
        expr: vector(1 - 0.995)
        labels: {sloth_service: kora, sloth_slo: payment-success}
      - record: slo:sli_error:ratio_rate5m
        expr: vector(0.01)
        labels: {sloth_service: kora, sloth_slo: payment-success}
      - record: slo:sli_error:ratio_rate1h
        expr: vector(0.0025)
        labels: {sloth_service: kora, sloth_slo: payment-success}
      - record: slo:sli_error:ratio_rate30d
        expr: vector(0.001)
        labels: {sloth_service: kora, sloth_slo: payment-success}
"""


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        service_unavailable("prometheus is not installed (Debian package prometheus)")
    assert binary is not None
    (tmp_path / "rules.yml").write_text(SLO_RULES)
    (tmp_path / "prometheus.yml").write_text("global: {evaluation_interval: 1s}\nrule_files: [rules.yml]\n")
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                result = httpx.get(f"{url}/api/v1/query", params={"query": "slo:sli_error:ratio_rate30d"}, timeout=2)
                if result.status_code == 200 and result.json()["data"]["result"]:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    "prometheus did not evaluate the rules:\n" + (tmp_path / "prometheus.log").read_text()[-2000:]
                )
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_error_budgets_show_the_slos_from_prometheus(
    kora_api: ConsoleWorld, prometheus: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KORA_CONSOLE_API_URL", kora_api.url)
    monkeypatch.setenv("KORA_CONSOLE_PROMETHEUS_URL", prometheus)
    app = AppTest.from_file(str(APP), default_timeout=60)
    app.run()
    sign_in(app, kora_api.leader)
    app.sidebar.radio(key="page").set_value("Error budgets").run()
    assert not app.exception
    assert not app.warning, [w.value for w in app.warning]
    [table] = [d for d in app.dataframe if "slo" in d.value.columns]
    row = table.value.iloc[0]
    assert (row["service"], row["slo"]) == ("kora", "payment-success")
    assert row["objective"] == pytest.approx(0.995)
    assert row["burn 5m"] == pytest.approx(2.0)  # 1 % errors against a 0.5 % budget
    assert row["burn 1h"] == pytest.approx(0.5)
    assert row["budget remaining (30d)"] == pytest.approx(0.8)


def test_a_prometheus_that_does_not_answer_is_said_not_fatal(
    kora_api: ConsoleWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KORA_CONSOLE_API_URL", kora_api.url)
    monkeypatch.setenv("KORA_CONSOLE_PROMETHEUS_URL", f"http://127.0.0.1:{free_port()}")
    app = AppTest.from_file(str(APP), default_timeout=60)
    app.run()
    sign_in(app, kora_api.leader)
    app.sidebar.radio(key="page").set_value("Error budgets").run()
    assert not app.exception
    assert [w.value for w in app.warning] == ["SLO views unavailable: Prometheus does not answer (ConnectError)."]
    assert metric(app, "Payment success rate") == "75.00 %"

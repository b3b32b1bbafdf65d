"""The KPI console in a real browser: `streamlit run` on a free port against a real Kora API,
headless Debian Chromium driven by chromedriver; sign in through the form, open each page, and
keep a screenshot of each (under tmp; with KORA_CONSOLE_SCREENSHOTS_OUT, also there as
console-<page>.png, which scripts/console-screenshots.sh uses for the docs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import service_unavailable
from tests.e2e.console_world import ConsoleWorld, console_world
from tests.support.net import free_port

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "dashboards" / "kora_console.py"
PAGES = {
    "Money flow": "money-flow",
    "Error budgets": "error-budgets",
    "Settlement": "settlement",
    "Reconciliation": "reconciliation",
    "Providers": "providers",
}


@pytest.fixture(scope="module")
def kora_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleWorld]:
    yield from console_world(tmp_path_factory.mktemp("console-browser-api"))


@pytest.fixture(scope="module")
def console_url(kora_api: ConsoleWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`streamlit run dashboards/kora_console.py` on a free port, pointed at the API."""
    home = tmp_path_factory.mktemp("streamlit-home")
    port = free_port()
    env = {
        **os.environ,
        "HOME": str(home),  # no ~/.streamlit of the person running the tests
        "KORA_CONSOLE_API_URL": kora_api.url,
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    env.pop("KORA_CONSOLE_PROMETHEUS_URL", None)
    log_path = home / "streamlit.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(APP),
                "--server.headless=true",
                "--server.address=127.0.0.1",
                f"--server.port={port}",
                "--server.fileWatcherType=none",
                "--browser.gatherUsageStats=false",
                "--client.toolbarMode=minimal",
            ],
            env=env,
            cwd=home,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=1).text == "ok":
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("streamlit did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        service_unavailable(
            "Debian chromium and chromium-driver are not installed (/usr/bin/chromium, /usr/bin/chromedriver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1440,1800",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_window_size(1440, 1800)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: object, condition: object, timeout: float = 60) -> object:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)  # type: ignore[arg-type]


def _settled(driver: object) -> None:
    """Wait until the app has finished its run (no "Running..." status) and charts are drawn."""
    from selenium.webdriver.common.by import By

    def idle(d: object) -> bool:
        running = d.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')  # type: ignore[attr-defined]
        return not running

    _wait(driver, idle)
    time.sleep(1.5)  # Vega-Lite draws its charts asynchronously after the script ends


def assert_real_image(path: Path) -> None:
    from PIL import Image

    assert path.stat().st_size > 20_000, path
    with Image.open(path) as image:
        assert image.size[0] >= 1000
        assert image.size[1] >= 800
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colours is not None
        assert len(colours) > 50, f"{path} looks blank"


def test_each_page_in_a_real_browser(browser: object, console_url: str, kora_api: ConsoleWorld, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    driver = browser
    shots = tmp_path / "screenshots"
    shots.mkdir()
    out = os.environ.get("KORA_CONSOLE_SCREENSHOTS_OUT")

    driver.get(console_url)  # type: ignore[attr-defined]
    phone = _wait(driver, ec.visibility_of_element_located((By.CSS_SELECTOR, 'input[aria-label="Phone number"]')))
    _settled(driver)
    # Before sign-in: the form and nothing else.
    body = driver.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
    for secret in ("Volume", "Settlement", "Reconciliation", "Providers", "XOF"):
        assert secret not in body, secret
    driver.save_screenshot(str(shots / "console-sign-in.png"))  # type: ignore[attr-defined]

    phone.send_keys(kora_api.leader.phone_number)  # type: ignore[attr-defined]
    driver.find_element(By.CSS_SELECTOR, 'input[aria-label="Password"]').send_keys(kora_api.leader.password)  # type: ignore[attr-defined]
    driver.find_element(By.XPATH, "//button[.//p[text()='Sign in']]").click()  # type: ignore[attr-defined]

    for page, slug in PAGES.items():
        label = _wait(
            driver,
            ec.element_to_be_clickable(
                (By.XPATH, f"//section[@data-testid='stSidebar']//label[.//p[text()='{page}']]")
            ),
        )
        label.click()  # type: ignore[attr-defined]
        _wait(driver, ec.visibility_of_element_located((By.XPATH, f"//h2[contains(., '{page}')]")))
        _settled(driver)
        text = driver.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
        assert "Traceback" not in text
        assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')  # type: ignore[attr-defined]
        assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stAlertContentError"]')  # type: ignore[attr-defined]
        path = shots / f"console-{slug}.png"
        driver.save_screenshot(str(path))  # type: ignore[attr-defined]
        assert_real_image(path)
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(out) / path.name)
    # Known numbers made it to the screen, not only to the script.
    assert "43,111 XOF" in _page_text(driver, "Money flow")
    assert "33.33 %" in _page_text(driver, "Reconciliation")


def _page_text(driver: object, page: str) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    driver.find_element(  # type: ignore[attr-defined]
        By.XPATH, f"//section[@data-testid='stSidebar']//label[.//p[text()='{page}']]"
    ).click()
    _wait(driver, ec.visibility_of_element_located((By.XPATH, f"//h2[contains(., '{page}')]")))
    _settled(driver)
    return str(driver.find_element(By.TAG_NAME, "body").text)  # type: ignore[attr-defined]

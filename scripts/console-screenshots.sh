#!/usr/bin/env bash
# Screenshots of the KPI console for the README: docs/img/console-<page>.png.
# Runs the browser test (a real Kora API holding a known day, `streamlit run`, headless Debian
# Chromium) and keeps its screenshots. Needs /usr/bin/chromium and /usr/bin/chromedriver
# (apt-get install chromium chromium-driver).
set -euo pipefail
cd "$(dirname "$0")/.."
make install >/dev/null
out="$(pwd)/docs/img"
mkdir -p "$out"
KORA_CONSOLE_SCREENSHOTS_OUT="$out" KORA_REQUIRE_SERVICES=1 \
  .venv/bin/pytest -q -p no:cacheprovider tests/e2e/test_console_browser.py
ls -1 "$out"/console-*.png

# Two commands for a newcomer: `make run` (the service, embedded default) and `make test`.
# Each creates the virtualenv and installs what it needs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run console test lint typecheck contracts check install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/kora serve

# The leadership KPI console (dashboards/) on http://127.0.0.1:8501, reading the API of `make run`
# (KORA_CONSOLE_API_URL; KORA_CONSOLE_PROMETHEUS_URL adds the SLO views). See docs/operations/kpi-console.md.
console: $(STAMP)
	KORA_CONSOLE_API_URL=$${KORA_CONSOLE_API_URL:-http://127.0.0.1:8000} $(BIN)/streamlit run dashboards/kora_console.py \
		--server.address=127.0.0.1 --server.port=$${KORA_CONSOLE_PORT:-8501} --server.headless=true \
		--browser.gatherUsageStats=false --client.toolbarMode=minimal

lint: $(STAMP)
	$(BIN)/ruff check kora tests
	$(BIN)/ruff format --check kora tests

typecheck: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

# The one quality gate: lint, types, import contracts, then every test (SQLite and, when
# reachable, PostgreSQL; KORA_REQUIRE_SERVICES=1 makes an absent PostgreSQL a failure).
test: $(STAMP)
	$(BIN)/ruff check kora tests
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache kora.db kora.db-* kora-recon.db* .kora-dev-secrets.json

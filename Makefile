# Scheduled batch scoring on Airflow 3. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DATE ?= 2026-11-20

export SCORING_HOME := $(CURDIR)
export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__UNIT_TEST_MODE := False

.PHONY: help venv demo demo-cascade demo-push serve-token test test-fast lint docs bench schema lock clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP) ## create .venv and install the pinned runtime and dev requirements and the package

demo: $(STAMP) ## demo data + model if absent, run the churn DAG for one partition on SQLite, show results
	$(BIN)/python scripts/demo.py --date $(DEMO_DATE)

demo-cascade: $(STAMP) ## cascade demo: a segment model routes customers to per-segment churn models
	$(BIN)/python scripts/demo.py --cascade --date $(DEMO_DATE)

demo-push: $(STAMP) ## push-mode demo: promotions_daily sends its top 500 to a local webhook receiver
	$(BIN)/python scripts/demo.py --push --date $(DEMO_DATE)

BROWSER := /usr/bin/chromium
$(BROWSER): # Debian's chromium for the browser tests (Playwright drives it; nothing is downloaded by Playwright)
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "browser tests need Debian's chromium: sudo apt-get install chromium (without it they skip)"; fi

PROMETHEUS := /usr/bin/prometheus
$(PROMETHEUS): # Debian's prometheus (with promtool) for the metrics tests: a real Prometheus scrapes the exporter
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus; \
	else echo "metrics tests need Debian's prometheus: sudo apt-get install prometheus (without it they skip; with CI=true they fail)"; fi

# The suite runs on one worker more than the cores (pytest-xdist): many tests wait on Airflow's services
# (a scheduler's loop, a worker's task) rather than compute. The longest tests are collected first
# (tests/conftest.py) and `--dist load --maxschedchunk 1` deals them out one by one (xdist would otherwise
# hand a quarter of the suite, all the long tests, to the first worker), so they start at once on every worker.
# PYTEST_ARGS narrows a run: make test PYTEST_ARGS="-m 'not postgres'"; XDIST= runs in one process.
XDIST ?= -n $(shell echo $$(( $$(nproc) + 1 ))) --dist load --maxschedchunk 1
PYTEST_ARGS ?=
serve-token: ## the online door's bearer token for the compose stack, if absent (secrets/serve_tokens, 0600, ignored by git)
	@mkdir -p secrets
	@test -s secrets/serve_tokens || ( umask 077; $(PYTHON) -c "import secrets; print(secrets.token_urlsafe(32))" > secrets/serve_tokens )
	@echo "bearer token in secrets/serve_tokens (compose secret scoring_serve_tokens); put AIRFLOW_UID=$$(id -u) in .env so the door can read it"

test: $(STAMP) $(BROWSER) $(PROMETHEUS) lint ## lint and the docs build, then the whole test suite on every core (PostgreSQL required when CI=true)
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

test-fast: $(STAMP) ## the edit loop: unit and DAG tests, no PostgreSQL, no Airflow run (under a minute)
	$(BIN)/python -m pytest $(XDIST) -m "not postgres and not airflow and not slow" tests/unit tests/dags tests/docs $(PYTEST_ARGS)

export NO_MKDOCS_2_WARNING := 1
lint: $(STAMP) ## ruff, the import contracts (layers, no cycle), and the docs site built in strict mode (a broken link or a page missing from nav fails)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-logo
	$(BIN)/mkdocs build --strict --quiet

docs: $(STAMP) ## serve the documentation site at http://127.0.0.1:8000 (live reload)
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

bench: $(STAMP) ## throughput and peak RSS at 1M and 10M rows vs a naive baseline (PostgreSQL) -> benchmarks/latest.json; the online door's latency and throughput vs the bare model -> benchmarks/online.json; what an A/B split costs -> benchmarks/ab.json
	$(BIN)/python benchmarks/bench.py
	$(BIN)/python benchmarks/online.py
	$(BIN)/python benchmarks/ab.py

schema: $(STAMP) ## regenerate the published job and card schemas and docs/data-dictionary.md
	$(BIN)/scoring jobs schema --write pipeline/job.schema.json
	$(BIN)/scoring models schema --write pipeline/card.schema.json
	$(BIN)/scoring db dictionary --write docs/data-dictionary.md

lock: ## re-resolve requirements.in into the pinned requirements.txt
	rm -rf /tmp/scoring-lock && $(PYTHON) -m venv /tmp/scoring-lock
	/tmp/scoring-lock/bin/pip install -q --upgrade pip && /tmp/scoring-lock/bin/pip install -q -r requirements.in
	{ echo "# Fully pinned: generated from requirements.in by 'make lock' (Python 3.11). Do not edit by hand."; \
	  /tmp/scoring-lock/bin/pip freeze; } > requirements.txt

clean: ## remove generated state (Airflow home, demo database, staging, reports, dead-letter); keeps .venv, data, models
	rm -rf .airflow .data .staging reports deadletter site

# Every target sets up .venv first if needed, so a fresh clone needs nothing but Python 3.11.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The default sweep: compare the hidden activations on the embedded digits.
OVERRIDES ?= activation=sigmoid,tanh,relu
ARGS ?=
STORE ?= sqlite:///$(CURDIR)/mlruns/mlflow.db
PORT ?= 5000

.PHONY: help install run sweep test test-slow lint format typecheck data ui clean report browser \
	study install-ray reproduce dashboard

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install sweeper with its dev tools

run: install  ## one run of the default config on the embedded digits
	$(PY) -m sweeper $(ARGS)

sweep: install  ## a parallel sweep (OVERRIDES=...) tracked in mlruns/
	$(PY) -m sweeper -m $(OVERRIDES) $(ARGS)

# loadfile: a test module runs on one worker, so a module-scoped fixture (a shared sweep)
# is built once. (xdist 3.8's loadgroup does not group under pytest 9.)
test: lint  ## lint and type-check, then the fast test suite
	$(PY) -m pytest -q -n 2 --dist loadfile

test-slow: install data install-ray  ## tests on real Fashion-MNIST, on a Ray cluster, the longest sweeps (minutes)
	$(PY) -m pytest -q -m slow

# Past one machine (docs/scaling.md): the Ray launcher, an optional extra the cluster tests need.
RAY_STAMP := $(VENV)/.ray-stamp
$(RAY_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dev,ray]'
	touch $(RAY_STAMP)

install-ray: $(RAY_STAMP)  ## add the [ray] extra (Hydra's Ray launcher) to .venv

lint: typecheck  ## ruff (lint and format check) and mypy, without the tests
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

typecheck: install  ## mypy, as configured in pyproject.toml
	$(VENV)/bin/mypy

format: install  ## rewrite src/ and tests/ as ruff formats them, fixing what ruff can
	$(VENV)/bin/ruff format src tests
	$(VENV)/bin/ruff check --fix src tests

# `make data DATASET=NAME [MIRROR=URL]` fetches NAME, verified, into its default data_dir.
# Plain `make data` is Fashion-MNIST, which test-slow and bench read: Debian's package where
# apt-get can install it, else the fetch. (DATASET's default, digits, is `make study`'s.)
DATA_NAME = $(if $(filter file undefined,$(origin DATASET)),fashion_mnist,$(DATASET))

data: install  ## download DATASET=NAME, checksums verified (default: Fashion-MNIST)
	@if [ "$(DATA_NAME)" = fashion_mnist ] && [ ! -d /usr/share/datasets/fashion-mnist ] && \
		[ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist || true; fi
	$(PY) -m sweeper.data fetch $(DATA_NAME) $(if $(MIRROR),--mirror $(MIRROR))

# MLflow's server imports starlette.middleware.wsgi, whose deprecation warning each of its
# processes prints: not the user's to act on. Added after the user's own warning filters.
# As sweeper.store_uri.UI_QUIET, which the Browse: line a sweep prints carries.
UI_QUIET = ignore:starlette.middleware.wsgi

ui: install  ## browse the runs in the MLflow UI (loopback only), with a link to the newest sweep
	@echo "MLflow UI on http://127.0.0.1:$(PORT) (store: $(STORE))"
	@$(PY) -m sweeper.ui_links --tracking-uri '$(STORE)' --experiment '$(EXPERIMENT)' \
		--address http://127.0.0.1:$(PORT)
	PYTHONWARNINGS="$${PYTHONWARNINGS:+$$PYTHONWARNINGS,}$(UI_QUIET)" \
		$(VENV)/bin/mlflow ui --backend-store-uri '$(STORE)' --host 127.0.0.1 --port $(PORT)

# The search sweeper's studies, where hydra/sweeper=search keeps them unless told: beside
# STORE's SQLite database (mlruns/optuna.db by default; sweeper.store_uri.study_storage).
DASHBOARD_PORT ?= 8080
OPTUNA_STORAGE ?= $(shell $(PY) -c 'import sys; from sweeper.store_uri import study_storage; \
	print(study_storage(sys.argv[1], sys.argv[2]))' '$(STORE)' '$(CURDIR)')

# The [dashboard] extra, installed once (an offline machine that has it starts the dashboard).
DASHBOARD_STAMP := $(VENV)/.dashboard-stamp
$(DASHBOARD_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dashboard]'
	touch $(DASHBOARD_STAMP)

dashboard: $(DASHBOARD_STAMP)  ## the searches' Optuna studies in optuna-dashboard on 127.0.0.1 (DASHBOARD_PORT)
	@echo "optuna-dashboard on http://127.0.0.1:$(DASHBOARD_PORT) (storage: $(OPTUNA_STORAGE))"
	$(VENV)/bin/optuna-dashboard '$(OPTUNA_STORAGE)' --host 127.0.0.1 --port $(DASHBOARD_PORT)

# --- report ---
# The sweep to report (default: the latest; A,B compares two) and its MLflow experiment.
SWEEP ?=
EXPERIMENT ?= sweeper

# STORE only where given (make report STORE=..., or in the environment): its default would hide
# MLFLOW_TRACKING_URI, which the report reads itself, falling back to the same mlruns/mlflow.db.
report: install  ## tables and figures of a sweep (SWEEP=<id> or <a>,<b>, EXPERIMENT=..., STORE=...) in reports/
	$(PY) -m sweeper.report --experiment '$(EXPERIMENT)' $(if $(SWEEP),--sweep '$(SWEEP)') \
		$(if $(filter-out file,$(origin STORE)),--tracking-uri '$(STORE)') $(ARGS)

# The run to reproduce; ARGS adds --allow-data-change, --threads N or --tracking-uri URI.
RUN ?=

reproduce: install  ## run a stored run again (RUN=<run id>) and compare every metric with it
	@test -n "$(RUN)" || (echo "usage: make reproduce RUN=<run id> [ARGS=...]" >&2; exit 2)
	$(PY) -m sweeper.reproduce $(RUN) $(ARGS)

browser:  ## Debian's chromium, for the browser test of the MLflow UI and report.html
	@test -x /usr/bin/chromium || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
# --- end report ---

clean:  ## remove run outputs and caches (keeps mlruns/ and .venv)
	rm -rf outputs multirun reports .pytest_cache .mypy_cache .ruff_cache
	find src tests bench -name __pycache__ -prune -exec rm -rf {} +

# --- study presets (experiments/) ---
# Every question of the MLP study as one sweep each; seeds composes with a question.
DATASET ?= digits
STUDY ?= gradcheck learning_rate momentum regularization dropout activation topology baseline \
	early_stopping [activation,seeds] search

study: install  ## the study table's presets (not mnist_*) on DATASET (digits: minutes; fashion_mnist: hours)
	@set -f; status=0; for preset in $(STUDY); do \
		echo "== +experiment=$$preset dataset=$(DATASET)"; \
		$(PY) -m sweeper -m "+experiment=$$preset" dataset=$(DATASET) $(ARGS) || status=1; \
	done; exit $$status

# --- benchmarks ---
.PHONY: bench
BENCH_FLAGS := $(if $(QUICK),--quick)

bench: install data  ## core throughput, sweep scaling, shared memory, report time (QUICK=1: smoke run)
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/core_throughput.py $(BENCH_FLAGS)
	$(PY) bench/sweep_scaling.py $(BENCH_FLAGS)
	$(PY) bench/shared_memory.py $(BENCH_FLAGS)
	$(PY) bench/report_time.py $(BENCH_FLAGS)

help:  ## list these targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  \1\t\2/' | expand -t 14

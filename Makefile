# Every target sets up .venv first if needed, so a fresh clone needs nothing but Python 3.11.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The default sweep: compare the hidden activations on the embedded digits.
SWEEP ?= activation=sigmoid,tanh,relu
ARGS ?=
STORE ?= sqlite:///$(CURDIR)/mlruns/mlflow.db
PORT ?= 5000

.PHONY: install run sweep test test-slow lint data ui clean install-ray

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install sweeper with its dev tools

run: install  ## one run of the default config on the embedded digits
	$(PY) -m sweeper $(ARGS)

sweep: install  ## a parallel sweep (SWEEP=...) tracked in mlruns/
	$(PY) -m sweeper -m $(SWEEP) $(ARGS)

test: install  ## the fast test suite (lint and types included)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -n 2

test-slow: install data install-ray  ## tests on real Fashion-MNIST and on a Ray cluster (minutes)
	$(PY) -m pytest -q -m slow

# Past one machine (docs/scaling.md): the Ray launcher, an optional extra the cluster tests need.
RAY_STAMP := $(VENV)/.ray-stamp
$(RAY_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dev,ray]'
	touch $(RAY_STAMP)

install-ray: $(RAY_STAMP)  ## add the [ray] extra (Hydra's Ray launcher) to .venv

lint: install
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy

data:  ## real Fashion-MNIST from Debian, in /usr/share/datasets/fashion-mnist
	@test -d /usr/share/datasets/fashion-mnist || \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)

ui: install  ## browse the runs in the MLflow UI (loopback only)
	@echo "MLflow UI on http://127.0.0.1:$(PORT) (store: $(STORE))"
	$(VENV)/bin/mlflow ui --backend-store-uri $(STORE) --host 127.0.0.1 --port $(PORT)

clean:  ## remove run outputs and caches (keeps mlruns/ and .venv)
	rm -rf outputs multirun reports .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

# Two commands: `make run` (install what is missing, load sample data, start the app) and
# `make test` (install the dev tools and Debian chromium when missing, then lint and the whole suite).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PYTHONPATH := $(CURDIR)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test lint chromium bench clean-db help
.DEFAULT_GOAL := help

help:
	@echo "make run    install (first time), load sample data, start the app on http://127.0.0.1:$(PORT)"
	@echo "make test   install dev tools and chromium when missing, run ruff and the whole test suite"

# The venv is (re)built when missing or when a requirements file is newer than the last install.
$(VENV)/.stamp-runtime: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

$(VENV)/.stamp-dev: requirements-dev.txt $(VENV)/.stamp-runtime
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

run: $(VENV)/.stamp-runtime
	$(PY) -m app init
	@echo "Telltale: open http://127.0.0.1:$(PORT) (Ctrl+C to stop)"
	$(PY) -m streamlit run app/web/main.py --server.port $(PORT) --server.address 127.0.0.1

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium for the browser tests"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

lint: $(VENV)/.stamp-dev
	$(PY) -m ruff check .

test: $(VENV)/.stamp-dev chromium lint
	$(PY) -m pytest

bench: $(VENV)/.stamp-runtime
	$(PY) -m app bench ingest

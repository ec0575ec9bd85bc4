# sysdesign-lab: `make lab` to study, `make test` to check everything, `make apps` for the dashboards.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
PORT ?= 5006

.PHONY: setup system lab apps test check bench clean

setup: system $(STAMP)

# Re-installs only when pyproject.toml changes, so a second `make` costs a stat, not a pip run.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# Debian packages the tests need, installed only when missing and only as root with apt.
system:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	command -v ffmpeg >/dev/null || missing="$$missing ffmpeg"; \
	command -v tesseract >/dev/null || missing="$$missing tesseract-ocr"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
	  echo "note: not root with apt; install$$missing yourself or the tests that need them will skip (fail under CI=true)"; \
	fi

lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=labs $(ROOT_FLAG)

apps: setup
	$(VENV)/bin/syslab serve --port $(PORT)

# Two passes, both always run: the bulk on one pytest-xdist worker per core (up to 4), then one
# at a time the tests that grade notebooks (they use every core themselves), drive chromium (a
# browser starved by a busy neighbour times out) or compare wall-clock timings.
SERIAL_TESTS := notebook or browser or timed
test: setup
	@status=0; \
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . || status=$$?; \
	$(PY) -m pytest -m "not ($(SERIAL_TESTS))" -n auto --maxprocesses=4 --dist load || status=$$?; \
	$(PY) -m pytest -m "$(SERIAL_TESTS)" || { s=$$?; [ $$status -ne 0 ] || status=$$s; }; \
	exit $$status

check: setup
	$(VENV)/bin/syslab check

bench: setup
	@for b in benchmarks/*.py; do $(VENV)/bin/syslab bench $$(basename $$b .py) || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info

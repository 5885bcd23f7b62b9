# ringcore: `make demo` and `make test` set everything up on a fresh machine.
#
#   make demo           create .venv, install the core and every plugin (editable), run `ringcore demo`
#   make test           the same set-up, then the core suite and every plugin's suite
#   make test-isolated  each plugin installed alone with the core in a fresh venv, its suite run there
#   make bench          the benchmarks, each next to a baseline measured in the same run

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGINS := $(sort $(wildcard plugins/*))
STAMP := $(VENV)/.ringcore-installed
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider

export XDG_RUNTIME_DIR ?= $(CURDIR)/.cache/xdg
export POCL_CACHE_DIR ?= $(CURDIR)/.cache/pocl

.PHONY: setup demo test test-core test-plugins test-isolated bench clean

$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml) Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools
	$(PIP) install -e ".[test]" $(foreach p,$(PLUGINS),-e $(p))
	@mkdir -p $(XDG_RUNTIME_DIR) $(POCL_CACHE_DIR) && chmod 700 $(XDG_RUNTIME_DIR)
	@touch $@

setup: $(STAMP)

demo: setup
	$(BIN)/ringcore demo

test: setup
	@status=0; \
	echo "== core suite (tests/)"; $(PYTEST) tests || status=1; \
	for p in $(PLUGINS); do \
	  echo "== $$p suite"; (cd $$p && $(CURDIR)/$(BIN)/python -m pytest -q -p no:cacheprovider tests) || status=1; \
	done; \
	exit $$status

test-isolated:
	@status=0; \
	for p in $(PLUGINS); do \
	  name=$$(basename $$p); venv=$(CURDIR)/.venv-isolated/$$name; \
	  echo "== $$p installed alone with the core"; \
	  rm -rf $$venv && $(PYTHON) -m venv $$venv && \
	  $$venv/bin/python -m pip --disable-pip-version-check --quiet install . "./$$p[test]" && \
	  (cd $$p && $$venv/bin/python -m pytest -q -p no:cacheprovider tests) || status=1; \
	done; \
	exit $$status

bench: setup
	$(BIN)/ringcore bench

clean:
	rm -rf $(VENV) .venv-isolated .cache build *.egg-info plugins/*/*.egg-info plugins/*/build

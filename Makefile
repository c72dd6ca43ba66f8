# Everything a fresh machine needs: each target creates .venv and installs what it uses.
# Python 3.11 or newer: the newest python3.1x on PATH, else python3 when it is new enough.
# Override with `make PYTHON=/path/to/python`.
ifeq ($(origin PYTHON),undefined)
# Each candidate must run (a version manager's shim may exist for a version not installed).
PYTHON := $(shell for p in python3.19 python3.18 python3.17 python3.16 python3.15 python3.14 \
	  python3.13 python3.12 python3.11 python3; do \
	  $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 \
	  && { echo $$p; break; }; done)
endif
VENV := .venv
BIN := $(VENV)/bin
STAMP_BASE := $(VENV)/.installed-base
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: python demo test lint typecheck sync-check sync tests bench soak docs clean

$(BIN)/python:
	@if [ -z "$(PYTHON)" ]; then \
	  echo "error: Python 3.11 or newer is needed, and none was found on PATH" \
	    "(looked for python3.19 ... python3.11, then python3)." >&2; \
	  echo "Install one, or name it: make $(MAKECMDGOALS) PYTHON=/path/to/python3" >&2; exit 1; fi
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "error: PYTHON=$(PYTHON) is not Python 3.11 or newer" \
	    "($$($(PYTHON) -V 2>&1))." >&2; exit 1; }
	@echo "Creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version 2>&1))"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_BASE): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(STAMP_BASE)

# Which Python the venv would be built with.
python:
	@echo "$(or $(PYTHON),no Python 3.11+ found)"

demo: $(STAMP_BASE)
	$(BIN)/python -m resilient_async demo

test: $(STAMP_DEV) lint typecheck sync-check docs tests

lint: $(STAMP_DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP_DEV)
	$(BIN)/mypy

sync-check: $(STAMP_DEV)
	$(BIN)/python tools/unasync.py --check

sync: $(STAMP_DEV)
	$(BIN)/python tools/unasync.py

# pytest exits 5 when it collected no test: that is a failure here, never a pass.
tests: $(STAMP_DEV)
	$(BIN)/python -m pytest -q -p no:cacheprovider; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: $(STAMP_DEV)
	$(BIN)/python -m benchmarks

soak: $(STAMP_DEV)
	$(BIN)/python -m benchmarks.soak

docs: $(STAMP_DEV)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

clean:
	rm -rf $(VENV) site .mypy_cache .ruff_cache .pytest_cache .hypothesis

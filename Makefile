# Everything a fresh machine needs: each target creates .venv and installs what it uses.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP_BASE := $(VENV)/.installed-base
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck sync-check sync tests bench soak docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_BASE): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(STAMP_BASE)

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

# Two commands for a fresh machine: `make up` runs the pipeline, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps node-deps up demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,s3]'
	touch $@

install: $(STAMP)

# Debian packages the tests drive for real (headless Chromium for the tracker; Redis and
# PostgreSQL for the realtime stage's server backends; Java for PySpark in local mode; Node.js
# for the Azure Blob Storage emulator).
system-deps:
	@scripts/system-deps chromium redis-server postgresql openjdk-17-jre-headless nodejs npm

# npm packages the tests run: Azurite, the Azure Blob Storage emulator the azure storage
# backend is tested against (without Node.js those tests skip, saying why).
node-deps: system-deps
	@scripts/node-deps $(VENV)/azurite azurite@3.37.0

up: install
	@test -f beaconlake.toml || $(BIN)/beaconlake init
	$(BIN)/beaconlake up

# The whole pipeline on a sample shop with simulated and real (headless Chromium) visitors.
demo: install
	-@scripts/system-deps chromium  # without it the demo runs, minus the real browser visitors
	$(BIN)/beaconlake demo

test: install system-deps node-deps
	$(BIN)/python -m pytest

bench: install
	@scripts/system-deps nginx wrk
	$(BIN)/python bench/ingest

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts beaconlake-demo

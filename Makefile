# Two commands for a fresh machine: `make up` runs the pipeline, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps node-deps up demo test bench clean
JS_FIXTURES := tests/ingest/protocols/browser
JS_STAMP := $(JS_FIXTURES)/node_modules/.package-lock.json

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
# backend is tested against; Segment's and Snowplow's browser libraries for the protocol doors'
# browser tests, pinned by the committed lock file (npm ci installs exactly the locked versions;
# node_modules is never committed). Without Node.js those tests skip, saying why.
node-deps: system-deps
	@scripts/node-deps $(VENV)/azurite azurite@3.37.0
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory $(JS_STAMP); fi

$(JS_STAMP): $(JS_FIXTURES)/package-lock.json
	npm ci --prefix $(JS_FIXTURES) --no-audit --no-fund --silent

up: install
	@test -f beaconlake.toml || $(BIN)/beaconlake init
	$(BIN)/beaconlake up

# The whole pipeline on a sample shop with simulated and real (headless Chromium) visitors.
demo: install
	-@scripts/system-deps chromium  # without it the demo runs, minus the real browser visitors
	$(BIN)/beaconlake demo

# Two processes for most tests (many wait on servers, leases and timeouts, not the CPU), then
# the tests marked `alone` by themselves (tests/conftest.py says which and why). Both always run.
test: install system-deps node-deps
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not alone"; shared=$$?; \
	$(BIN)/python -m pytest -m alone; alone=$$?; \
	test $$shared -eq 0 && test $$alone -eq 0

bench: install
	@scripts/system-deps nginx wrk
	$(BIN)/python bench/ingest

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts beaconlake-demo $(JS_FIXTURES)/node_modules

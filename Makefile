# Two entry points: `make demo` (the main job on embedded defaults) and `make test`.
# Both bootstrap their own environment from PyPI: a pinned uv in .tools/ (through pip,
# or, where Python has no pip, .ci/fetch_uv.py with the standard library), then the
# locked dependencies in .venv/ with `uv sync --frozen`. Needs only Python 3.11 and make.

PYTHON ?= python3
PYTHON_VERSION ?= 3.11
UV_VERSION := 0.13.8
UV_HOME := .tools/uv-$(UV_VERSION)
UV := $(UV_HOME)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
DEMO_CITY ?= city
DEMO_PERSONS ?= 10000

export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy

.PHONY: setup demo test lint bench clean

# The folder is named after the version, so bumping UV_VERSION installs the new one.
$(UV):
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
		--target $(UV_HOME) uv==$(UV_VERSION) || $(PYTHON) .ci/fetch_uv.py $(UV_VERSION) $(UV_HOME)
	@test -x $(UV)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON_VERSION)
	touch $@

setup: $(VENV)/.synced

demo: setup
	$(BIN)/onceonly demo --city $(DEMO_CITY) --persons $(DEMO_PERSONS)

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(UV) lock --check
	$(BIN)/ruff check connectors exchange ledger dags tests
	$(BIN)/ruff format --check connectors exchange ledger dags tests
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m tests.bench.bench_synth
	$(BIN)/python -m tests.bench.bench_publish
	$(BIN)/python -m tests.bench.bench_ledger
	$(BIN)/python -m tests.bench.bench_ask
	$(BIN)/python -m tests.bench.bench_http
	$(BIN)/python -m tests.bench.bench_audit

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache

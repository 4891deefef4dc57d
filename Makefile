# Two entry points: `make demo` (the main job on embedded defaults) and `make test`.
# Both bootstrap their own environment from PyPI: a pinned uv in .tools/, then the
# locked dependencies in .venv/ (`uv sync --frozen`). Only Python 3.11 and make needed.

PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
DEMO_CITY ?= city
DEMO_PERSONS ?= 10000

export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy

.PHONY: setup demo test lint bench clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

setup: $(VENV)/.synced

demo: setup
	@$(BIN)/onceonly status >/dev/null 2>&1 || $(BIN)/onceonly init
	$(BIN)/onceonly synth --persons $(DEMO_PERSONS) --seed 7 --dirty-rate 0.01 --out $(DEMO_CITY)

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check connectors exchange ledger dags tests
	$(BIN)/ruff format --check connectors exchange ledger dags tests
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache

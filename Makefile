# musicflow: every target installs what it needs into .venv/ first (idempotent).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast lint bench clean

$(STAMP): pyproject.toml requirements.lock musicflow/core/_smf.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip==26.3 setuptools==84.2.1 wheel==0.48.0
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

## The main job: the whole pipeline on the bundled Bach chorales (or SOURCE=folder),
## training each model for TIME_BUDGET minutes.
TIME_BUDGET ?= 3
run: install
	$(BIN)/musicflow run $(SOURCE) --time-budget $(TIME_BUDGET)

## All tests, integration ones included (real Prefect, GX, MLflow and TensorFlow): JOBS worker
## processes, each with its own workspace and Prefect server, a test file to one worker; then
## the tests with a wall-clock bound (marker perf), alone, so no other test slows them.
JOBS ?= 2
test: install
	$(BIN)/python -m pytest -q -ra --durations=15 -n $(JOBS) --dist loadfile -m "not perf"
	$(BIN)/python -m pytest -q -ra -m perf

## Unit tests only: no Prefect server or flow, no TensorFlow, MLflow or GX, no CLI process,
## no corpus, no wall-clock bound (tests/conftest.py fails a unit test that reaches for one).
test-fast: install
	$(BIN)/python -m pytest -q -m "not integration and not corpus and not server and not perf"

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	$(BIN)/python bench/bench_encode.py
	$(BIN)/python bench/bench_models.py

clean:
	rm -rf $(VENV) build *.egg-info musicflow/core/*.so
